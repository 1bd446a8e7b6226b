"""Images coded directly: plane by plane with the alpha coder, without the network, in
files bounded by a max error, where that takes fewer bytes than the model's code.

A network trained on photographs spends its bits on textures and gradients. Scanned
pages, line art, screenshots and flat-coloured graphics are the opposite: most values
are exactly what their neighbours predict, and the few edges between flat areas are
what a transform coder and its residual pay most for. On the CCITT fax pages (1-bit
scans, 1728x2376) `photo:q4` and its lossless refinement layer took 110 times the bytes
of coding the pages directly with the alpha coder (alpha.py: context mixing over decoded
neighbours), which takes 0.53x PNG's bytes and 1.07x JBIG's (bench/scans.py).

So a file bounded by a max error d (`max_error`; 0 is lossless) prices both: for every
image the encoder compares what the model's code and its refinement layer cost with what
coding the image's planes directly costs, and codes it directly where that is no dearer,
any error it adds weighed too (`ImageCodec._directly`). Coded directly, each colour
value is rounded to the nearest of the levels 0, 2d+1, 2(2d+1), ... and 255
(alpha.levels) and the levels are coded exactly; alpha is coded exactly. The refinement
layer rounds the network's residuals to steps of the same size, so at small bounds the
errors either way are about alike (a mean square near d(d+1)/3), and bytes decide. The
refinement layer codes residuals with context tables, not with a predictor, so coding
directly wins on photographs as well (the ten photographs of bench/photos.py, a file
each: 12.9 bits a pixel at d = 0, 8.05 at 1, 6.04 at 2, 4.11 at 4, where `photo:q4` and
its refinement layer took 16.0, 11.2, 9.1 and 6.6, and JPEG-LS takes 12.7, 8.4, 6.7 and
4.9). At larger bounds the refinement layer only trims the network's worst errors, so a
direct code that adds error must save bytes enough to pay for it. A lossy file (no max
error) never codes directly: without a bound there is no rounding of the same kind to
set the direct code against. Each plane (grey, or red, green, blue, then alpha) is coded
by one alpha coder for the whole file, with the plane before it as its guide, so green
is predicted from red at the same pixel as well as from its own neighbours.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from .alpha import AlphaCoder, rounded
from .alphabound import PIECE_PIXELS


def _bounds(channels: int, max_error: int) -> np.ndarray:
    """Each plane's bound: `max_error` for colour, 0 for alpha (the last of 2 or 4)."""
    bounds = np.full(channels, max_error, dtype=np.int64)
    if channels in (2, 4):
        bounds[-1] = 0
    return bounds


RUN_VALUES = 1 << 22  # values of same-shaped images coded in one call (Python's share is per call)


def _planes(images: np.ndarray, max_error: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(planes, guides, bounds) of same-shaped images (n, H, W, C), in coding order
    (n * C, H, W): each image's channels rounded to their bounds' levels, for each the
    plane before it in its image as decoded (zeros for the first), and the bounds."""
    planes = np.moveaxis(images, -1, 1).copy()  # a copy: it is rounded in place
    bounds = _bounds(planes.shape[1], max_error)
    for c, bound in enumerate(bounds):
        planes[:, c] = rounded(planes[:, c], int(bound))
    guides = np.zeros_like(planes)
    guides[:, 1:] = planes[:, :-1]
    n, channels, height, width = planes.shape
    return (planes.reshape(n * channels, height, width), guides.reshape(n * channels, height, width),
            np.tile(bounds, n))


@functools.lru_cache(maxsize=None)
def _squared_errors(max_error: int) -> np.ndarray:
    """For each value 0..255, its squared error once rounded to the levels of `max_error`
    (read-only: it is shared)."""
    values = np.arange(256)
    table = (values - rounded(values.astype(np.uint8), max_error)) ** 2.0
    table.flags.writeable = False
    return table


def errors(images: Sequence[np.ndarray], max_error: int) -> np.ndarray:
    """Each image's mean squared error (metrics.mse: of what shows) once coded directly
    within `max_error`, as a decoder gives it, from each value's rounding error and
    without rounded copies: pricing a file of 2,000 digits spent a tenth of its time
    rounding each one again to measure it. Colour under alpha is weighed by alpha
    squared, as premultiplied colour is; alpha itself is kept exact."""
    out = np.zeros(len(images))
    weights = (np.arange(256) / 255.0) ** 2  # of colour, by alpha
    for i, image in enumerate(images):
        planes = image.reshape(-1, image.shape[-1])
        bounds = _bounds(planes.shape[1], max_error)
        for start in range(0, len(planes), PIECE_PIXELS):  # counting copies a piece, not a large image
            piece = planes[start : start + PIECE_PIXELS]
            shown = weights[piece[:, -1]] if piece.shape[1] in (2, 4) else None
            for c in np.flatnonzero(bounds):
                out[i] += np.bincount(piece[:, c], shown, minlength=256) @ _squared_errors(int(bounds[c]))
        out[i] /= planes.size
    return out


def _runs(images: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """(start, stop) of the runs of consecutive same-shaped images, each of at most
    RUN_VALUES values (or one image)."""
    runs, start = [], 0
    for stop in range(1, len(images) + 1):
        if (stop == len(images) or images[stop].shape != images[start].shape
                or (stop + 1 - start) * images[start].size > RUN_VALUES):
            runs.append((start, stop))
            start = stop
    return runs


def encode(images: Sequence[np.ndarray], max_error: int,
           step: Callable[[int], None] | None = None) -> tuple[bytes, np.ndarray]:
    """The stream of `images` (each (H, W, C)) coded directly within `max_error`, and each
    one's cost in bits; `step` is told the pixels of each run of images as it is done."""
    coder = AlphaCoder()
    bits = np.zeros(len(images))
    for start, stop in _runs(images):
        run = np.stack(images[start:stop])
        bits[start:stop] = coder.encode(*_planes(run, max_error)).reshape(stop - start, -1).sum(axis=1)
        if step is not None:
            step((stop - start) * run.shape[1] * run.shape[2])
    return coder.finish(), bits


class Reader:
    """Gives back the images of a stream of images coded directly, one at a time, in file order."""

    def __init__(self, stream: bytes, max_error: int):
        self.coder = AlphaCoder(stream)
        self.max_error = max_error

    def next(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The next image, of `shape` (H, W, C); (H, W) where C is 1."""
        height, width, channels = shape
        planes = np.zeros((channels, height, width), dtype=np.uint8)
        guide = np.zeros((1, height, width), dtype=np.uint8)
        for c, bound in enumerate(_bounds(channels, self.max_error)):
            planes[c] = self.coder.decode(guide, int(bound))[0]
            guide = planes[c : c + 1]
        image = np.moveaxis(planes, 0, -1)
        return np.ascontiguousarray(image[..., 0] if channels == 1 else image)
