"""Training a watermark-removal network on clean images of any sizes.

Each step marks the random crops afresh (marks.py: text and logos at random position,
size, angle and opacity, rounded to 8 bits as a saved image would be) and teaches the
network to give back the clean crops: the loss is the squared error of the image it
solves for (what PSNR measures), the cross-entropy of its estimate of the marks'
coverage, which tells it where marks are even while it sees none (a squared error there
stalls once the coverage's sigmoid saturates at zero), and the squared error of the
marks' colour where they are. Any image teaches, colour or grey (grey ones are taken
as RGB); alpha is dropped.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..image.train import check_images
from .marknet import ALPHA_MAX, MarkRemover, mark, unmix
from .marks import Marks
from .unet import UNet, as_rgb
from .unettrain import UNetTrainConfig, UNetTrainResult, train_unet

IMAGE_WEIGHT = 10.0  # of the squared errors of the image and of the marks' colour, against the coverage's cross-entropy
CLIP = 1.0  # gradient norm: a step that finds a dense mark where there is none would otherwise throw training off


def train_unmarker(
    images: np.ndarray | Sequence[np.ndarray],
    cfg: UNetTrainConfig | None = None,
    marks: Marks | None = None,
    progress: bool = True,
    on_start: Callable[[UNetTrainConfig, int, int, str], None] | None = None,
) -> UNetTrainResult:
    """Train a watermark-removal network on clean uint8 images ((N, H, W, C) or a list of
    (H, W, C) of any sizes) marked with `marks` (default: `Marks.default()`), and return it."""
    given = check_images(images, least=1)
    marks = marks or Marks.default()

    def loss(net: UNet, clean: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        layers = [marks.layer(clean.shape[-2], clean.shape[-1], rng) for _ in range(clean.shape[0])]
        alpha = torch.from_numpy(np.stack([a for a, _ in layers]))[:, None].to(clean.device)
        colour = torch.from_numpy(np.stack([c for _, c in layers])).permute(0, 3, 1, 2).to(clean.device)
        marked = torch.round(((1 - alpha) * clean + alpha * colour) * 255.0) / 255.0
        logits = net(marked)
        found, tint = mark(logits)
        coverage = F.binary_cross_entropy_with_logits(logits[:, :1], (alpha / ALPHA_MAX).clamp(max=1.0))
        hue = (alpha * (tint - colour) ** 2).mean()  # the marks' colour, where they are
        return IMAGE_WEIGHT * (F.mse_loss(unmix(marked, found, tint), clean) + hue) + coverage

    rgb = [as_rgb(im) for im in given]
    return train_unet(MarkRemover, rgb, len(given), cfg or UNetTrainConfig(), loss, progress, on_start,
                      extra={"noise_kind": "watermark", "marks": marks.describe()}, clip=CLIP)

