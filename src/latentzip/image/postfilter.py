"""Training a model's post-filter (transforms.PostFilter) on what the model decodes.

A trained model gains a post-filter without retraining the rest: each quality's
synthesis output for the rounded latents of training pieces is computed once, and the
filter alone learns to map it to the pieces' pixels. Every other weight is frozen, so
the latents, and the bytes of every file, stay as they were; only the decoded pixels
change. The loss weighs each quality by the inverse of its squared error before the
filter, so every rung counts by its gain in dB, not by its error: with plain squared
error the low rungs, whose errors are largest, took the whole filter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.nn import functional as F

from .model import Autoencoder

CROP = 128  # side of the pieces whose synthesis is computed once
PATCH = 64  # side of the patches a step trains on, cut from those pieces
BATCH = 16
RATE = 1e-3  # Adam's peak; it falls to 0 over the budget (cosine)


@dataclass
class FitStats:
    """What a post-filter fit did, for logs: gain in dB per quality on its pieces."""

    steps: int
    seconds: float
    pieces: int
    gain_db: list[float]


def with_post_filter(model: Autoencoder, width: int) -> Autoencoder:
    """A copy of the conv `model` with a post-filter of `width` channels that starts as
    no filter (0: with none), the other weights the same."""
    grown = Autoencoder(replace(model.cfg, post=width))
    state = grown.state_dict()
    state.update({k: v for k, v in model.state_dict().items() if k in state and not k.startswith("synthesis.post.")})
    grown.load_state_dict(state)
    return grown


@torch.no_grad()
def _pairs(model: Autoencoder, images: Sequence[np.ndarray], count: int,
           rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixels (n, C, s, s) float16, synthesis output before the filter (Q, n, C, s, s)
    float16, centred on 0) of `count` pieces of CROP px (or of the largest side images
    allow) drawn in proportion to image area."""
    side = min(CROP, max(min(im.shape[:2]) for im in images)) // 2 * 2  # even: whole 2x2 groups
    if side < 2:
        raise ValueError("no image of 2 x 2 pixels or more to train a post-filter on")
    usable = [im for im in images if min(im.shape[:2]) >= side]
    areas = np.array([im.shape[0] * im.shape[1] for im in usable], np.float64)
    crops = []
    for i in rng.choice(len(usable), size=count, p=areas / areas.sum()):
        im = usable[i]
        top, left = rng.integers(im.shape[0] - side + 1), rng.integers(im.shape[1] - side + 1)
        crops.append(im[top : top + side, left : left + side])
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[1] < model.cfg.channels:  # grey pieces for a colour model
        x = x.expand(-1, model.cfg.channels, -1, -1)
    bases = torch.empty((model.cfg.qualities, *x.shape), dtype=torch.float16)
    for i in range(0, len(x), 32):
        y = model.analyse(x[i : i + 32])
        for quality in range(model.cfg.qualities):
            base = model.synthesise(model.latents(y, quality, "rounded")[0], x.shape[-2:], clamp=False)
            bases[quality, i : i + 32] = base - 0.5
    return x.half(), bases


def fit(model: Autoencoder, images: Sequence[np.ndarray], minutes: float, pieces: int = 512, seed: int = 0,
        on_step: Callable[[int], None] | None = None) -> FitStats:
    """Train `model`'s post-filter alone for `minutes` on pieces of `images` (uint8
    (H, W, C) arrays), every other weight frozen; returns what it did."""
    post = model.synthesis.post
    if post is None:
        raise ValueError("the model has no post-filter")
    started = time.monotonic()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model.eval()
    x, bases = _pairs(model, images, pieces, rng)
    qualities, n = bases.shape[:2]
    # Each quality's squared error before the filter: its loss is counted relative to it.
    before = torch.stack([_error(bases[q], x) for q in range(qualities)]).clamp_min(1e-8)
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(post.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=RATE)
    budget = minutes * 60 - (time.monotonic() - started)
    patch = min(PATCH, x.shape[-1]) // 2 * 2
    step, begun = 0, time.monotonic()
    post.train()
    while (elapsed := time.monotonic() - begun) < budget:
        for group in opt.param_groups:
            group["lr"] = RATE * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget)))
        q = int(rng.integers(qualities))
        idx = torch.from_numpy(rng.integers(n, size=BATCH))
        # Even offsets: the filter's 2x2 groups keep the phase they have in a whole image.
        top, left = (2 * int(rng.integers((x.shape[-1] - patch) // 2 + 1)) for _ in range(2))
        window = (slice(None), slice(None), slice(top, top + patch), slice(left, left + patch))
        target, base = x[idx][window].float(), bases[q, idx][window].float()
        loss = F.mse_loss(post(base, q) + 0.5, target) / before[q]
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if on_step is not None:
            on_step(step)
    post.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        gains = [10 * math.log10(float(before[q]) / max(float(_error(bases[q], x, lambda b: post(b, q))), 1e-12))
                 for q in range(qualities)]
    return FitStats(step, time.monotonic() - started, n, gains)


@torch.no_grad()
def _error(bases: torch.Tensor, x: torch.Tensor, filtered: Callable[[torch.Tensor], torch.Tensor] | None = None,
           chunk: int = 32) -> torch.Tensor:
    """Mean squared error of the decoded pixels (clamped, as decoding does) against `x`,
    with the synthesis output `bases` (centred on 0) passed through `filtered` if given."""
    total = torch.zeros((), dtype=torch.float64)
    for i in range(0, len(x), chunk):
        base = bases[i : i + chunk].float()
        out = (filtered(base) if filtered is not None else base) + 0.5
        total += float((out.clamp(0, 1) - x[i : i + chunk].float()).pow(2).sum())
    return total / x.numel()
