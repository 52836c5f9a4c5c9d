"""`meta.blurhash`: a ~30-character placeholder clients paint while the thumbnail loads.

We call blurhash-python's C encoder directly on raw RGB bytes. Its Python `encode()` walks the
pixels with `Image.getdata()`, which Pillow deprecates (removed in Pillow 14), and closes the
image it is given; the C function computes exactly the same hash without either problem.
"""

from __future__ import annotations

from PIL import Image

from transcode_worker.derivatives.flatten import on_white

__all__ = ["BLURHASH_COMPONENTS", "BLURHASH_SAMPLE_EDGE", "blurhash_of"]

BLURHASH_COMPONENTS = (4, 3)  # x, y
# The hash keeps only 4x3 cosine components: a copy this small loses nothing that matters.
BLURHASH_SAMPLE_EDGE = 32
# The C encoder writes at most 2 + 4 + (9 * 9 - 1) * 2 characters and a NUL.
_MAX_HASH_CHARS = 2 + 4 + (9 * 9 - 1) * 2 + 1


def blurhash_of(image: Image.Image) -> str:
    """The blurhash (4x3 components) of `image`, computed on a copy at most 32 px on a side."""
    sample = on_white(image, "RGB")
    if max(sample.size) > BLURHASH_SAMPLE_EDGE:
        sample = sample.copy() if sample is image else sample
        sample.thumbnail((BLURHASH_SAMPLE_EDGE, BLURHASH_SAMPLE_EDGE), Image.Resampling.BOX)
    width, height = sample.size
    pixels = sample.tobytes()  # packed RGB rows, 3 bytes per pixel
    # The library's own cffi binding, loaded by the first job that needs it.
    from blurhash import _functions as _blurhash_c

    ffi, lib = _blurhash_c.ffi, _blurhash_c.lib
    destination = ffi.new("char[]", _MAX_HASH_CHARS)
    x_components, y_components = BLURHASH_COMPONENTS
    result = lib.create_hash_from_pixels(
        x_components,
        y_components,
        width,
        height,
        ffi.from_buffer("uint8_t[]", pixels),
        width * 3,
        destination,
    )
    if result == ffi.NULL:  # only for components outside 1..9
        raise ValueError("blurhash: invalid components")
    text: str = ffi.string(result).decode("ascii")
    return text
