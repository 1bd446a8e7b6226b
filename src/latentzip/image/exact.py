"""Lossless files: images coded exactly, plane by plane, where that takes fewer bytes than
the model's code with its lossless refinement layer.

A network trained on photographs spends its bits on textures and gradients. Scanned
pages, line art, screenshots and flat-coloured graphics are the opposite: most values
are exactly what their neighbours predict, and the few edges between flat areas are
what a transform coder and its residual pay most for. On the CCITT fax pages (1-bit
scans, 1728x2376) `photo:q4` and its lossless refinement layer took 110 times the bytes
of coding the pages exactly with the alpha coder (alpha.py: context mixing over decoded
neighbours), which takes 0.53x PNG's bytes and 1.07x JBIG's (bench/scans.py).

So a lossless file (`max_error` 0) prices both: for every image the encoder compares
what the model's code and its lossless refinement layer cost with what coding the
image's planes exactly costs, and codes the image exactly where that is no dearer
(`ImageCodec._exactly`). The refinement layer codes residuals with context tables, not
with a lossless coder's prediction, so coding exactly wins on photographs as well
(the sporco photographs: 10.8-15.1 bits a pixel exactly, against about 16 through
`photo:q4`). Both decode to the same pixels, so the choice is of bytes alone. (In a
lossy file an exact image would also be better, but a mean of per-image PSNR cannot
weigh an image without error, and a file bounded by a max error d > 0 would need the
choice to weigh the errors of both ways as well.) Each plane (grey, or red, green,
blue, then alpha) is coded by one alpha coder for the whole file, with the plane before
it as its guide, so green is predicted from red at the same pixel as well as from its
own neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .alpha import AlphaCoder


def _planes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(planes, guides), each (C, H, W): the image's channels and, for each, the plane
    before it (zeros for the first)."""
    planes = np.ascontiguousarray(np.moveaxis(image.reshape(*image.shape[:2], -1), -1, 0))
    guides = np.zeros_like(planes)
    guides[1:] = planes[:-1]
    return planes, guides


def encode(images: Sequence[np.ndarray]) -> tuple[bytes, np.ndarray]:
    """The stream of `images` coded exactly, and each one's cost in bits."""
    coder = AlphaCoder()
    bits = np.array([coder.encode(*_planes(im), 0).sum() for im in images])
    return coder.finish(), bits


class Reader:
    """Gives back the images of an exact stream, one at a time, in file order."""

    def __init__(self, stream: bytes):
        self.coder = AlphaCoder(stream)

    def next(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The next image, of `shape` (H, W, C); (H, W) where C is 1."""
        height, width, channels = shape
        planes = np.zeros((channels, height, width), dtype=np.uint8)
        guide = np.zeros((1, height, width), dtype=np.uint8)
        for c in range(channels):
            planes[c] = self.coder.decode(guide, 0)[0]
            guide = planes[c : c + 1]
        image = np.moveaxis(planes, 0, -1)
        return np.ascontiguousarray(image[..., 0] if channels == 1 else image)
