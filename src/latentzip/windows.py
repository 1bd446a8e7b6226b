"""Training within a pixel budget: one random window of each image; and few images cut
into pieces, so that a validation split can hold out part of each.

Training cuts random crops, so it never needs a whole photograph at once, but a folder
of a thousand camera photographs holds tens of gigapixels, more than a machine's memory.
Past a budget of pixels, each image is cut to one window at a random place, every window
the same share of its image's side, so each image keeps its share of what training sees.
No window is narrower than MIN_SIDE (or than its whole image); where even windows that
narrow would not fit, a random subset of the images is kept, whole or windowed. Windows
are planned from the images' sizes alone (a file's header), so a folder can be read one
image at a time, keeping only the windows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_SIDE = 256  # twice the largest training crop: room for crops at many places in a window


def scales(sizes: Sequence[tuple[int, int]], max_pixels: int, seed: int = 0) -> np.ndarray:
    """Per image of (height, width) `sizes`, the share of its sides its window keeps:
    1 everywhere when the images fit in `max_pixels`, 0 for an image left out."""
    sides = np.array(sizes, np.float64).reshape(-1, 2)
    pixels, short = sides.prod(1), sides.min(1)
    floor = np.minimum(1.0, MIN_SIDE / np.maximum(short, 1))  # the narrowest window of each image
    limit = max_pixels * (1 + 1e-9)  # a window of exactly the budget is not over it by rounding

    def kept(f: float) -> float:
        return float((pixels * np.maximum(f, floor) ** 2).sum())

    if kept(1.0) <= limit:
        return np.ones(len(sides))
    if kept(0.0) > limit:  # windows at their narrowest are still too many: keep some images
        order = np.random.default_rng(seed).permutation(len(sides))
        fits = np.cumsum((pixels * floor**2)[order]) <= limit
        out = np.zeros(len(sides))
        out[order[fits]] = floor[order[fits]]
        return out
    low, high = 0.0, 1.0  # the largest common share that fits, by bisection
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if kept(mid) <= limit else (low, mid)
    return np.maximum(low, floor)


def cut(image: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """A window of `image` (H, W, ...) `scale` of its sides, at a random place (a view)."""
    h, w = image.shape[:2]
    height, width = (min(n, max(1, round(n * scale))) for n in (h, w))
    top, left = int(rng.integers(h - height + 1)), int(rng.integers(w - width + 1))
    return image[top : top + height, left : left + width]


def within(images: Sequence[np.ndarray] | np.ndarray, max_pixels: int,
           seed: int = 0) -> Sequence[np.ndarray] | np.ndarray:
    """`images` themselves where they fit in `max_pixels`, else their windows (views)."""
    shares = scales([im.shape[:2] for im in images], max_pixels, seed)
    if (shares == 1).all():
        return images
    return [cut(im, s, rng_for(seed, i)) for i, (im, s) in enumerate(zip(images, shares)) if s > 0]


def pieces(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Every image cut into a grid of pieces (views) at least MIN_SIDE a side, or left
    whole where it is narrower. One satellite scene or a few photographs then split into
    training and validation by the piece, not by the whole image."""
    out = []
    for image in images:
        h, w = image.shape[:2]
        rows = np.linspace(0, h, max(1, h // MIN_SIDE) + 1).round().astype(int)
        cols = np.linspace(0, w, max(1, w // MIN_SIDE) + 1).round().astype(int)
        out += [image[top:bottom, left:right] for top, bottom in zip(rows, rows[1:])
                for left, right in zip(cols, cols[1:])]
    return out


def rng_for(seed: int, index: int) -> np.random.Generator:
    """The generator that places image `index`'s window: the same however the images are read."""
    return np.random.default_rng([seed, index])


def describe(count: int, total: float, max_pixels: int, shares: np.ndarray) -> str:
    """One line on what windowing did, for the user."""
    kept = shares[shares > 0]
    if len(kept) == count:
        what = f"one random window of each, {100 * kept.min():.0f}% of its sides (at least {MIN_SIDE} px)"
    else:
        what = f"{len(kept):,} of them chosen at random, each cut to a random window {MIN_SIDE} px on its shorter side"
    return (f"the {count:,} training images hold {_megapixels(total)} megapixels, more than the "
            f"{_megapixels(max_pixels)} latentzip trains on at once: training on {what}")


def _megapixels(pixels: float) -> str:
    return f"{pixels / 1e6:,.0f}" if pixels >= 1e7 else f"{pixels / 1e6:.2g}"
