"""The rate-distortion objective: what training minimises over a model's weights, and
what an encoder minimises over one image's latents.

loss = bits per pixel + lmbda * 255^2 * MSE, with one lmbda per rung of the quality
ladder (`lmbdas`). Training learns an analysis that is good on average; fitting
(`fit_latents`) then moves each image's latents a few steps further down that image's
own loss before they are rounded and coded. The decoder is not involved: a fitted file
is an ordinary file, which is why fitting is an encoder's choice (its `effort`).
"""

from __future__ import annotations

import math

import torch

from .model import Autoencoder

LADDER_RATIO = 3.0  # each quality's lmbda is this many times the one below
EFFORT_STEPS = (0, 4, 8)  # fitting steps at each effort (16 cost more bytes than 8 on the photo presets)
DEFAULT_EFFORT = 2
FIT_RATE = 0.06  # Adam's first step, in quantizer steps; it falls to 0 over the steps (cosine)


def lmbdas(top: float, qualities: int) -> list[float]:
    """The lmbda of each quality, lowest first, given the top quality's."""
    return [top / LADDER_RATIO ** (qualities - 1 - q) for q in range(qualities)]


def distortion(x_hat: torch.Tensor, x: torch.Tensor, alpha: bool) -> torch.Tensor:
    """Mean squared error per image on [0, 1] pixels. With alpha (the last channel) it is
    the error a coded file will have: colour errors count as much as they show (weighted
    by the true alpha), and alpha errors not at all, since the alpha coder codes alpha
    exactly whatever the network's alpha says (that is only its guide). Training alpha
    as well spent the latents on it: emoji, 6 minutes from the photo model, test split,
    517 bytes an image for 31.3 dB, where alpha weighted as three colour channels took
    1,038 bytes for 30.3 dB (and the linear start 796 bytes for 31.2 dB)."""
    if alpha:
        weight = torch.cat([x[:, -1:].expand_as(x[:, :-1]), torch.zeros_like(x[:, -1:])], dim=1)
        return (((x_hat - x) * weight) ** 2).flatten(1).mean(1)
    return ((x_hat - x) ** 2).flatten(1).mean(1)


def fit_latents(model: Autoencoder, x: torch.Tensor, y: torch.Tensor, quality: int, lmbda: float,
                steps: int) -> torch.Tensor:
    """Latents of the images `x` (n, C, H, W in [0, 1]) that cost less than the
    analysis's `y` under the relaxed loss (`LatentCodec.forward(relaxed=True)`): `steps`
    of Adam from `y`, each image keeping the best latents it met.

    The relaxation rounds nothing, so its gradient is the loss's own, where a
    straight-through rounding drifts (its gradient does not change until a rounding
    flips). Steps are taken in quantizer steps (y times the quality's gain), so one rate
    suits every channel and quality. On the sporco photographs with the photo presets,
    8 steps cut BD-rate by about 4% (30-40 dB); the file costs what the fitted latents
    cost after rounding, which the relaxation only approximates. The distortion is the
    synthesis's before its post-filter (transforms.PostFilter): with the filter, at full
    resolution, encoding a 768x512 photograph at effort 2 took 1.5-1.7 s instead of
    1.2. The photo presets' filter takes most of what fitting gained before it (README)."""
    gain = model.latents.gains.gain(quality, y.ndim).detach()
    pixels = x.shape[-2] * x.shape[-1]
    u = (y * gain).detach().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=FIT_RATE)
    best, best_loss = y.detach().clone(), torch.full((len(y),), math.inf)
    with torch.enable_grad():
        for step in range(steps + 1):
            y_hat, bits = model.latents(u / gain, quality, relaxed=True)
            x_hat = model.synthesise(y_hat, x.shape[-2:], clamp=False)
            loss = bits / pixels + lmbda * 255.0**2 * distortion(x_hat, x, model.cfg.has_alpha)
            with torch.no_grad():
                better = loss < best_loss
                best[better] = (u / gain)[better]
                best_loss = torch.where(better, loss, best_loss)
            if step == steps:
                break
            (grad,) = torch.autograd.grad(loss.sum(), [u])
            u.grad = grad
            for group in opt.param_groups:
                group["lr"] = FIT_RATE * 0.5 * (1 + math.cos(math.pi * step / steps))
            opt.step()
    return best
