"""The alpha bound of a file, chosen by rate and distortion once its colour is coded.

Exact alpha is often most of a file: on the emoji at a low quality about 200 of 300
bytes an image, on painted portraits with soft edges 91% of the lowest quality's. Yet
an antialiased rim value off by a few levels changes little of what shows, while its
bits stay. So an encoder that is not told a bound holds the alpha planes back until the
colour is coded (the alpha coder writes a stream of its own, so nothing else waits),
prices them at each bound of BOUNDS, and keeps the one of least bits + lmbda x squared
error, with the quality's own lmbda, the exchange rate the network was trained at.

A file of many images is judged image by image: the mean of per-image PSNR, which users
and the benchmarks read, falls by an image's added error *relative to its own error*,
so each image's alpha error is weighed against its colour's (the error an icon whose
colour decodes almost exactly would take weighs more than a noisy photograph's, where a
pooled squared error would weigh them alike). Still one bound serves the whole file: on
tuxpaint's stamps at the highest qualities it cost glyphs decoded at about 60 dB some
7 dB, more than the bytes it saved were worth by mean PSNR. A file of one image is
judged by lmbda alone.
Fully transparent and fully opaque pixels stay exact at every bound (alpha.levels), so
hard masks cost nothing to loosen and never change.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .alpha import AlphaCoder, rounded
from .tiling import Tile, regions

BOUNDS = (0, 1, 2, 4, 8, 16)  # the bounds an encoder chooses among
ROUNDING_ERROR = 1 / 12  # squared error of rounding to 8 bits: the least any image is said to have
PIECE_PIXELS = 1 << 20  # pixels whose errors are measured at once (float64 copies: a 24 MP image took GBs)


class Planes:
    """The alpha planes of a file's chunks, in coding order, with what each bound would
    add to each image's error; then coded at the given or chosen bound (`code`)."""

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

    def code(self, bound: int | None, most: int | None = None, write: bool = False) -> tuple[AlphaCoder, np.ndarray]:
        """The file's alpha at `bound`, or else at the bound of least cost (see the
        module's docstring) up to `most`, 0 without an lmbda to price error with: the
        coder that coded it (its stream written if `write`, else only priced) and each
        image's bits. Every bound tried is coded once, the chosen one included."""
        if bound is not None:
            return self._run(AlphaCoder(bound), write)
        best = self._run(AlphaCoder(0), write)
        if self.lmbda is None or not self.chunks:
            return best
        errors = self.errors[self.values > 0]  # the images with alpha
        exact = errors[:, 0]
        floored = np.maximum(exact, self.values[self.values > 0] * ROUNDING_ERROR)
        weight = floored.mean() / floored
        least = float(best[1].sum())
        for k, candidate in enumerate(BOUNDS[1:], start=1):
            if most is not None and candidate > most:
                break
            penalty = self.lmbda / self.channels * float((weight * (errors[:, k] - exact)).sum())
            if penalty >= least:  # its bits would have to be fewer than none
                continue
            run = self._run(AlphaCoder(candidate), write)
            if float(run[1].sum()) + penalty < least:
                best, least = run, float(run[1].sum()) + penalty
        return best

    def _run(self, coder: AlphaCoder, write: bool) -> tuple[AlphaCoder, np.ndarray]:
        """`coder` and each image's alpha bits with it, chunk by chunk and tile by tile,
        as a decoder reads them."""
        bits = np.zeros(len(self.values))
        for start, alpha, guide, tiles in self.chunks:
            for rows, cols in regions(tiles):
                plane, hint = np.ascontiguousarray(alpha[:, rows, cols]), np.ascontiguousarray(guide[:, rows, cols])
                bits[start : start + len(alpha)] += coder.encode(plane, hint) if write else coder.costs(plane, hint)
        return coder, bits

    def restored(self, bound: int) -> dict[int, np.ndarray]:
        """The alpha plane a decoder gives for each image with alpha, by index."""
        return {start + i: rounded(alpha[i], bound) for start, alpha, _, _ in self.chunks for i in range(len(alpha))}


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
