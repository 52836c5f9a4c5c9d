"""The NSFW classifier: bundled model (nothing downloads), scores on generated images."""

from __future__ import annotations

import pickle
import site
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tests.media_factory.safety import figure, landscape, textured_photo
from transcode_worker.safety.nsfw import DEFAULT_THRESHOLD, NsfwClassifier, bundled_model_path


@pytest.fixture(scope="module")
def classifier() -> NsfwClassifier:
    classifier = NsfwClassifier()
    classifier.load()
    return classifier


def test_the_model_ships_inside_the_installed_package() -> None:
    path = bundled_model_path()
    assert path.name == "open-nsfw.onnx"
    assert path.stat().st_size > 10_000_000
    roots = [Path(entry).resolve() for entry in site.getsitepackages()]
    assert any(path.resolve().is_relative_to(root) for root in roots)


def test_the_synthetic_figure_scores_at_or_above_the_threshold(
    classifier: NsfwClassifier,
) -> None:
    assert classifier.score(figure()) >= DEFAULT_THRESHOLD


@pytest.mark.parametrize("make", [landscape, textured_photo])
def test_ordinary_pictures_score_low(
    classifier: NsfwClassifier, make: Callable[[], Image.Image]
) -> None:
    assert classifier.score(make()) < 0.1


def test_any_mode_is_accepted_and_the_classifier_pickles(classifier: NsfwClassifier) -> None:
    clone = pickle.loads(pickle.dumps(classifier))
    assert clone == classifier
    score = clone.score(landscape().convert("RGBA"))
    assert 0.0 <= score <= 1.0
