"""The refinement layer: an optional second layer that bounds every pixel's error.

An autoencoder's quality saturates: past ~26 dB on Fashion-MNIST more latents buy
little, because the network never learned the fine detail. So instead of ever larger
models, latentzip codes what the autoencoder left over. With a maximum error d, the
residual r = x - x_base of every pixel is quantized near-losslessly,

    q = sign(r) * floor((|r| + d) / (2d + 1)),      x_hat = clip(x_base + q (2d + 1), 0, 255),

so that |x - x_hat| <= d for every pixel (clipping only moves a value towards the
truth); d = 0 is lossless. One model then covers any quality, from its own rate up.

Which coding table a residual uses is chosen from a *guide*, an integer image the
decoder knows exactly before it reads the residuals, so the parse of a file cannot
depend on a machine's floating-point arithmetic:

the base reconstruction itself, which every model computes in exact integer
arithmetic (see `fixed`).

The guide's value and local gradient, bucketed at quantiles of training guides, make
the context. Per context the model stores a histogram of raw residuals r (-255..255)
on training images; the coding table for any d is derived from it by integer
arithmetic alone. Coding then sharpens those tables in two ways (see `Walk`): pixels
whose neighbours are already decoded also use what those neighbours' residuals say,
and the tables adapt to the file as it is coded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import constriction
import numpy as np

from .entropy import TOTAL, Decoder

LEVELS = 511  # residual values -255 .. 255
MAX_ERROR = 127
VALUE_BUCKETS = 24  # finer value buckets: 4-8% fewer refinement bytes than 8 on Fashion-MNIST
GRADIENT_BUCKETS = 8
FIT_IMAGES = 5_000
NEIGHBOUR_CLASSES = 7  # neighbours all zero, or sign of their sum x (one step, more)
DIRECT = ((-1, 0), (1, 0), (0, -1), (0, 1))
DIAGONAL = ((-1, -1), (-1, 1), (1, -1), (1, 1))
# The passes over each chunk: which known neighbours give context, and where their classes start.
PASSES = ((None, 0), (DIAGONAL, 1), (DIRECT, 1 + NEIGHBOUR_CLASSES))
CLASSES = 1 + 2 * NEIGHBOUR_CLASSES  # contexts per guide context
PRIOR_WEIGHT = 64  # the stored table counts as this many observed symbols
CHUNK = 1024  # images coded between two updates of the tables, at most
SEEN_LIMIT = 1 << 20  # counts of a context are halved past this many symbols
FIT_VALUES = 1 << 27  # pixel values fitted at most: keeps every count within int32


@dataclass
class RefineTables:
    """What the refinement layer stores in a model file (all integers)."""

    value_edges: np.ndarray  # int32, ascending: guide value bucket boundaries
    gradient_edges: np.ndarray  # int32, ascending: guide gradient bucket boundaries
    histogram: np.ndarray  # int64 (contexts, LEVELS): residual counts per context (stored as int32)

    @property
    def contexts(self) -> int:
        return (len(self.value_edges) + 1) * (len(self.gradient_edges) + 1)

    def context(self, guide: np.ndarray) -> np.ndarray:
        """Context index of every pixel of guides shaped (N, H, W, C)."""
        value = _bucket(self.value_edges, guide)
        gradient = _bucket(self.gradient_edges, _gradient(guide))
        return value * (len(self.gradient_edges) + 1) + gradient

    @classmethod
    def from_store(cls, tensors: dict[str, np.ndarray]) -> "RefineTables":
        """The tables a model file stores (KeyError if one is missing; see `check`)."""
        return cls(tensors["value_edges"].astype(np.int32), tensors["gradient_edges"].astype(np.int32),
                   tensors["histogram"].astype(np.int64))

    def to_store(self) -> dict[str, np.ndarray]:
        return {"value_edges": self.value_edges, "gradient_edges": self.gradient_edges,
                "histogram": self.histogram.astype(np.int32)}

    def check(self) -> None:
        """Raise ValueError unless the tables are usable (a damaged model file)."""
        if self.histogram.ndim != 2 or self.histogram.shape != (self.contexts, LEVELS) or self.histogram.min() < 0:
            raise ValueError("refinement tables have the wrong shape")
        for edges in (self.value_edges, self.gradient_edges):
            if edges.ndim != 1 or (len(edges) > 1 and np.any(np.diff(edges) <= 0)):
                raise ValueError("refinement bucket edges are not ascending")


def quantize(residual: np.ndarray, max_error: int) -> np.ndarray:
    step = 2 * max_error + 1
    return np.sign(residual) * ((np.abs(residual) + max_error) // step)


def restore(base: np.ndarray, q: np.ndarray, max_error: int) -> np.ndarray:
    return np.clip(base.astype(np.int64) + q * (2 * max_error + 1), 0, 255).astype(np.uint8)


def radius(max_error: int) -> int:
    """The largest |q| a residual can quantize to."""
    return (255 + max_error) // (2 * max_error + 1)


def check_max_error(max_error: int) -> None:
    if not 0 <= max_error <= MAX_ERROR:
        raise ValueError(f"max error must be between 0 and {MAX_ERROR} grey levels, not {max_error}")


def fit(groups: list[tuple[np.ndarray, np.ndarray]]) -> RefineTables:
    """Tables from training (guides, residuals) pairs, each (N, H, W, C) integers."""
    value_edges = _edges(np.concatenate([g.ravel() for g, _ in groups]), VALUE_BUCKETS)
    gradient_edges = _edges(np.concatenate([_gradient(g).ravel() for g, _ in groups]), GRADIENT_BUCKETS)
    contexts = (len(value_edges) + 1) * (len(gradient_edges) + 1)
    tables = RefineTables(value_edges, gradient_edges, np.zeros((contexts, LEVELS), np.int64))
    for guides, residuals in groups:
        np.add.at(tables.histogram, (tables.context(guides).ravel(), residuals.ravel().astype(np.int64) + 255), 1)
    return tables


class Walk:
    """Codes residual symbols in a fixed order, learning as it goes; one per file.

    Within each group of images the walk takes chunks of 1, 2, 4, ... up to CHUNK images.
    Each chunk is coded in three passes over the 2x2 pixel grid (`PASSES`): first the
    pixels at (even row, even column), whose context is their guide context alone; then
    those at (odd, odd), whose context adds what their four diagonal neighbours (all
    coded by then) say; then the rest, with their four direct neighbours. Within a pass,
    symbols go context by context in increasing number, then in (image, row, column,
    channel) order. After every chunk each context's table becomes its stored prior
    (worth PRIOR_WEIGHT observations) plus the counts seen so far in the file, so a file
    of many images is coded with statistics fitted to itself and a single image with the
    stored ones. All of it is integer arithmetic.
    """

    def __init__(self, tables: RefineTables, max_error: int):
        self.tables = tables
        self.max_error = max_error
        self.offset = radius(max_error)
        prior = _counts(tables.histogram, max_error)
        self.prior = np.repeat(prior, CLASSES, axis=0) * PRIOR_WEIGHT
        self.seen = np.zeros_like(self.prior)
        self.counts = _allocate(self.prior)
        self._models: dict[int, constriction.stream.model.Categorical] = {}

    def encode(self, encoder: constriction.stream.queue.RangeEncoder, guides: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Append the symbols q of one group of images (shaped like `guides`); returns
        what each image's symbols cost (ideal code length, in bits)."""
        return self._run(guides, q=q, encoder=encoder)[1]

    def decode(self, decoder: Decoder, guides: np.ndarray) -> np.ndarray:
        """The symbols q of one group of images, shaped like `guides`."""
        return self._run(guides, decoder=decoder)[0]

    def costs(self, guides: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Bits each image's symbols cost on this walk (ideal code length)."""
        return self._run(guides, q=q)[1]

    def _run(
        self, guides: np.ndarray, q: np.ndarray | None = None,
        encoder: constriction.stream.queue.RangeEncoder | None = None,
        decoder: Decoder | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The walk over one group: decode (with `decoder`) or, with the symbols `q`
        known, encode them (with `encoder`) or just price them. Returns the symbols and
        each image's cost in bits (zero when decoding). The walk learns as it goes, so
        symbols are priced in the same pass that codes them."""
        n = len(guides)
        base = (self.tables.context(guides) * CLASSES).astype(np.int16).reshape(n, -1)
        passes = _pass_layout(*guides.shape[1:])
        out = np.zeros((n, base.shape[1]), np.int16) if q is None else q.reshape(n, -1).astype(np.int16)
        bits = np.zeros(n)
        start, size = 0, 1
        while start < n:
            stop = min(start + size, n)
            block = out[start:stop]
            seen_ctx, seen_sym = [], []
            for (neighbours, first_class), (where, around) in zip(PASSES, passes):
                ctx = base[start:stop][:, where]
                if neighbours is not None:
                    ctx += first_class + _neighbour_class(block, around)
                ctx = ctx.ravel()
                order = np.argsort(ctx, kind="stable")  # a radix sort on int16
                sizes = np.bincount(ctx, minlength=len(self.counts))  # symbols per context
                ends = np.cumsum(sizes)
                # (context, first, end) of each context's run of symbols in `order`
                runs = [(c, int(ends[c] - sizes[c]), int(ends[c])) for c in np.flatnonzero(sizes).tolist()]
                if decoder is not None:
                    ranked = np.empty(len(ctx), np.int32)
                    for c, lo, hi in runs:
                        ranked[lo:hi] = decoder.decode(self._model(c), hi - lo)
                    symbols = np.empty_like(ranked)
                    symbols[order] = ranked
                    block[:, where] = (symbols - self.offset).reshape(stop - start, -1)
                else:
                    symbols = (block[:, where].ravel() + self.offset).astype(np.int32)
                    if encoder is not None:
                        ranked = symbols[order]
                        for c, lo, hi in runs:
                            encoder.encode(ranked[lo:hi], self._model(c))
                    bits[start:stop] += -np.log2(self.counts[ctx, symbols] / TOTAL).reshape(stop - start, -1).sum(1)
                seen_ctx.append(ctx)
                seen_sym.append(symbols)
            self._learn(np.concatenate(seen_ctx), np.concatenate(seen_sym))
            start, size = stop, min(size * 2, CHUNK)
        return out.reshape(guides.shape), bits

    def _model(self, context: int) -> constriction.stream.model.Categorical:
        if context not in self._models:
            self._models[context] = constriction.stream.model.Categorical(
                self.counts[context].astype(np.float64) / TOTAL, perfect=False
            )
        return self._models[context]

    def _learn(self, ctx: np.ndarray, symbols: np.ndarray) -> None:
        contexts, width = self.seen.shape
        self.seen += np.bincount(ctx.astype(np.int64) * width + symbols, minlength=contexts * width).reshape(contexts, width)
        touched = np.flatnonzero(np.bincount(ctx, minlength=contexts))
        full = touched[self.seen[touched].sum(1) > SEEN_LIMIT]
        self.seen[full] = (self.seen[full] + 1) // 2
        self.counts[touched] = _allocate(self.prior[touched] + self.seen[touched] * TOTAL)
        for c in touched.tolist():
            self._models.pop(c, None)


# --- internals ---------------------------------------------------------------------------


def _gradient(guide: np.ndarray) -> np.ndarray:
    """|vertical| + |horizontal| central difference of (N, H, W, C) guides, edges replicated."""
    g = np.pad(guide.astype(np.int32), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    return np.abs(g[:, 2:, 1:-1] - g[:, :-2, 1:-1]) + np.abs(g[:, 1:-1, 2:] - g[:, 1:-1, :-2])


def _bucket(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """np.searchsorted(edges, values, side="right") as int16, by table lookup when the
    values span a small range (guides usually do), which is several times faster."""
    lo, hi = int(values.min(initial=0)), int(values.max(initial=0))
    if hi - lo > 1 << 16:
        return np.searchsorted(edges, values, side="right").astype(np.int16)
    table = np.searchsorted(edges, np.arange(lo, hi + 1), side="right").astype(np.int16)
    return table[values - lo]


def _edges(values: np.ndarray, buckets: int) -> np.ndarray:
    """Distinct integer boundaries at the quantiles of `values`, for at most `buckets` buckets."""
    cuts = np.quantile(values.ravel(), np.arange(1, buckets) / buckets, method="lower")
    return np.unique(cuts.astype(np.int64) + 1).astype(np.int32)


def _counts(histogram: np.ndarray, max_error: int) -> np.ndarray:
    """Integer coding tables (contexts, 2Q + 1), rows summing to TOTAL, from residual counts.

    Residual counts are summed into the symbols they quantize to; each symbol's weight is
    its count + 1 (see `_allocate`)."""
    q = quantize(np.arange(-255, 256), max_error) + radius(max_error)
    width = 2 * radius(max_error) + 1
    grouped = np.zeros((len(histogram), width), np.int64)
    for level in range(LEVELS):
        grouped[:, q[level]] += histogram[:, level]
    return _allocate(grouped + 1)


def _allocate(weights: np.ndarray) -> np.ndarray:
    """Integer tables from non-negative integer weights (rows), each row summing to TOTAL:
    every symbol gets 1, the rest is shared in proportion to the weights by floor
    division, and what the floors leave goes one each to the heaviest symbols (ties:
    lower symbol first)."""
    width = weights.shape[1]
    weights = weights.astype(np.int64)
    total = np.maximum(weights.sum(1, keepdims=True), 1)
    counts = 1 + weights * (TOTAL - width) // total
    missing = TOTAL - counts.sum(1, keepdims=True)
    rank = np.empty_like(weights)  # each symbol's place in its row, heaviest first
    np.put_along_axis(rank, np.argsort(-weights, axis=1, kind="stable"), np.arange(width)[None, :], axis=1)
    return counts + (rank < missing)


@functools.lru_cache(maxsize=64)
def _pass_layout(h: int, w: int, c: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Per pass of `PASSES`, for images of (h, w, c) flattened: the positions it codes
    (pass 0 at (even, even), 1 at (odd, odd), 2 elsewhere) and, for the passes with
    neighbours, the positions of those neighbours (k, positions), h*w*c where outside."""
    y, x = np.arange(h)[:, None] % 2, np.arange(w)[None, :] % 2
    phase = np.repeat(np.where(y == x, y, 2)[..., None], c, axis=2).ravel()
    row, col, chan = np.unravel_index(np.arange(h * w * c), (h, w, c))
    layout: list[tuple[np.ndarray, np.ndarray | None]] = []
    for step, (neighbours, _) in enumerate(PASSES):
        where = np.flatnonzero(phase == step)
        around = None
        if neighbours is not None:
            around = np.empty((len(neighbours), len(where)), np.int64)
            for k, (dy, dx) in enumerate(neighbours):
                ny, nx = row[where] + dy, col[where] + dx
                inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
                around[k] = np.where(inside, (ny * w + nx) * c + chan[where], h * w * c)
        layout.append((where, around))
    return layout


def _neighbour_class(block: np.ndarray, around: np.ndarray) -> np.ndarray:
    """What the known neighbours (positions `around`) of each pixel of the flattened
    (n, pixels) symbols `block` say about it, in NEIGHBOUR_CLASSES classes: all zero, or
    the sign of their sum (residuals of one region share a sign) and whether more than
    one of them is off by one step."""
    near = np.concatenate([block, np.zeros((len(block), 1), block.dtype)], axis=1)[:, around]
    total = near.sum(1, dtype=np.int16)
    size = np.minimum(np.abs(near).sum(1, dtype=np.int16), 2)
    return np.where(size > 0, 1 + (np.sign(total) + 1) * 2 + size - 1, 0).astype(np.int16)
