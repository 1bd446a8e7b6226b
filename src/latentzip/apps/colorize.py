"""Colourisation: a network trained on colour photographs (`train_colorizer`) predicts
each pixel's chroma from the grey image's lightness, in CIELAB.

The output keeps the input's lightness: its L channel is the grey image's, and a
predicted colour outside sRGB loses chroma, not lightness (`lab.to_rgb`); only the
rounding to 8 bits moves L, by a fraction of a unit.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .colornet import Colorizer
from .lab import as_grey, as_tensor, lightness, to_rgb
from .progress import each
from .unet import checked

STRIP_PIXELS = 1 << 20  # pixels converted to RGB at once: bounds the memory of large images


def colorize(model: Colorizer, images: np.ndarray | Sequence[np.ndarray], progress: bool = False) -> list[np.ndarray]:
    """Colour uint8 images (H, W, 3), or (H, W, 4) where an input has alpha (kept as it
    is), in input order. Inputs are uint8 (H, W) or (H, W, C) of any sizes; colour
    inputs are made grey first (`as_grey`: same lightness)."""
    out = []
    for image in each(images, "colorize", progress):
        image = checked(image, "colorize")
        grey = as_grey(image)
        chroma = model.chroma(lightness(as_tensor(grey)))
        colour = with_chroma(grey, chroma)
        alpha = image[..., -1:] if image.shape[-1] in (2, 4) else None
        out.append(colour if alpha is None else np.concatenate([colour, alpha], axis=-1))
    return out


def with_chroma(grey: np.ndarray, chroma: torch.Tensor) -> np.ndarray:
    """The uint8 RGB image (H, W, 3) of a grey image's lightness (uint8 (H, W, 1)) with
    the chroma (a, b) (1, 2, H, W), strip by strip."""
    h, w = grey.shape[:2]
    rows = max(1, STRIP_PIXELS // w)
    out = np.empty((h, w, 3), np.uint8)
    for top in range(0, h, rows):
        light = lightness(as_tensor(grey[top : top + rows]))
        rgb = to_rgb(torch.cat([light, chroma[..., top : top + rows, :].double()], dim=1))
        out[top : top + rows] = (rgb[0].permute(1, 2, 0) * 255.0).round().to(torch.uint8).numpy()
    return out

