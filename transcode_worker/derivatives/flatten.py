"""Transparency flattened on white: how hashes see an image (what chat themes show behind it)."""

from __future__ import annotations

from typing import Literal

from PIL import Image

# Modes that carry an alpha channel (premultiplied ones included).
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def on_white(image: Image.Image, mode: Literal["RGB", "L"]) -> Image.Image:
    """`image` in `mode`, any transparency composited on white; `image` itself when already
    in `mode` with nothing to flatten (callers copy before changing it in place)."""
    if image.mode in ALPHA_MODES or image.has_transparency_data:
        rgba = image.convert("RGBA")
        page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(page, rgba).convert(mode)
    return image if image.mode == mode else image.convert(mode)
