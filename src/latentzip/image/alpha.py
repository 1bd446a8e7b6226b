"""The alpha coder: the alpha channel, losslessly or within a bound, by context mixing.

Alpha is not like colour. Icons, cut-outs and decals are fully transparent outside,
opaque inside, and a thin antialiased rim between them, so a pixel's alpha is nearly
always what its decoded neighbours say, and where it is not, the rim repeats the same
few ramps. A residual layer over the network's alpha (what refine.py does for colour)
pays for every rim pixel the network blurs; this coder predicts each alpha value from
its already decoded neighbours instead, with the network's alpha as one more context
(it knows the pixels to the right and below, which the neighbours cannot, where the
network learned alpha: models trained now leave alpha to this coder alone, since
training alpha into the latents cost more colour bytes than it saved here).

Pixels go in raster order, image by image. With a bound d, alpha is first rounded to
the nearest of the levels 0, 2d+1, 2(2d+1), ... and 255, so 0 and 255 stay exact and
no value moves by more than d; d = 0 keeps every value. An encoder not told d chooses
one of BOUNDS for each image (alphabound.py); where a file's images differ, each
chunk's bounds open its part of the stream (`encode_bounds`). Each pixel then costs one
binary decision, "is the level the one the neighbours predict" (the median edge
predictor of JPEG-LS over the left, upper and upper-left values), and only when it is
not, the level's bits, most significant first. Every decision is predicted by seven
hashed contexts of the neighbours and the network's alpha, each an adaptive counter,
mixed by a logistic mixer whose weights are chosen by the decision and the local
gradient. The model starts empty in every file and learns as it codes, so it stores
nothing in the model file; a file of many images codes the later ones with what the
earlier ones taught it. Every quantity is an integer, so decoding reproduces the
encoder's probabilities on any machine; the coder is the lossless levels' binary
arithmetic coder (lossless/arith.py), compiled into the same loop.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np

from ..errors import FormatError
from ..jit import njit
from ..lossless import arith
from ..lossless.arith import coder_step
from ..lossless.fast import hash32, train_counter
from ..lossless.predict import SQUASH, STRETCH, squash

BOUNDS = (0, 1, 2, 4, 8, 16, 32)  # the bounds an encoder chooses among; a file of mixed bounds names them by index
BOUND_BITS = 3  # an index into BOUNDS, as the stream codes it
CONTEXTS = 7
TABLE_BITS = 20  # counters per context: 4 MiB each
COUNTER_LIMIT = 255
MIXER_RATE = 6
GRADIENT_CLASSES = 5
WEIGHT_SETS = 256 * GRADIENT_CLASSES  # decision (0: the prediction flag, else the partial level) x gradient
INPUTS = CONTEXTS + 1  # the contexts' stretched probabilities and a bias
BIAS = 256
PIXEL_BYTES = 14  # the most one pixel can add to the stream: 9 decisions of at most 12 bits
# Ideal cost in bits of a decision coded with probability p/4096, for pricing.
COST = -np.log2(np.maximum(np.arange(4097), 1) / 4096.0)
(X1, X2, X, IO, NSCALARS) = range(5)


def levels(max_error: int) -> np.ndarray:
    """The alpha values a bound of `max_error` keeps: multiples of 2d+1, and 255."""
    return np.unique(np.append(np.arange(0, 256, 2 * max_error + 1), 255)).astype(np.int64)


def _nearest(max_error: int) -> np.ndarray:
    """For each value 0..255, the index of its nearest level."""
    return np.abs(np.arange(256)[:, None] - levels(max_error)[None, :]).argmin(1).astype(np.int64)


@functools.lru_cache(maxsize=None)
def _rounding(max_error: int) -> np.ndarray:
    """For each value 0..255, its nearest level (read-only: it is shared)."""
    table = levels(max_error)[_nearest(max_error)].astype(np.uint8)
    table.flags.writeable = False
    return table


@functools.lru_cache(maxsize=None)
def _tables(max_error: int) -> tuple[np.ndarray, np.ndarray, int]:
    """What the kernel codes a bound with: its levels, each value's nearest level, and
    the bits of a level's index (shared: the kernel only reads them)."""
    found = levels(max_error)
    return found, _nearest(max_error), max(1, int(len(found) - 1).bit_length())


def rounded(alpha: np.ndarray, max_error: int) -> np.ndarray:
    """uint8 `alpha` with every value at its nearest level: what a decoder gives."""
    return _rounding(max_error)[alpha]


def _runs(bounds: int | np.ndarray, count: int) -> Iterator[tuple[int, int, int]]:
    """(start, stop, bound) of the runs of planes of one bound among `count` planes of
    `bounds` (one bound for all, or one each)."""
    each = np.broadcast_to(np.asarray(bounds, dtype=np.int64), (count,))
    start = 0
    for stop in range(1, count + 1):
        if stop == count or each[stop] != each[start]:
            yield start, stop, int(each[start])
            start = stop


class AlphaCoder:
    """Codes the alpha planes of one file, image after image, learning as it goes.

    An encoder (no `payload`) collects the stream (`encode`, then `finish`); a decoder
    is made over the stream (`payload`) and gives back the planes in the same order
    (`decode`). Pricing (`costs`) runs the same model without writing anything. Every
    call names the bound of its planes, one for all or one each."""

    def __init__(self, payload: bytes | None = None, per_image: bool = False):
        """`per_image`: the planes' bounds differ (and are coded, `encode_bounds`), so
        what the coder learns at each bound is kept apart from the others: the same
        neighbours mean other levels, and a level's bits other values, at another bound."""
        self.per_image = per_image
        self.counters = np.full(CONTEXTS << TABLE_BITS, 1 << 31, dtype=np.uint32)
        banks = 1 + len(BOUNDS) if per_image else 1
        self.weights = np.full(banks * WEIGHT_SETS * INPUTS, (1 << 16) * 3 // 10, dtype=np.int64)
        self.bound_counters = np.full(1 << BOUND_BITS, 1 << 31, dtype=np.uint32)
        self.scalars = np.zeros(NSCALARS, dtype=np.int64)
        self.decoding = payload is not None
        self.payload = np.frombuffer(payload, np.uint8).copy() if payload is not None else np.zeros(1 << 12, np.uint8)
        arith.start(self.scalars[X1 : IO + 1], self.payload, self.decoding)

    def encode(self, alpha: np.ndarray, guide: np.ndarray, bounds: int | np.ndarray) -> np.ndarray:
        """Append planes (n, H, W) of alpha with their network guesses; returns what each
        plane cost (ideal code length, bits). `rounded` gives the values decoded."""
        return self._run(alpha, guide, bounds, write=True)

    def costs(self, alpha: np.ndarray, guide: np.ndarray, bounds: int | np.ndarray) -> np.ndarray:
        """What each plane would cost, learning as `encode` would, without writing."""
        return self._run(alpha, guide, bounds, write=False)

    def decode(self, guide: np.ndarray, bounds: int | np.ndarray) -> np.ndarray:
        """The next planes, shaped like their guides (n, H, W)."""
        if not self.decoding:
            raise ValueError("this alpha coder encodes")
        alpha = np.zeros(guide.shape, dtype=np.uint8)
        for start, stop, bound in _runs(bounds, len(guide)):
            self._code(alpha[start:stop], guide[start:stop], bound, self.payload, np.zeros(stop - start))
        self._check_end()
        return alpha

    def encode_bounds(self, bounds: np.ndarray, write: bool = True) -> np.ndarray:
        """Append each plane's bound (one of BOUNDS), ahead of planes whose bounds
        differ; returns what each cost in bits. Priced only, unless `write`."""
        if self.decoding:
            raise ValueError("this alpha coder decodes")
        indices = np.array([BOUNDS.index(int(b)) for b in bounds], dtype=np.int64)
        bits = np.zeros(len(indices))
        if write:
            self._reserve(len(indices) * BOUND_BITS * 2 + 8)
        _code_bounds(False, indices, self.payload if write else np.zeros(0, np.uint8), self.bound_counters,
                     self.scalars, bits)
        return bits

    def decode_bounds(self, count: int) -> np.ndarray:
        """The bounds of the next `count` planes, as `encode_bounds` wrote them."""
        if not self.decoding:
            raise ValueError("this alpha coder encodes")
        indices = np.zeros(count, dtype=np.int64)
        _code_bounds(True, indices, self.payload, self.bound_counters, self.scalars, np.zeros(count))
        self._check_end()
        if (indices >= len(BOUNDS)).any():
            raise FormatError("corrupt image file (an alpha bound out of range)")
        return np.asarray(BOUNDS, dtype=np.int64)[indices]

    def finish(self) -> bytes:
        """The encoded stream, once every plane is in."""
        self._reserve(8)
        return arith.finish(self.scalars[X1 : IO + 1], self.payload)

    def _check_end(self) -> None:
        if self.scalars[IO] > len(self.payload) + 4:
            raise FormatError("corrupt image file (the alpha stream ends early)")

    def _run(self, alpha: np.ndarray, guide: np.ndarray, bounds: int | np.ndarray, write: bool) -> np.ndarray:
        if self.decoding:
            raise ValueError("this alpha coder decodes")
        bits = np.zeros(len(alpha))
        planes = alpha.copy()  # the kernel rounds it to the levels in place: the neighbours a decoder sees
        for start, stop, bound in _runs(bounds, len(alpha)):
            run, hints, spent = planes[start:stop], guide[start:stop], bits[start:stop]
            if not write:
                self._code(run, hints, bound, np.zeros(0, np.uint8), spent)
                continue
            row = 0
            while row < run.shape[0] * run.shape[1]:  # in runs of rows, the buffer grown between them
                self._reserve(run.shape[2] * PIXEL_BYTES * 64)
                row = self._code(run, hints, bound, self.payload, spent, row)
        return bits

    def _reserve(self, size: int) -> None:
        """Grow the encoder's buffer so at least `size` bytes follow its position."""
        need = int(self.scalars[IO]) + size
        if need > len(self.payload):
            grown = np.zeros(max(need, 2 * len(self.payload)), np.uint8)
            grown[: len(self.payload)] = self.payload
            self.payload = grown

    def _code(self, alpha: np.ndarray, guide: np.ndarray, bound: int, payload: np.ndarray, bits: np.ndarray,
              row: int = 0) -> int:
        bank = 1 + BOUNDS.index(bound) if self.per_image else 0
        return _code(self.decoding, alpha, np.ascontiguousarray(guide), row, payload, *_tables(bound), bank,
                     self.counters, self.weights, self.scalars, bits)


@njit(cache=True, nogil=True)
def _code_bounds(decoding, indices, payload, counters, scalars, bits) -> None:
    """Code (or price, with an empty payload; or decode into `indices`) each plane's
    bound index, BOUND_BITS binary decisions from the most significant, each predicted
    by the counter of its node in the tree of indices."""
    pricing = not decoding and len(payload) == 0
    x1, x2, x, io = scalars[X1], scalars[X2], scalars[X], scalars[IO]
    for i in range(len(indices)):
        node = 1
        for step in range(BOUND_BITS):
            bit = 0 if decoding else (indices[i] >> (BOUND_BITS - 1 - step)) & 1
            p = min(max(np.int64(counters[node]) >> 20, 1), 4095)
            if not pricing:
                bit, x1, x2, x, io = coder_step(decoding, bit, p, x1, x2, x, io, payload)
            if not decoding:
                bits[i] += COST[p] if bit else COST[4096 - p]
            train_counter(counters, node, bit, COUNTER_LIMIT)
            node = node * 2 + bit
        if decoding:
            indices[i] = node - (1 << BOUND_BITS)
    scalars[X1], scalars[X2], scalars[X], scalars[IO] = x1, x2, x, io


@njit(cache=True, nogil=True)
def _code(decoding, alpha, guide, row, payload, levels, nearest, level_bits, bank, counters, weights, scalars,
          bits) -> int:
    """Code the planes from flat row `row` on: encode alpha (rounded to `levels` in
    place) into `payload`, price it (an empty payload), or decode into alpha. The
    encoder stops at the first row that might not fit its payload and returns that
    row; otherwise the number of rows. `bank` (0 in a file of one bound) keeps a
    bound's counters (its hashes seeded by it) and mixer weights apart from other
    bounds'. One function for every side, so the decoder cannot drift from the encoder."""
    n, h, w = alpha.shape
    seed = hash32(bank, CONTEXTS + 1) if bank else 0
    mask = (1 << TABLE_BITS) - 1
    pricing = not decoding and len(payload) == 0
    slots = np.zeros(CONTEXTS, dtype=np.int64)
    hashes = np.zeros(CONTEXTS, dtype=np.int64)
    inputs = np.zeros(INPUTS, dtype=np.int64)
    inputs[CONTEXTS] = BIAS
    x1, x2, x, io = scalars[X1], scalars[X2], scalars[X], scalars[IO]
    flat = row
    while flat < n * h:
        if not decoding and not pricing and io + w * PIXEL_BYTES > len(payload):
            break
        i, y = flat // h, flat % h
        for xx in range(w):
            west = np.int64(alpha[i, y, xx - 1]) if xx > 0 else 0
            north = np.int64(alpha[i, y - 1, xx]) if y > 0 else 0
            nw = np.int64(alpha[i, y - 1, xx - 1]) if xx > 0 and y > 0 else 0
            ne = np.int64(alpha[i, y - 1, xx + 1]) if y > 0 and xx < w - 1 else 0
            ww = np.int64(alpha[i, y, xx - 2]) if xx > 1 else 0
            nn = np.int64(alpha[i, y - 2, xx]) if y > 1 else 0
            g = np.int64(guide[i, y, xx])
            ge = np.int64(guide[i, y, xx + 1]) if xx < w - 1 else g
            gs = np.int64(guide[i, y + 1, xx]) if y < h - 1 else g
            high, low = max(west, north), min(west, north)
            pred = low if nw >= high else (high if nw <= low else west + north - nw)
            grad = abs(west - nw) + abs(north - nw) + abs(ne - north)
            gclass = 0 if grad == 0 else (1 if grad < 8 else (2 if grad < 32 else (3 if grad < 128 else 4)))
            hashes[0] = hash32(gclass, 1)
            hashes[1] = hash32(west << 8 | north, 2)
            hashes[2] = hash32(west << 24 | north << 16 | nw << 8 | ne, 3)
            hashes[3] = hash32((pred << 8 | g >> 2) << 4 | gclass, 4)
            hashes[4] = hash32(g << 17 | (ge >> 2) << 11 | (gs >> 2) << 5 | west >> 3, 5)
            hashes[5] = hash32(north << 19 | nn << 11 | (ne >> 2) << 5 | west >> 3, 6)
            hashes[6] = hash32(west << 13 | ww << 5 | north >> 3, 7)
            guess = nearest[pred]
            level = 0 if decoding else nearest[alpha[i, y, xx]]
            # Decision 0: is the level the predicted one? Then, if not, its bits.
            node, c0 = 0, 1
            for step in range(level_bits + 1):
                bit = (1 if level == guess else 0) if step == 0 else (level >> (level_bits - step)) & 1
                for k in range(CONTEXTS):
                    slots[k] = (k << TABLE_BITS) | (hash32(hashes[k] ^ seed, node) & mask)
                    inputs[k] = STRETCH[counters[slots[k]] >> 20]
                wset = ((bank * 256 + node) * GRADIENT_CLASSES + gclass) * INPUTS
                dot = 0
                for k in range(INPUTS):
                    dot += inputs[k] * weights[wset + k]
                p = squash(dot >> 16, SQUASH)
                if not pricing:
                    bit, x1, x2, x, io = coder_step(decoding, bit, p, x1, x2, x, io, payload)
                if not decoding:
                    bits[i] += COST[p] if bit else COST[4096 - p]
                for k in range(CONTEXTS):
                    train_counter(counters, slots[k], bit, COUNTER_LIMIT)
                err = ((bit << 12) - p) * MIXER_RATE
                for k in range(INPUTS):
                    weights[wset + k] += (inputs[k] * err + 2048) >> 12
                if step == 0:
                    if bit:
                        level = guess
                        break
                    if decoding:
                        level = 0
                else:
                    c0 = c0 * 2 + bit
                    if decoding:
                        level = level * 2 + bit
                node = c0
            if decoding and level >= len(levels):
                level = len(levels) - 1  # only a corrupt stream gets here; its checksum was forged
            alpha[i, y, xx] = levels[level]
        flat += 1
    scalars[X1], scalars[X2], scalars[X], scalars[IO] = x1, x2, x, io
    return flat
