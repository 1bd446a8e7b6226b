"""The refinement layer: an optional second layer that bounds every pixel's error.

An autoencoder's quality saturates: past ~26 dB on Fashion-MNIST more latents buy
little, because the network never learned the fine detail. So instead of ever larger
models, latentzip codes what the autoencoder left over. With a maximum error d, the
residual r = x - x_base of every pixel is quantized near-losslessly,

    q = sign(r) * floor((|r| + d) / (2d + 1)),      x_hat = clip(x_base + q (2d + 1), 0, 255),

so that |x - x_hat| <= d for every pixel (clipping only moves a value towards the
truth); d = 0 is lossless. One model then covers any quality, from its own rate up.

Which coding table a residual uses is chosen from a *guide*, an integer image computed
from the integer latents alone, never from the float network output, so the parse of a
file cannot depend on a machine's floating-point arithmetic:

- dense models: the synthesis's linear path in exact integer arithmetic (weights scaled
  to integers; integer-valued float64 products and sums below 2**53 are exact, so
  any BLAS gives the same result);
- convolutional models: the latent activity (sum of |q| over channels) of the cell
  that holds the pixel.

The guide's value and local gradient, bucketed at quantiles of training guides, make
the context. Per context the model stores a histogram of raw residuals r (-255..255)
on training images; the coding table for any d is derived from it by integer
arithmetic alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import constriction
import numpy as np

from .entropy import TOTAL
from .transforms import NetConfig

LEVELS = 511  # residual values -255 .. 255
MAX_ERROR = 127
GUIDE_SHIFT = 12  # fixed-point bits of the integer linear path
VALUE_BUCKETS = 8
GRADIENT_BUCKETS = 8
FIT_IMAGES = 5_000
FIT_VALUES = 1 << 27  # pixel values fitted at most: keeps every count within int32


@dataclass
class RefineTables:
    """What the refinement layer stores in a model file (all integers)."""

    value_edges: np.ndarray  # int32, ascending: guide value bucket boundaries
    gradient_edges: np.ndarray  # int32, ascending: guide gradient bucket boundaries
    histogram: np.ndarray  # int64 (contexts, LEVELS): residual counts per context (stored as int32)
    _coders: dict[int, list] = field(default_factory=dict, repr=False, compare=False)

    @property
    def contexts(self) -> int:
        return (len(self.value_edges) + 1) * (len(self.gradient_edges) + 1)

    def context(self, guide: np.ndarray) -> np.ndarray:
        """Context index of every pixel of guides shaped (N, H, W, C)."""
        value = np.searchsorted(self.value_edges, guide, side="right")
        gradient = np.searchsorted(self.gradient_edges, _gradient(guide), side="right")
        return value * (len(self.gradient_edges) + 1) + gradient

    def check(self) -> None:
        """Raise ValueError unless the tables are usable (a damaged model file)."""
        if self.histogram.ndim != 2 or self.histogram.shape != (self.contexts, LEVELS) or self.histogram.min() < 0:
            raise ValueError("refinement tables have the wrong shape")
        for edges in (self.value_edges, self.gradient_edges):
            if edges.ndim != 1 or (len(edges) > 1 and np.any(np.diff(edges) <= 0)):
                raise ValueError("refinement bucket edges are not ascending")

    def coders(self, max_error: int) -> list[constriction.stream.model.Categorical]:
        """One range-coder model per context for symbols q + Q, Q = (255 + d) // (2d + 1)."""
        if max_error not in self._coders:
            self._coders[max_error] = [
                constriction.stream.model.Categorical(row.astype(np.float64) / TOTAL, perfect=False)
                for row in _counts(self.histogram, max_error)
            ]
        return self._coders[max_error]


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


def guide(cfg: NetConfig, weights: tuple[np.ndarray, np.ndarray] | None, latents: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Integer guide images (N, H, W, C) for latents of one shape (see the module doc).

    `weights` is the dense synthesis's linear path (weight, bias) in float32; None for
    convolutional models."""
    n = len(latents)
    h, w = size
    if cfg.dense:
        weight, bias = weights  # type: ignore[misc]
        scale = 255.0 * (1 << GUIDE_SHIFT)
        w_int = np.round(weight.astype(np.float64) * scale)
        b_int = np.round(bias.astype(np.float64) * scale)
        acc = latents.astype(np.float64) @ w_int.T + b_int  # exact: integers far below 2**53
        pixels = np.clip((acc.astype(np.int64) + (1 << (GUIDE_SHIFT - 1))) >> GUIDE_SHIFT, 0, 255)
        return pixels.reshape(n, cfg.channels, h, w).transpose(0, 2, 3, 1)
    activity = np.abs(latents).sum(axis=1)  # (N, h', w')
    up = activity.repeat(cfg.stride, axis=1).repeat(cfg.stride, axis=2)[:, :h, :w]
    return np.repeat(up[..., None], cfg.channels, axis=3)


def fit(groups: list[tuple[np.ndarray, np.ndarray]]) -> RefineTables:
    """Tables from training (guides, residuals) pairs, each (N, H, W, C) integers."""
    value_edges = _edges(np.concatenate([g.ravel() for g, _ in groups]), VALUE_BUCKETS)
    gradient_edges = _edges(np.concatenate([_gradient(g).ravel() for g, _ in groups]), GRADIENT_BUCKETS)
    contexts = (len(value_edges) + 1) * (len(gradient_edges) + 1)
    tables = RefineTables(value_edges, gradient_edges, np.zeros((contexts, LEVELS), np.int64))
    for guides, residuals in groups:
        np.add.at(tables.histogram, (tables.context(guides).ravel(), residuals.ravel().astype(np.int64) + 255), 1)
    return tables


def encode(encoder: constriction.stream.queue.RangeEncoder, tables: RefineTables, max_error: int, guides: np.ndarray, q: np.ndarray) -> None:
    """Append the residual symbols of one group of images, context by context."""
    ctx = tables.context(guides).ravel()
    symbols = (q.ravel() + radius(max_error)).astype(np.int32)
    coders = tables.coders(max_error)
    order = np.argsort(ctx, kind="stable")
    bounds = np.searchsorted(ctx[order], np.arange(tables.contexts + 1))
    for c in range(tables.contexts):
        if bounds[c + 1] > bounds[c]:
            encoder.encode(symbols[order[bounds[c] : bounds[c + 1]]], coders[c])


def decode(decoder: constriction.stream.queue.RangeDecoder, tables: RefineTables, max_error: int, guides: np.ndarray) -> np.ndarray:
    """Inverse of `encode`: the residual symbols q, shaped like `guides`."""
    ctx = tables.context(guides).ravel()
    coders = tables.coders(max_error)
    order = np.argsort(ctx, kind="stable")
    bounds = np.searchsorted(ctx[order], np.arange(tables.contexts + 1))
    symbols = np.zeros(ctx.size, np.int64)
    for c in range(tables.contexts):
        if bounds[c + 1] > bounds[c]:
            symbols[order[bounds[c] : bounds[c + 1]]] = decoder.decode(coders[c], int(bounds[c + 1] - bounds[c]))
    return (symbols - radius(max_error)).reshape(guides.shape)


def costs(tables: RefineTables, max_error: int, guides: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Bits each image's residual costs under the tables (ideal code length)."""
    counts = _counts(tables.histogram, max_error)
    ctx = tables.context(guides)
    bits = -np.log2(counts[ctx, q + radius(max_error)].astype(np.float64) / TOTAL)
    return bits.reshape(len(q), -1).sum(1)


# --- internals ---------------------------------------------------------------------------


def _gradient(guide: np.ndarray) -> np.ndarray:
    """|vertical| + |horizontal| central difference of (N, H, W, C) guides, edges replicated."""
    g = np.pad(guide.astype(np.int64), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    return np.abs(g[:, 2:, 1:-1] - g[:, :-2, 1:-1]) + np.abs(g[:, 1:-1, 2:] - g[:, 1:-1, :-2])


def _edges(values: np.ndarray, buckets: int) -> np.ndarray:
    """Distinct integer boundaries at the quantiles of `values`, for at most `buckets` buckets."""
    cuts = np.quantile(values.ravel(), np.arange(1, buckets) / buckets, method="lower")
    return np.unique(cuts.astype(np.int64) + 1).astype(np.int32)


def _counts(histogram: np.ndarray, max_error: int) -> np.ndarray:
    """Integer coding tables (contexts, 2Q + 1), rows summing to TOTAL, from residual counts.

    Integer arithmetic only: every symbol gets at least 1, the rest of TOTAL is shared in
    proportion to (count + 1) by floor division, and what floors leave goes to the
    largest entries, earliest first."""
    q = quantize(np.arange(-255, 256), max_error) + radius(max_error)
    width = 2 * radius(max_error) + 1
    grouped = np.zeros((len(histogram), width), np.int64)
    for level in range(LEVELS):
        grouped[:, q[level]] += histogram[:, level]
    weights = grouped + 1
    spare = TOTAL - width
    counts = 1 + weights * spare // weights.sum(1, keepdims=True)
    short = TOTAL - counts.sum(1)
    for row, missing in enumerate(short):
        top = np.argsort(-weights[row], kind="stable")[:missing]
        counts[row, top] += 1
    return counts
