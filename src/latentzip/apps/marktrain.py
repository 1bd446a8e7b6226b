"""Training a watermark-removal network on clean images of any sizes.

Each step marks the random crops afresh (marks.py: text and logos at random position,
size, angle and opacity, rounded to 8 bits as a saved image would be) and teaches the
network to give back the clean crops: the loss is the squared error of the image it
solves for (what PSNR measures), the cross-entropy of its estimate of the marks'
coverage, which tells it where marks are even while it sees none (a squared error there
stalls once the coverage's sigmoid saturates at zero), and the squared error of the
marks' colour where they are. Any image teaches, colour or grey (grey ones are taken
as RGB); alpha is dropped.

A network that finds a faint mark where there is none changes pixels that were right,
and on a photograph with one small mark that costs more than the mark. So once trained,
the network is tried on images set aside from training (`calibrate`), each marked
afresh, and the model keeps the coverage threshold below which it leaves a pixel alone
that gives the best mean PSNR there; leaving every pixel alone is one of the choices,
so on those images the model never does worse than the marked input.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from ..image.train import check_images
from .marknet import ALPHA_MAX, UNTOUCHED, MarkRemover, mark, unmix, untouched_below
from .marks import Marks, watermark
from .unet import UNet, as_rgb
from .unettrain import UNetTrainConfig, UNetTrainResult, train_unet

IMAGE_WEIGHT = 10.0  # of the squared errors of the image and of the marks' colour, against the coverage's cross-entropy
CLIP = 1.0  # gradient norm: a step that finds a dense mark where there is none would otherwise throw training off
CALIBRATION_SHARE = 0.1  # of the images, up to CALIBRATION_MAX, set aside to choose the coverage threshold
CALIBRATION_MAX = 32
CALIBRATION_LEAST = 10  # with fewer images, none is set aside: the threshold is chosen on training images
# The coverage thresholds tried: the faintest estimate up to most of the densest mark,
# and 1.0 (above ALPHA_MAX): leave every pixel as it is.
THRESHOLDS = (UNTOUCHED, *np.geomspace(0.004, 0.8 * ALPHA_MAX, 24).tolist(), 1.0)


def train_unmarker(
    images: np.ndarray | Sequence[np.ndarray],
    cfg: UNetTrainConfig | None = None,
    marks: Marks | None = None,
    progress: bool = True,
    on_start: Callable[[UNetTrainConfig, int, int, str], None] | None = None,
) -> UNetTrainResult:
    """Train a watermark-removal network on clean uint8 images ((N, H, W, C) or a list of
    (H, W, C) of any sizes) marked with `marks` (default: `Marks.default()`), and return it."""
    cfg = cfg or UNetTrainConfig()
    given = check_images(images, least=1, seed=cfg.seed)
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
    every = max(round(1 / CALIBRATION_SHARE), -(-len(rgb) // CALIBRATION_MAX))
    aside = rgb[every - 1 :: every] if len(rgb) >= CALIBRATION_LEAST else []
    learn = [im for k, im in enumerate(rgb) if not aside or k % every != every - 1]
    result = train_unet(MarkRemover, learn, len(given) - len(aside), cfg, loss, progress,
                        on_start, extra={"noise_kind": "watermark", "marks": marks.describe()}, clip=CLIP)
    model = result.model
    assert isinstance(model, MarkRemover)
    model.meta.update(calibrate(model, aside or learn[:CALIBRATION_MAX], marks, result.config.seed))
    model.meta["calibration"]["set_aside"] = bool(aside)
    return result


def calibrate(model: MarkRemover, images: Sequence[np.ndarray], marks: Marks, seed: int = 0) -> dict:
    """The coverage threshold (THRESHOLDS) that gives the best mean PSNR on RGB uint8
    `images` marked afresh, as the model's meta records it, with the mean PSNR it gives
    and that of the marked images."""
    marked, _ = watermark(images, marks, seed=seed + 1)
    errors = np.zeros((len(images), len(THRESHOLDS)))
    for i, (truth, given) in enumerate(zip(images, marked, strict=True)):
        x = torch.from_numpy(np.ascontiguousarray(given)).permute(2, 0, 1)[None].float() / 255.0
        alpha, colour = mark(model.run(x))
        for j, threshold in enumerate(THRESHOLDS):
            out = (untouched_below(x, alpha, colour, threshold)[0].permute(1, 2, 0) * 255.0).round().numpy()
            errors[i, j] = metrics.mse(truth, out)
    psnr = np.minimum([[metrics.psnr_from_mse(e) for e in row] for row in errors], metrics.PSNR_CAP).mean(axis=0)
    best = len(psnr) - 1 - int(np.argmax(psnr[::-1]))  # of equals, the one that changes fewest pixels
    return {"coverage_threshold": THRESHOLDS[best],
            "calibration": {"images": len(images), "psnr": round(float(psnr[best]), 3),
                            "psnr_marked": round(float(psnr[-1]), 3)}}

