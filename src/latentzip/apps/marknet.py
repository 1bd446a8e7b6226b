"""The watermark-removal network and its model file.

A watermark is blended over the image: y = (1 - a) x + a c, with the mark's coverage
times opacity a and its colour c (marks.py). Where a < 1 the image is still there under
the mark, so rather than paint the marked pixels anew the network estimates a and c,
and the image is solved for: x = (y - a c) / (1 - a). Where it finds no mark (a below
half a grey level) the pixel is returned exactly as it came.

The U-Net (unet.py) sees each 2x2 block of RGB pixels at its top level and predicts the
four pixels' (a, c) there, rearranged to full resolution (`pixel_shuffle`); a small
full-resolution layer that sees the image then sharpens them, so one-pixel glyph strokes
keep their edges.

The file is a latentzip model file of its own kind (`modelfile.UNMARKER`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..image.modelfile import UNMARKER
from .unet import FINE_WIDTH, NetConfig, UNet, UNetModel

ALPHA_MAX = 0.75  # the densest mark the network can undo (one training mark reaches 0.7); the
# solution's slope in a grows as 1 / (1 - a)^2, so a bound near 1 makes training unstable
UNTOUCHED = 0.5 / 255.0  # a mark fainter than this leaves the pixel as it is
START_LOGIT = -4.0  # the coverage logit an untrained network gives: 0.016 of ALPHA_MAX


class MarkNet(UNet):
    """RGB (N, 3, H, W) in [0, 1] -> the mark's logits (N, 4, H, W): coverage, colour."""

    OUTPUTS = 4

    def __init__(self, cfg: NetConfig):
        super().__init__(cfg, inputs=12)
        self.out = nn.Conv2d(cfg.widths[0], 4 * self.OUTPUTS, 1)
        self.fine = nn.Sequential(nn.Conv2d(3 + self.OUTPUTS, FINE_WIDTH, 3, padding=1), nn.LeakyReLU(0.1),
                                  nn.Conv2d(FINE_WIDTH, self.OUTPUTS, 3, padding=1))
        with torch.no_grad():  # start out seeing no marks: most pixels have none
            self.out.bias[:4].fill_(START_LOGIT)  # pixel_shuffle takes output channel 0 from these four

    def forward(self, marked: torch.Tensor) -> torch.Tensor:
        h, w = marked.shape[-2:]
        x = self.padded(marked * 2.0 - 1.0)
        coarse = F.pixel_shuffle(self.out(self.features(F.pixel_unshuffle(x, 2))), 2)
        return (coarse + self.fine(torch.cat([x, coarse], dim=1)))[..., :h, :w]


def mark(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(coverage a (N, 1, H, W) in [0, ALPHA_MAX], colour c (N, 3, H, W) in [0, 1])."""
    return ALPHA_MAX * torch.sigmoid(logits[:, :1]), torch.sigmoid(logits[:, 1:])


def unmix(marked: torch.Tensor, alpha: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """The image under a mark: y = (1 - a) x + a c solved for x, clipped to [0, 1]."""
    return ((marked - alpha * colour) / (1.0 - alpha)).clamp(0.0, 1.0)


class MarkRemover(UNetModel):
    """A trained watermark-removal network with its training record; `latentzip.apps.denoise`
    cleans images with it."""

    NET = MarkNet
    KIND = UNMARKER
    HOW_TO_TRAIN = "latentzip train --noise-kind watermark"

    @property
    def threshold(self) -> float:
        """The least coverage the network must find for a pixel to be changed: set by
        training on marked images it did not learn from (`marktrain.calibrate`); models
        made before that leave only the faintest estimates alone."""
        return float(self.meta.get("coverage_threshold", UNTOUCHED))

    def calibration_note(self) -> str | None:
        """What the threshold chosen after training does, in a sentence (None for older models)."""
        found = self.meta.get("calibration")
        if not found:
            return None
        kind = "images it did not learn from" if found.get("set_aside") else "training images marked afresh"
        where = f"on {found['images']:,} {kind}"
        if self.threshold > ALPHA_MAX:
            return (f"no coverage threshold improved on the marked images ({where}), so it leaves images as they "
                    f"are: train it longer or on more images")
        return (f"it changes pixels where it finds a coverage of {self.threshold:.3g} or more: mean PSNR "
                f"{found['psnr']:.2f} dB against {found['psnr_marked']:.2f} for the marked images, {where}")

    def clean(self, marked: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """The image (1, 3, H, W) in [0, 1] under the marks of `marked` (same shape)."""
        alpha, colour = mark(self.run(marked))
        return untouched_below(marked, alpha, colour, self.threshold if threshold is None else threshold)


def untouched_below(marked: torch.Tensor, alpha: torch.Tensor, colour: torch.Tensor, threshold: float) -> torch.Tensor:
    """`unmix` where the coverage found is at least `threshold`; elsewhere `marked` as it is."""
    return torch.where(alpha < threshold, marked, unmix(marked, alpha, colour))
