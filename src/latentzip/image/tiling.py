"""Where the tiles of a large image lie.

A convolutional model codes an image larger than the file's tile side in tiles, one
after the other, so encoding and decoding hold one tile's activations at a time and
memory stays bounded whatever the image's size (a 24-megapixel photograph is 24 tiles of
1024 px). Tiles start on the model's block grid, so their latent grids tile the image's
latent grid exactly and no pixel of padding is coded between them; along each axis the
image is split into as few tiles as the side allows, of near-equal size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SIDE = 1024  # the tile side encoders write (a file stores its own)
# What a decoder accepts from a file. A tile's latents are read at once, so the side
# bounds what a file can make a decoder hold: the photo presets read a 1024 px tile at
# a peak of about 0.3 GB, so a 2048 px one would take some 1.2 GB and a 16,384 px one 80 GB.
MIN_SIDE, MAX_SIDE = 256, 1 << 11


@dataclass(frozen=True)
class Tile:
    rows: slice
    cols: slice

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return self.rows.stop - self.rows.start, self.cols.stop - self.cols.start


def spans(size: int, side: int, stride: int) -> list[slice]:
    """`size` pixels cut into ceil(size / side) spans that start on multiples of `stride`
    (`side` is a multiple of it), none longer than `side`."""
    count = -(-size // side)
    blocks = -(-size // stride)
    bounds = [stride * (blocks * k // count) for k in range(count)] + [size]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def tiles(height: int, width: int, side: int, stride: int) -> list[Tile]:
    """The tiles of a height x width image in raster order (one tile if it fits)."""
    rows, cols = spans(height, side, stride), spans(width, side, stride)
    return [Tile(r, c) for r in rows for c in cols]


def regions(tiles: Sequence[Tile] | None) -> list[tuple[slice, slice]]:
    """(rows, cols) of each of a chunk's tiles in order, or of the whole chunk without."""
    return [(t.rows, t.cols) for t in tiles] if tiles else [(slice(None), slice(None))]


def needs_tiles(shape: tuple[int, ...], side: int) -> bool:
    return shape[0] > side or shape[1] > side


def valid_side(side: int, stride: int) -> bool:
    """Whether a file's tile side is one a decoder accepts for a model of `stride`."""
    return MIN_SIDE <= side <= MAX_SIDE and side % stride == 0
