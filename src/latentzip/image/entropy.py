"""Quantization and the learned factorized prior, and its frozen integer form.

Training sees a differentiable density: each latent channel has its own monotone
cumulative function, a tiny per-channel network with positive weights (Ballé et al.
2018, "Variational image compression with a scale hyperprior", appendix 6.1). The
probability of an integer value q is c(q + 1/2) - c(q - 1/2).

Coding sees only integers: `freeze()` turns every channel into a table of counts that
sum to 2**PRECISION over the values [offset, offset + length), plus one escape symbol
for anything outside. Those tables are saved in the model file, so the bitstream parses
the same way on every machine, whatever its floating-point unit does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import constriction
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import FormatError

PRECISION = 16
TOTAL = 1 << PRECISION
ESCAPE_RANGE = 1 << 16  # escaped values are coded uniformly over [-2**15, 2**15)
LIKELIHOOD_FLOOR = 1e-9


def quantize(y: torch.Tensor, mode: str) -> torch.Tensor:
    """'noise' adds U(-1/2, 1/2) (a differentiable proxy of rounding for the rate);
    'ste' rounds with a straight-through gradient (what the decoder will really see);
    'round' rounds (coding); 'none' leaves y as it is (a smooth relaxation that
    encoders minimise to fit latents to one image)."""
    if mode == "none":
        return y
    if mode == "noise":
        return y + torch.empty_like(y).uniform_(-0.5, 0.5)
    if mode == "ste":
        return y + (torch.round(y) - y).detach()
    if mode == "round":
        return torch.round(y)
    raise ValueError(f"unknown quantization mode {mode!r}")


class FactorizedPrior(nn.Module):
    """One learned univariate density per channel; latents are (N, channels, ...)."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = float(np.log(np.expm1(1.0 / scale / dims[i + 1])))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    @torch.no_grad()
    def start(self, scales: torch.Tensor) -> None:
        """Start channel c as a logistic density centred on zero with scale scales[c]:
        with equal slopes per layer and no offsets, the logit of the cumulative is x /
        scale. A density that starts near its data learns in few steps, where Ballé's
        one initial scale for every channel leaves a latent that is nearly always zero
        costing bits for thousands of steps."""
        layers = len(self.matrices)
        for i, matrix in enumerate(self.matrices):
            outputs = matrix.shape[1]
            slope = 1.0 / (scales.double() ** (1.0 / layers) * outputs)
            matrix.copy_(torch.log(torch.expm1(slope)).view(-1, 1, 1).expand_as(matrix))
            self.biases[i].zero_()
        for factor in self.factors:
            factor.zero_()

    def logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of the cumulative at x, with x shaped (channels, 1, points), computed in
        x's dtype (float32 while training, float64 when freezing the tables)."""
        for i, matrix in enumerate(self.matrices):
            x = torch.matmul(F.softplus(matrix.to(x.dtype)), x) + self.biases[i].to(x.dtype)
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i].to(x.dtype)) * torch.tanh(x)
        return x

    def likelihood(self, q: torch.Tensor) -> torch.Tensor:
        """P(q) for (noisy or rounded) latents q of shape (N, channels, ...)."""
        shape = q.shape
        flat = q.transpose(0, 1).reshape(self.channels, 1, -1)
        lower = self.logits_cdf(flat - 0.5)
        upper = self.logits_cdf(flat + 0.5)
        # Subtract in the tail where both sigmoids are far from 1, for precision.
        sign = torch.where(lower + upper > 0, -1.0, 1.0).to(lower.dtype).detach()  # never 0: exactly symmetric cases too
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        p = p.clamp_min(LIKELIHOOD_FLOOR)
        moved = (shape[1], shape[0], *shape[2:])
        return p.reshape(moved).transpose(0, 1)

    @torch.no_grad()
    def freeze(self, tail_mass: float = 1e-7, max_radius: int = 4096) -> "CodingTables":
        """Integer tables: per channel, the likely integer values and an escape."""
        radius = 16
        while True:
            # CDF at every half-integer from -radius - 1/2 to radius + 1/2, in float64.
            edges = torch.arange(-radius, radius + 2, dtype=torch.float64) - 0.5
            cdf = torch.sigmoid(self.logits_cdf(edges.expand(self.channels, 1, -1))[:, 0, :])
            below, above = cdf[:, 0], 1.0 - cdf[:, -1]
            if (below.max() < tail_mass and above.max() < tail_mass) or radius >= max_radius:
                break
            radius *= 2
        pmf = (cdf[:, 1:] - cdf[:, :-1]).numpy()
        return CodingTables.from_pmf(pmf, -radius, tail_mass)


@dataclass
class CodingTables:
    """Frozen prior: integer counts per channel, summing to TOTAL with the escape last.

    counts[c, :lengths[c]] cover values offsets[c] ... offsets[c] + lengths[c] - 1;
    counts[c, lengths[c]] is the escape; the rest of the row is zero padding.
    """

    counts: np.ndarray  # int32 (channels, width)
    offsets: np.ndarray  # int32 (channels,)
    lengths: np.ndarray  # int32 (channels,)

    @classmethod
    def from_pmf(cls, pmf: np.ndarray, first_value: int, tail_mass: float) -> "CodingTables":
        """Trim each channel's pmf (over first_value, first_value+1, ...) to where its
        mass lies and quantize it, escape included, to integer counts."""
        rows, offsets, lengths = [], [], []
        for p in pmf:
            cumulative = np.cumsum(p)
            lo = int(np.searchsorted(cumulative, tail_mass / 2))
            hi = int(np.searchsorted(cumulative, cumulative[-1] - tail_mass / 2))
            hi = min(max(hi, lo), len(p) - 1)
            kept = np.clip(p[lo : hi + 1], 0.0, None)
            escape = max(1.0 - kept.sum(), 0.0)
            rows.append(_to_counts(np.append(kept, escape)))
            offsets.append(first_value + lo)
            lengths.append(hi - lo + 1)
        width = max(len(r) for r in rows)
        counts = np.zeros((len(rows), width), dtype=np.int32)
        for c, row in enumerate(rows):
            counts[c, : len(row)] = row
        return cls(counts, np.asarray(offsets, np.int32), np.asarray(lengths, np.int32))

    @classmethod
    def empty(cls) -> "CodingTables":
        return cls(np.zeros((0, 2), np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32))

    @classmethod
    def stored(cls, tensors: dict[str, np.ndarray], prefix: str, channels: int) -> "CodingTables":
        """The tables a model file stores under `prefix`; ValueError (KeyError) if damaged."""
        tables = cls(*(np.asarray(tensors[prefix + part]).astype(np.int32) for part in ("counts", "offsets", "lengths")))
        tables.check(channels)
        return tables

    def to_store(self, prefix: str) -> dict[str, np.ndarray]:
        return {prefix + "counts": self.counts, prefix + "offsets": self.offsets, prefix + "lengths": self.lengths}

    def check(self, channels: int) -> None:
        """Raise ValueError unless these are `channels` valid tables (a damaged model file)."""
        if self.counts.ndim != 2 or self.channels != channels or self.lengths.shape != (channels,) or len(self.counts) != channels:
            raise ValueError("coding tables do not match the network")
        if np.abs(self.offsets.astype(np.int64)).max(initial=0) > 1 << 24:
            raise ValueError("coding table offsets out of range")
        for c in range(channels):
            n = int(self.lengths[c])
            row = self.counts[c]
            if not 0 < n < row.shape[0] or row[: n + 1].min() < 1 or int(row[: n + 1].astype(np.int64).sum()) != TOTAL:
                raise ValueError(f"coding table {c} is invalid")

    @property
    def channels(self) -> int:
        return len(self.offsets)

    def models(self) -> list[constriction.stream.model.Categorical]:
        """One range-coder model per channel. The float64 probabilities are exact
        (counts / 2**16), and constriction's quantization of them is integer-exact
        on every machine."""
        return [
            constriction.stream.model.Categorical(
                self.counts[c, : self.lengths[c] + 1].astype(np.float64) / TOTAL, perfect=False
            )
            for c in range(self.channels)
        ]

    def symbols(self, values: np.ndarray, channel: int) -> tuple[np.ndarray, np.ndarray]:
        """Table indices for integer `values`, and the values that need an escape."""
        index = values.astype(np.int64) - int(self.offsets[channel])
        outside = (index < 0) | (index >= self.lengths[channel])
        index[outside] = self.lengths[channel]
        return index.astype(np.int32), values[outside]

    def costs(self, values: np.ndarray, channel: int) -> np.ndarray:
        """Ideal cost in bits of coding each integer of `values` in `channel` with these
        tables: its symbol, plus the uniform escape code for a value outside the table."""
        index, _ = self.symbols(values, channel)
        cost = -np.log2(self.counts[channel, index].astype(np.float64) / TOTAL)
        return cost + np.where(index == self.lengths[channel], np.log2(ESCAPE_RANGE), 0.0)


def write_channels(encoder: constriction.stream.queue.RangeEncoder, tables: CodingTables, models: list, values: list[np.ndarray]) -> None:
    """Range-code `values[c]` (integer arrays) with channel c's table, channels in order,
    then the escaped values."""
    escaped = []
    for c, v in enumerate(values):
        index, out = tables.symbols(v, c)
        if len(index):
            encoder.encode(index, models[c])
        escaped.append(out)
    extra = np.concatenate(escaped) if escaped else np.zeros(0, np.int64)
    if len(extra):
        shifted = np.clip(extra, -ESCAPE_RANGE // 2, ESCAPE_RANGE // 2 - 1) + ESCAPE_RANGE // 2
        encoder.encode(shifted.astype(np.int32), constriction.stream.model.Uniform(ESCAPE_RANGE))


def read_channels(decoder: Decoder, tables: CodingTables, models: list, sizes: list[int]) -> list[np.ndarray]:
    """Inverse of write_channels: `sizes[c]` values of channel c, as int64 arrays."""
    indices = [decoder.decode(models[c], n) if n else np.zeros(0, np.int32) for c, n in enumerate(sizes)]
    values, escapes = [], []
    for c, index in enumerate(indices):
        v = index.astype(np.int64) + int(tables.offsets[c])
        escapes.append(np.flatnonzero(index == tables.lengths[c]))
        values.append(v)
    total = sum(len(e) for e in escapes)
    if total:
        extra = decoder.decode(constriction.stream.model.Uniform(ESCAPE_RANGE), total).astype(np.int64)
        extra -= ESCAPE_RANGE // 2
        start = 0
        for v, e in zip(values, escapes):
            v[e] = extra[start : start + len(e)]
            start += len(e)
    return values


def finish(encoder: constriction.stream.queue.RangeEncoder) -> bytes:
    """The encoder's stream as bytes, trailing zero bytes dropped (`reader` restores them)."""
    return encoder.get_compressed().astype("<u4").tobytes().rstrip(b"\0")


class Decoder:
    """A range decoder over a file's payload whose every failure is a FormatError.

    constriction refuses a bitstream that no encoder could have made with an
    AssertionError; a file can hold one with a valid checksum (crafted, or written by a
    broken encoder), and its user should hear that the file is corrupt, not see a trace.
    """

    def __init__(self, data: bytes) -> None:
        padded = data + b"\0" * (-len(data) % 4)
        self._coder = constriction.stream.queue.RangeDecoder(np.frombuffer(padded, dtype="<u4").astype(np.uint32))

    def decode(self, model: Any, amount: int) -> np.ndarray:
        """`amount` symbols of `model`, as constriction's decode gives them."""
        try:
            return self._coder.decode(model, amount)
        except AssertionError:
            raise FormatError("corrupt image file (its payload cannot be decoded)") from None


def reader(data: bytes) -> Decoder:
    """The decoder of a payload that `finish` wrote."""
    return Decoder(data)


def _to_counts(p: np.ndarray) -> np.ndarray:
    """Quantize probabilities to positive integers summing exactly to TOTAL."""
    p = p / p.sum()
    counts = np.maximum(1, np.round(p * TOTAL).astype(np.int64))
    excess = int(counts.sum()) - TOTAL
    # Take the rounding error from (or give it to) the largest entries, never below 1.
    order = np.argsort(-counts)
    i = 0
    while excess != 0:
        j = order[i % len(order)]
        step = 1 if excess < 0 else -1
        if counts[j] + step >= 1:
            counts[j] += step
            excess += step
        i += 1
    return counts.astype(np.int32)
