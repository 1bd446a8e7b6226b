"""Training a colourisation network on colour images of any sizes.

Each step converts the random crops to CIELAB on the device and teaches the network
their chroma (a, b) from their lightness L, with a squared error: the mean of plausible
colours, which is what PSNR rewards. A smooth L1 loss (their median, less pulled towards
grey) did worse by both PSNR and CIEDE2000 on the benchmark's test sets.
Grey images teach no colour and are left out; a set with no colour image is refused.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LatentzipError
from ..image.train import check_images
from .colornet import Colorizer
from .lab import is_grey, to_lab
from .unet import UNet
from .unettrain import UNetTrainConfig, UNetTrainResult, train_unet


def usable(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The RGB of the colour images (alpha dropped); grey ones are refused when there is
    nothing else."""
    colour = [im[..., :3] for im in images if not is_grey(im)]
    if not colour:
        which = "the training image is" if len(images) == 1 else f"all {len(images)} training images are"
        raise LatentzipError(f"{which} grey: colourisation learns from colour images")
    return colour


def _loss(net: UNet, crops: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    lab = to_lab(crops)
    return F.mse_loss(net(lab[:, :1]), lab[:, 1:])


def train_colorizer(
    images: np.ndarray | Sequence[np.ndarray],
    cfg: UNetTrainConfig | None = None,
    progress: bool = True,
    on_start: Callable[[UNetTrainConfig, int, int, str], None] | None = None,
) -> UNetTrainResult:
    """Train a colourisation network on uint8 images ((N, H, W, C) or a list of
    (H, W, C) of any sizes; the colour ones are used) and return it, ready to colour."""
    cfg = cfg or UNetTrainConfig()
    given = check_images(images, least=1, seed=cfg.seed)
    return train_unet(Colorizer, usable(given), len(given), cfg, _loss, progress, on_start)
