"""The colourisation network and its model file.

A U-Net (unet.py) maps lightness L to chroma (a, b). Chroma is predicted at half
resolution, as JPEG stores it (each 2x2 block of L is one input pixel there), then
upsampled and sharpened by a small full-resolution layer that sees L, so colour edges
follow the image's edges.

The file is a latentzip model file of its own kind (`modelfile.COLORIZER`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..image.modelfile import COLORIZER
from .unet import FINE_WIDTH, NetConfig, UNet, UNetModel, doubled

CHROMA_SCALE = 100.0  # the network works on a and b in hundreds


class ColorNet(UNet):
    """L (N, 1, H, W) in [0, 100] -> (a, b) (N, 2, H, W), for any H and W."""

    OUTPUTS = 2

    def __init__(self, cfg: NetConfig):
        super().__init__(cfg, inputs=4)
        self.out = nn.Conv2d(cfg.widths[0], 2, 1)
        self.fine = nn.Sequential(nn.Conv2d(3, FINE_WIDTH, 3, padding=1), nn.LeakyReLU(0.1),
                                  nn.Conv2d(FINE_WIDTH, 2, 3, padding=1))

    def forward(self, light: torch.Tensor) -> torch.Tensor:
        h, w = light.shape[-2:]
        light = self.padded(light / 50.0 - 1.0)
        chroma = doubled(self.out(self.features(F.pixel_unshuffle(light, 2))))
        chroma = chroma + self.fine(torch.cat([light, chroma], dim=1))
        return chroma[..., :h, :w] * CHROMA_SCALE


class Colorizer(UNetModel):
    """A trained colourisation network with its training record: `chroma` predicts (a, b)
    from L; `latentzip.apps.colorize` turns grey images into colour ones with it."""

    NET = ColorNet
    KIND = COLORIZER
    HOW_TO_TRAIN = "latentzip train --task colorize"

    def chroma(self, light: torch.Tensor) -> torch.Tensor:
        """(a, b) (1, 2, H, W) for L (1, 1, H, W)."""
        return self.run(light)
