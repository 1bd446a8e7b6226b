"""The alpha bounds of a file's images, chosen by rate and distortion once the colour is coded.

Exact alpha is often most of a file: on the emoji at a low quality about 200 of 300
bytes an image, on painted portraits with soft edges 91% of the lowest quality's. Yet
an antialiased rim value off by a few levels changes little of what shows, while its
bits stay. So an encoder that is not told a bound holds the alpha planes back until the
colour is coded (the alpha coder writes a stream of its own, so nothing else waits),
prices them at each of the alpha coder's BOUNDS, and keeps the bound of least bits +
lmbda x squared error for the file, with the quality's own lmbda, the exchange rate the
network was trained at.

The mean of per-image PSNR, which users and the benchmarks read, falls by an image's
added error *relative to its own error*, so each image's alpha error is weighed against
its colour's: the error an icon whose colour decodes almost exactly would take weighs
more than a noisy photograph's. Even so, one bound for a whole file cost glyphs decoded
at about 60 dB some 7 dB on tuxpaint's stamps at the highest qualities, more than the
bytes it saved were worth. So an image for which the file's bound adds error that costs
more than its whole alpha coded exactly takes the tighter bound of least cost; the file
then names each image's bound at the head of its chunk, and the coder keeps what it
learns at each bound apart. Letting every image take its own cheapest bound did not
pay: the coder learns across images (a mask seen before costs little), so an image's
price at a bound depends on the images before it, and freely mixed files cost far more
than their prices said. For the same reason a mixed file is kept only if, once coded,
it beats the file's single bound; a file of one bound is written as before.
Fully transparent and fully opaque pixels stay exact at every bound (alpha.levels), so
hard masks cost nothing to loosen and never change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .alpha import BOUNDS, AlphaCoder, rounded
from .tiling import Tile, regions

ROUNDING_ERROR = 1 / 12  # squared error of rounding to 8 bits: the least any image is said to have
PIECE_PIXELS = 1 << 20  # pixels whose errors are measured at once (float64 copies: a 24 MP image took GBs)


@dataclass
class Coded:
    """A file's alpha, coded: the coder (its stream written, or only priced), each
    image's bits and bound, and whether the bounds are in the stream (they differ)."""

    coder: AlphaCoder
    bits: np.ndarray
    bounds: np.ndarray
    per_image: bool


class Planes:
    """The alpha planes of a file's chunks, in coding order, with what each bound would
    add to each image's error; then coded at the given or chosen bounds (`code`)."""

    def __init__(self, count: int, lmbda: float | None):
        """Planes of a file of `count` images, judged at `lmbda` (None: no bound to
        choose, the file's is given or the model has no lmbda)."""
        self.lmbda = lmbda
        self.chunks: list[tuple[int, np.ndarray, np.ndarray, Sequence[Tile] | None]] = []
        self.errors = np.zeros((count, len(BOUNDS)))  # squared error of what shows, at each bound
        self.values = np.zeros(count)  # pixels x channels of each image with alpha, for the floor
        self.channels = 0

    def add(self, start: int, truth: np.ndarray, decoded: np.ndarray, tiles: Sequence[Tile] | None) -> None:
        """A chunk (n, H, W, C') from image `start` on, as coded (`decoded`: the colour a
        decoder gives, and the alpha guide) and as it should be (`truth`)."""
        alpha = truth[..., -1]
        self.chunks.append((start, np.ascontiguousarray(alpha), np.ascontiguousarray(decoded[..., -1]), tiles))
        stop = start + len(truth)
        if self.lmbda is not None:
            self.errors[start:stop] = shown_errors(decoded[..., :-1], truth[..., :-1], alpha)
        self.values[start:stop] = alpha[0].size * truth.shape[-1]
        self.channels = truth.shape[-1]

    def code(self, bound: int | None, most: int | None = None, write: bool = False) -> Coded:
        """The file's alpha at `bound`, or else at the bounds chosen as the module's
        docstring says, none above `most`, 0 without an lmbda to price error with; its
        stream written if `write`, else only priced."""
        count = len(self.values)
        if bound is not None or self.lmbda is None or not self.chunks:
            return self._run(np.full(count, bound or 0), False, write)
        candidates = np.array([b for b in BOUNDS if most is None or b <= most])
        coded = self.values > 0  # the images in the alpha stream
        exact = self.errors[:, 0]
        floored = np.maximum(exact, self.values * ROUNDING_ERROR)
        weight = np.where(coded, floored[coded].mean() / np.maximum(floored, ROUNDING_ERROR), 0.0)
        penalty = self.lmbda / self.channels * weight[:, None] * (self.errors[:, : len(candidates)] - exact[:, None])
        prices = np.full(penalty.shape, np.inf)
        single, best = 0, self._run(np.zeros(count), False, write)  # the best single bound, as coded
        prices[:, 0] = best.bits
        for k in range(1, len(candidates)):
            if (penalty[coded, k] < prices[coded, 0]).any():  # else no image could gain by it
                run = self._run(np.full(count, candidates[k]), False, write)
                prices[:, k] = run.bits
                if (prices[:, k] + penalty[:, k]).sum() < (best.bits + penalty[:, single]).sum():
                    best, single = run, k
        totals = prices + penalty
        leaves = coded & (penalty[:, single] > prices[:, 0])  # the file's bound costs it more than exact alpha
        chosen = np.where(leaves, np.argmin(totals[:, : single + 1], axis=1), single)
        if (chosen == single).all():
            return best
        mixed = self._run(candidates[chosen], True, write)
        return mixed if (mixed.bits + penalty[np.arange(count), chosen]).sum() < totals[:, single].sum() else best

    def _run(self, bounds: np.ndarray, per_image: bool, write: bool) -> Coded:
        """Each image's alpha at its bound of `bounds`, chunk by chunk and tile by tile
        as a decoder reads them, each chunk opened by its bounds if `per_image`."""
        coder = AlphaCoder(per_image=per_image)
        bits = np.zeros(len(self.values))
        bounds = bounds.astype(np.int64)
        for start, alpha, guide, tiles in self.chunks:
            stop = start + len(alpha)
            if per_image:
                bits[start:stop] += coder.encode_bounds(bounds[start:stop], write)
            for rows, cols in regions(tiles):
                plane, hint = np.ascontiguousarray(alpha[:, rows, cols]), np.ascontiguousarray(guide[:, rows, cols])
                bits[start:stop] += (coder.encode if write else coder.costs)(plane, hint, bounds[start:stop])
        return Coded(coder, bits, bounds, per_image)

    def restored(self, bounds: np.ndarray) -> dict[int, np.ndarray]:
        """The alpha plane a decoder gives for each image with alpha, by index, each at
        its bound of `bounds`."""
        return {start + i: rounded(alpha[i], int(bounds[start + i]))
                for start, alpha, _, _ in self.chunks for i in range(len(alpha))}


def shown_errors(decoded: np.ndarray, truth: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Squared error of what shows (colour premultiplied by alpha, and alpha; see
    metrics.py) of each image (n,) of decoded colour (n, H, W, c) against its truth,
    were its alpha (n, H, W) kept within each of BOUNDS: (n, len(BOUNDS)). Images go in
    groups, a large one in bands of rows, of at most PIECE_PIXELS pixels at a time."""
    n, h, w = alpha.shape
    out = np.zeros((n, len(BOUNDS)))
    group, rows = max(1, PIECE_PIXELS // (h * w)), max(1, PIECE_PIXELS // w)
    for first in range(0, n, group):
        images = slice(first, first + group)
        for top in range(0, h, rows):
            band = (images, slice(top, top + rows))
            out[images] += _piece_errors(decoded[band], truth[band], alpha[band])
    return out


def _piece_errors(decoded: np.ndarray, truth: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """`shown_errors` of one piece. Only pixels strictly between transparent and opaque
    differ from bound to bound."""
    exact = (((decoded.astype(np.float64) - truth) * (alpha[..., None] / 255.0)) ** 2).sum(axis=(1, 2, 3))
    out = np.repeat(exact[:, None], len(BOUNDS), axis=1)
    image, rows, cols = np.nonzero((alpha > 0) & (alpha < 255))
    if not len(image):
        return out
    a = alpha[image, rows, cols]
    colour, want = decoded[image, rows, cols].astype(np.float64), truth[image, rows, cols] * (a[:, None] / 255.0)
    before = ((colour * (a[:, None] / 255.0) - want) ** 2).sum(1)
    for k, bound in enumerate(BOUNDS[1:], start=1):
        kept = rounded(a, bound).astype(np.float64)
        after = ((colour * (kept[:, None] / 255.0) - want) ** 2).sum(1) + (kept - a) ** 2
        out[:, k] += np.bincount(image, weights=after - before, minlength=len(alpha))
    return out
