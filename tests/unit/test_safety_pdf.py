"""PDF previews: first page, page count, size caps, and PDFs that are not PDFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.media_factory.documents import fake_pdf, pdf, pdf_with_pictures
from tests.media_factory.safety import textured_photo
from transcode_worker.safety.pdf import (
    MAX_EDGE,
    MAX_PAGE_POINTS,
    RENDER_SCALE,
    PdfCorrupt,
    PdfPageTooLarge,
    render_preview,
)


def test_a_three_page_pdf(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf())  # A4 pages: 595 x 842 pt
    preview = render_preview(path)
    assert preview.page_count == 3
    assert preview.page_size == (595.0, 842.0)
    assert preview.image.mode == "RGB"
    assert max(preview.image.size) == MAX_EDGE
    assert preview.image.size[0] == pytest.approx(MAX_EDGE * 595 / 842, abs=1)
    pixels = np.asarray(preview.image)
    assert (pixels[0, 0] == 255).all()  # the page is white where nothing is drawn
    # The blue rectangle drawn at the bottom left is there.
    height = preview.image.size[1]
    assert tuple(pixels[height - height // 10, preview.image.size[0] // 8]) == pytest.approx(
        (51, 102, 204), abs=3
    )


def test_a_small_page_is_not_scaled_up() -> None:
    preview = render_preview(pdf([(100.0, 50.0)]))
    assert preview.image.size == (100 * RENDER_SCALE, 50 * RENDER_SCALE)
    assert preview.page_count == 1


def test_a_long_page_is_capped_on_its_longest_edge() -> None:
    preview = render_preview(pdf([(10_000.0, 300.0)]), max_edge=640)
    assert preview.image.size[0] == 640


def test_pages_from_pictures() -> None:
    pictures = [textured_photo(320, 240, seed=seed) for seed in range(3)]
    preview = render_preview(pdf_with_pictures(pictures))
    assert preview.page_count == 3
    assert preview.page_size == (320.0, 240.0)
    assert preview.image.size == (640, 480)


@pytest.mark.parametrize("size", [(MAX_PAGE_POINTS + 1, 300.0), (300.0, 0.5)])
def test_absurd_page_sizes_are_refused(size: tuple[float, float]) -> None:
    with pytest.raises(PdfPageTooLarge):
        render_preview(pdf([size]))


@pytest.mark.parametrize(
    "data",
    [fake_pdf(), b"%PDF-1.4\n", pdf()[:200], pdf([])],
    ids=["random-after-header", "header-only", "truncated", "no-pages"],
)
def test_what_is_not_a_pdf_is_corrupt(data: bytes) -> None:
    with pytest.raises(PdfCorrupt):
        render_preview(data)
