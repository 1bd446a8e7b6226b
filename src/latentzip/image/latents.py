"""Latent codecs: how a transform's latents become symbols, bits and back.

A latent codec does four things (the protocol, `LatentCodec`):

- `forward(y, quality, mode)`: the latents the synthesis sees and each image's estimated
  bits. "train": quantized with a straight-through gradient, the bits under a
  differentiable density (quantization modelled by uniform noise); "relaxed", for
  fitting latents to one image at encode time: nothing is quantized, the latents pass
  as they are and the rate is the density's mass around them, a smooth function of y;
  "rounded": what coding gives, rounded latents and their bits under the float
  densities (for validation, rate estimates and judging fitted latents; no gradient);
- `quantize(y, quality)`: the integer symbols of a batch of images for coding;
- `side_of(y, quality)`: the side latents `quantize` would code for y, rounded (None
  for a codec without). `forward` and `quantize` take them as `side` to hold them fixed
  while an encoder fits y (objective.py): the side is any the encoder writes, and one
  that moves with every step of the fit judges the step by scales it did not aim at;
- `write(encoder, symbols, quality)` / `read(decoder, n, grid, quality)`: range coding
  with integer tables stored in the model file, so a file parses the same everywhere;
- `bits(symbols, quality)`: each image's exact cost under those tables.

Three implementations: `FactorizedLatents` (one learned density per channel, Ballé et
al. 2017); `HyperpriorLatents` (Ballé et al. 2018): side latents z, coded with a
factorized prior, tell the decoder the scale of every main latent, whose Gaussian table
is then picked by a scale index; and `ContextLatents`, the hyperprior with a mean for
every latent and a checkerboard context, what models are trained with now. The
hyperprior is the factorized codec composed with a scale-table codec; the indices (and
means) come from networks run in exact integer arithmetic (`fixed.FixedNet`), so encoder
and decoder derive the same ones on every machine, thread count and device.

Each carries an optional quality ladder (`Gains`): one model codes at several qualities,
each scaling every latent channel by its own gain before rounding (a finer or coarser
quantizer) and by an inverse gain before synthesis.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import constriction
import numpy as np
import torch
from torch import nn

from . import fixed
from .entropy import CodingTables, Decoder, FactorizedPrior, quantize, read_channels, write_channels

Symbols = dict[str, np.ndarray]  # the integer arrays one batch of images is coded as

SCALE_MIN, SCALE_MAX, SCALES = 0.11, 256.0, 64  # the Gaussian tables' scales, log-spaced
SCALE_TAIL = 1e-6  # probability mass a scale table leaves to its escape symbol
_LOG_LOW = round(math.log(SCALE_MIN) * (1 << fixed.ACT_BITS))  # units of 2**-ACT_BITS
_LOG_STEP = round(math.log(SCALE_MAX / SCALE_MIN) / SCALES * (1 << fixed.ACT_BITS))
START_SCALES = torch.logspace(-2, 3, 41, dtype=torch.float64)  # logistic scales `start_on` chooses from
LATENT_LIMIT = 1 << 15  # |latent| larger than this is clipped: no real image comes near
GAIN_BITS = 16  # inverse gains carry this many bits more than activations
CONTEXT_MULTIPLIER = 2  # context: spatial filters of the decoded anchors per latent channel
# context: latents and means are clamped to +-64, as `fixed.FixedNet` clamps every output
_VALUE_LIMIT = fixed.CONV_LIMIT / (1 << fixed.ACT_BITS)


class Gains(nn.Module):
    """Per quality and channel: the gain applied before rounding, and the inverse gain
    applied before synthesis (learned separately, as in Cui et al. 2021)."""

    def __init__(self, qualities: int, channels: int):
        super().__init__()
        self.log_gain = nn.Parameter(torch.zeros(qualities, channels))
        self.log_inverse = nn.Parameter(torch.zeros(qualities, channels))

    @torch.no_grad()
    def set_steps(self, steps: torch.Tensor) -> None:
        """Start quality q as a uniform quantizer of step steps[q] on every channel."""
        self.log_gain.copy_(-torch.log(steps)[:, None].expand_as(self.log_gain))
        self.log_inverse.copy_(torch.log(steps)[:, None].expand_as(self.log_inverse))

    def gain(self, quality: int, ndim: int) -> torch.Tensor:
        return self.log_gain[quality].exp().view(1, -1, *[1] * (ndim - 2))

    def inverse(self, quality: int, ndim: int) -> torch.Tensor:
        return self.log_inverse[quality].exp().view(1, -1, *[1] * (ndim - 2))

    def freeze(self) -> np.ndarray:
        """The inverse gains as integers in units of 2**-(ACT_BITS + GAIN_BITS), what
        exact decoding multiplies by. They are stored in the model file, so no
        machine's exp() (not correctly rounded everywhere) decides them."""
        exact = torch.floor(self.log_inverse.detach().double().exp() * (1 << (fixed.ACT_BITS + GAIN_BITS)) + 0.5)
        return exact.to(torch.int64).numpy()


class LatentCodec(nn.Module):
    """The protocol every latent codec follows (see the module docstring)."""

    qualities: int

    def forward(self, y: torch.Tensor, quality: int, mode: str = "train",
                side: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def quantize(self, y: torch.Tensor, quality: int, side: torch.Tensor | None = None) -> Symbols:
        raise NotImplementedError

    def side_of(self, y: torch.Tensor, quality: int) -> torch.Tensor | None:
        return None

    def write(self, encoder: constriction.stream.queue.RangeEncoder, symbols: Symbols, quality: int) -> None:
        raise NotImplementedError

    def read(self, decoder: Decoder, n: int, grid: tuple[int, ...], quality: int) -> Symbols:
        raise NotImplementedError

    def bits(self, symbols: Symbols, quality: int) -> np.ndarray:
        raise NotImplementedError

    def freeze(self) -> dict[str, np.ndarray]:
        """Integer tables from the learned densities; returns what the model file stores."""
        raise NotImplementedError

    def start(self, deviations: torch.Tensor) -> None:
        """Start the densities near the data: `deviations[c]` is the standard deviation of
        channel c of the latents before gains (from the linear start of the transform)."""
        raise NotImplementedError

    def thaw(self, tables: dict[str, np.ndarray]) -> None:
        """Take the integer tables a model file stores (raises ValueError if damaged)."""
        raise NotImplementedError

    def dequantize(self, symbols: Symbols, quality: int) -> torch.Tensor:
        """The float latents the synthesis network sees."""
        q = torch.from_numpy(symbols["y"]).float()
        return q if self.gains is None else q * self.gains.inverse(quality, q.ndim)

    def fixed_input(self, symbols: Symbols, quality: int) -> torch.Tensor:
        """The same, as int64 in units of 2**-ACT_BITS, exactly (for `fixed.FixedNet`)."""
        return self._dequantized(symbols["y"], quality)

    def _dequantized(self, q: np.ndarray, quality: int, first: int = 0) -> torch.Tensor:
        """Symbols q of the channels from `first` on (a slice) times their inverse gains,
        as int64 in units of 2**-ACT_BITS, exactly."""
        values = torch.from_numpy(q)
        if self.gains is None:
            return values << fixed.ACT_BITS
        gains = torch.from_numpy(self.inverse_gains[quality][first : first + q.shape[1]])
        scaled = values * gains.view(1, -1, *[1] * (q.ndim - 2))
        return (scaled + (1 << (GAIN_BITS - 1))) >> GAIN_BITS

    def _freeze_gains(self) -> dict[str, np.ndarray]:
        if self.gains is None:
            return {}
        self.inverse_gains = self.gains.freeze()
        return {"inverse_gains": self.inverse_gains}

    def _thaw_gains(self, tables: dict[str, np.ndarray]) -> None:
        if self.gains is not None:
            found = np.asarray(tables["inverse_gains"], np.int64)
            if found.shape != tuple(self.gains.log_gain.shape) or found.min() < 1 or found.max() > 1 << 40:
                raise ValueError("inverse gains are damaged")
            self.inverse_gains = found

    gains: Gains | None
    inverse_gains: np.ndarray  # int64 (qualities, channels), see Gains.freeze


# --- the factorized prior ------------------------------------------------------------------


class FactorizedLatents(LatentCodec):
    """Every channel coded with its own learned density, one set per quality."""

    def __init__(self, channels: int, qualities: int = 1, gains: bool = True):
        super().__init__()
        self.channels = channels
        self.qualities = qualities
        self.gains = Gains(qualities, channels) if gains else None
        # A model of one quality without gains (the dense ones) keeps its single density
        # under the name it always had, so its files keep their fingerprints.
        if self._single:
            self.prior = FactorizedPrior(channels)
        else:
            self.priors = nn.ModuleList(FactorizedPrior(channels) for _ in range(qualities))
        self.tables: list[CodingTables] = []
        self._models: list[list[Any]] = []

    @property
    def _single(self) -> bool:
        return self.qualities == 1 and self.gains is None

    @property
    def _names(self) -> list[str]:
        return [""] if self._single else [f"{q}." for q in range(self.qualities)]

    @torch.no_grad()
    def start(self, deviations: torch.Tensor) -> None:
        """Each quality's density of channel c starts as a logistic of the channel's
        spread there (a logistic of scale s has deviation 1.81 s), at least 0.2."""
        for quality in range(self.qualities):
            gain = self.gains.log_gain[quality].exp() if self.gains is not None else 1.0
            self.density(quality).start((deviations * gain / 1.81).clamp_min(0.2))

    @torch.no_grad()
    def start_on(self, y: torch.Tensor) -> None:
        """Start each quality's density of channel c as the logistic, of the scales
        START_SCALES, that codes the rounded gained latents of the sample `y` (N, C, ...)
        in the fewest bits: a deviation misjudges latents that are nearly always zero
        and heavy tails alike (`start`'s floor costs 0.24 bits a latent that is always
        zero: the photo network's transforms started so took 0.74 bpp at the lowest
        quality on the textures, and 0.04 started this way)."""
        v = y.transpose(0, 1).flatten(1).double()
        for quality in range(self.qualities):
            gain = self.gains.log_gain[quality].exp().double()[:, None] if self.gains is not None else 1.0
            # A logistic is symmetric: q and -q cost the same. Counted per distinct |q|, so
            # memory follows the sample, not the largest latent in it.
            sizes, which = torch.unique(torch.round(v * gain).abs(), return_inverse=True)
            counts = torch.zeros(len(v), len(sizes), dtype=torch.float64).scatter_add_(1, which, torch.ones_like(v))
            # P(q = -k) per scale, on the lower tail where the difference is precise
            k = sizes[:, None]
            p = torch.sigmoid((0.5 - k) / START_SCALES) - torch.sigmoid((-0.5 - k) / START_SCALES)
            costs = counts @ -torch.log2(p.clamp_min(1e-12))
            self.density(quality).start(START_SCALES[costs.argmin(1)].float())

    def density(self, quality: int) -> FactorizedPrior:
        return self.prior if self._single else self.priors[quality]

    def _gained(self, y: torch.Tensor, quality: int) -> torch.Tensor:
        return y if self.gains is None else y * self.gains.gain(quality, y.ndim)

    def forward(self, y: torch.Tensor, quality: int, mode: str = "train",
                side: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        hat, rate = _MODES[mode]
        v = self._gained(y, quality)
        likelihood = self.density(quality).likelihood(quantize(v, rate))
        y_hat = quantize(v, hat)
        if self.gains is not None:
            y_hat = y_hat * self.gains.inverse(quality, y.ndim)
        return y_hat, -torch.log2(likelihood).flatten(1).sum(1)

    @torch.no_grad()
    def quantize(self, y: torch.Tensor, quality: int, side: torch.Tensor | None = None) -> Symbols:
        v = self._gained(y, quality)
        q = torch.round(v)
        return {"y": q.clamp(-LATENT_LIMIT, LATENT_LIMIT).to(torch.int64).numpy()}

    def write(self, encoder: constriction.stream.queue.RangeEncoder, symbols: Symbols, quality: int) -> None:
        q = symbols["y"]
        write_channels(encoder, self.tables[quality], self._models[quality], [q[:, c].ravel() for c in range(q.shape[1])])

    def read(self, decoder: Decoder, n: int, grid: tuple[int, ...], quality: int) -> Symbols:
        tables = self.tables[quality]
        values = read_channels(decoder, tables, self._models[quality], [n * math.prod(grid)] * tables.channels)
        return {"y": np.stack(values).reshape(tables.channels, n, *grid).swapaxes(0, 1)}

    def bits(self, symbols: Symbols, quality: int) -> np.ndarray:
        q = symbols["y"]
        tables = self.tables[quality]
        return sum(tables.costs(q[:, c], c).reshape(len(q), -1).sum(1) for c in range(q.shape[1]))  # type: ignore[return-value]

    @torch.no_grad()
    def freeze(self) -> dict[str, np.ndarray]:
        self._use([self.density(q).freeze() for q in range(self.qualities)])
        return {**self._stored(), **self._freeze_gains()}

    def thaw(self, tables: dict[str, np.ndarray]) -> None:
        self._use([CodingTables.stored(tables, name, self.channels) for name in self._names])
        self._thaw_gains(tables)

    def _use(self, tables: list[CodingTables]) -> None:
        self.tables = tables
        self._models = [t.models() for t in tables]

    def _stored(self) -> dict[str, np.ndarray]:
        return {k: v for name, t in zip(self._names, self.tables) for k, v in t.to_store(name).items()}


# --- the scale hyperprior -------------------------------------------------------------------


def scale_index(log_scale: torch.Tensor) -> torch.Tensor:
    """The table index of log-scales given as int64 in units of 2**-ACT_BITS: integer
    arithmetic only, so every machine picks the same tables."""
    return torch.div(log_scale - _LOG_LOW, _LOG_STEP, rounding_mode="floor").clamp(0, SCALES - 1)


def _ranking(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order that lists the positions of `index` by increasing scale index (stable:
    within an index, in the array's order), and how many there are of each."""
    flat = index.ravel().astype(np.uint8)  # SCALES fits a byte: numpy's stable sort is then a radix sort
    return np.argsort(flat, kind="stable"), np.bincount(flat, minlength=SCALES)


def scale_tables() -> CodingTables:
    """One Gaussian table per scale index, for the scale at the middle of its interval."""
    scales = np.exp((_LOG_LOW + (np.arange(SCALES) + 0.5) * _LOG_STEP) / (1 << fixed.ACT_BITS))
    radius = int(math.ceil(SCALE_MAX * 6))
    edges = np.arange(-radius, radius + 2) - 0.5
    pmf = np.diff(np.array([[0.5 * math.erfc(-e / (s * math.sqrt(2))) for e in edges] for s in scales]), axis=1)
    return CodingTables.from_pmf(pmf, -radius, SCALE_TAIL)


class HyperpriorLatents(LatentCodec):
    """Main latents coded with Gaussian tables whose scales side latents z predict.

    The main latents are coded in `slices` groups of channels (in the transform's order,
    which for a block KLT is decreasing energy), and the scales of each group also see
    the magnitudes of the groups decoded before it (Minnen and Singh 2020): how busy a
    block is in its low frequencies says much about its high ones."""

    def __init__(self, channels: int, side: int, width: int, qualities: int = 1, slices: int = 1,
                 padding: str = "zeros"):
        super().__init__()
        self.qualities = qualities
        self.gains = Gains(qualities, channels)
        self.channels = channels
        self.side = FactorizedLatents(side, qualities, gains=False)  # one density per quality, no gains
        self.hyper_analysis = nn.Sequential(
            nn.Conv2d(channels, width, 1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1, padding_mode=padding), nn.ReLU(),
            nn.Conv2d(width, side, 3, stride=2, padding=1, padding_mode=padding),
        )
        self.hyper_synthesis = nn.Sequential(
            nn.Conv2d(side, 4 * width, 3, padding=1, padding_mode=padding), nn.PixelShuffle(2), nn.ReLU(),
            nn.Conv2d(width, 4 * width, 3, padding=1, padding_mode=padding), nn.PixelShuffle(2), nn.ReLU(),
        )
        self.bounds = [round(channels * k / slices) for k in range(slices + 1)]
        self.heads = nn.ModuleList(self._head(width, k) for k in range(slices))
        self.log_scale_bias = nn.Parameter(torch.zeros(qualities, channels))
        self.tables: CodingTables = CodingTables.empty()
        self._models: list[Any] = []
        self._fixed: list[fixed.FixedNet] = []

    def _size(self, k: int) -> int:
        return self.bounds[k + 1] - self.bounds[k]

    def _head(self, width: int, k: int) -> nn.Sequential:
        """The network that gives slice k's log-scales from the side features and the
        magnitudes of the slices before it."""
        return nn.Sequential(nn.Conv2d(width + self.bounds[k], width, 1), nn.ReLU(), nn.Conv2d(width, self._size(k), 1))

    @torch.no_grad()
    def start(self, deviations: torch.Tensor) -> None:
        """Start as a per-channel Gaussian: the side latents say nothing yet, and each
        quality's scale of channel c is deviations[c] (of the latents before gains)
        times its gain. Training then teaches the side latents what varies locally."""
        for head in self.heads:
            head[-1].weight.zero_()
            head[-1].bias.zero_()
        gains = self.gains.log_gain.exp()
        self.log_scale_bias.copy_(torch.log((deviations[None, :] * gains).clamp_min(SCALE_MIN)))

    def _log_scales(self, z_hat: torch.Tensor, y_hat: torch.Tensor, quality: int) -> torch.Tensor:
        """Log-scales of every main latent from the side latents and, slice by slice,
        the magnitudes of the (dequantized) main latents of the slices before."""
        features = self.hyper_synthesis(z_hat)[..., : y_hat.shape[-2], : y_hat.shape[-1]]
        t = [head(torch.cat([features, y_hat[:, : self.bounds[k]].abs()], dim=1)) for k, head in enumerate(self.heads)]
        return torch.cat(t, dim=1) + self.log_scale_bias[quality].view(1, -1, 1, 1)

    def _side(self, v: torch.Tensor, side: torch.Tensor | None = None) -> torch.Tensor:
        """The side latents to code for gained latents v: `side` where held, else the analysis's."""
        return self.hyper_analysis(v.abs()) if side is None else side

    @torch.no_grad()
    def side_of(self, y: torch.Tensor, quality: int) -> torch.Tensor:
        z = self.side.quantize(self._side(y * self.gains.gain(quality, y.ndim)), quality)["y"]
        return torch.from_numpy(z).to(y.dtype)

    def forward(self, y: torch.Tensor, quality: int, mode: str = "train",
                side: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        hat, rate = _MODES[mode]
        v = y * self.gains.gain(quality, y.ndim)
        z_hat, side_bits = self.side(self._side(v, side), quality, mode)
        y_hat = quantize(v, hat) * self.gains.inverse(quality, y.ndim)
        scales = self._log_scales(z_hat, y_hat, quality).exp().clamp(SCALE_MIN, SCALE_MAX)
        return y_hat, side_bits - torch.log2(_gaussian(quantize(v, rate), scales)).flatten(1).sum(1)

    @torch.no_grad()
    def quantize(self, y: torch.Tensor, quality: int, side: torch.Tensor | None = None) -> Symbols:
        v = y * self.gains.gain(quality, y.ndim)
        symbols = self.side.quantize(self._side(v, side), quality)
        return {"z": symbols["y"], "y": torch.round(v).clamp(-LATENT_LIMIT, LATENT_LIMIT).to(torch.int64).numpy()}

    def indices(self, z: np.ndarray, q: np.ndarray, quality: int) -> np.ndarray:
        """The scale index of every main latent, from the side symbols and the main
        symbols of the slices before each, exactly."""
        scales = self._scales(z, q, quality)
        return np.concatenate([scales(q, k) for k in range(len(self.heads))], axis=1)

    def _scales(self, z: np.ndarray, q: np.ndarray, quality: int):
        """A function (q, k) -> the scale indices of slice k, given the main symbols
        decoded so far in q (only the slices before k are read)."""
        if not self._fixed:
            raise RuntimeError("freeze or thaw the hyperprior before coding")
        grid = q.shape[2:]
        features = self._fixed[0](torch.from_numpy(z) << fixed.ACT_BITS)[..., : grid[0], : grid[1]]
        bias = fixed.to_fixed(self.log_scale_bias[quality].detach().double()).view(1, -1, 1, 1)

        def of_slice(q: np.ndarray, k: int) -> np.ndarray:
            known = self._dequantized(q[:, : self.bounds[k]], quality).abs()
            t = self._fixed[1 + k](torch.cat([features, known], dim=1))
            return scale_index(t + bias[:, self.bounds[k] : self.bounds[k + 1]]).numpy()

        return of_slice

    def write(self, encoder: constriction.stream.queue.RangeEncoder, symbols: Symbols, quality: int) -> None:
        self.side.write(encoder, {"y": symbols["z"]}, quality)
        q = symbols["y"]
        scales = self._scales(symbols["z"], q, quality)
        for k in range(len(self.heads)):
            self._write_ranked(encoder, q[:, self.bounds[k] : self.bounds[k + 1]], scales(q, k))

    def read(self, decoder: Decoder, n: int, grid: tuple[int, ...], quality: int) -> Symbols:
        z = self._read_side(decoder, n, grid, quality)
        q = np.zeros((n, self.channels, *grid), np.int64)
        scales = self._scales(z, q, quality)
        for k in range(len(self.heads)):
            q[:, self.bounds[k] : self.bounds[k + 1]] = self._read_ranked(decoder, scales(q, k))
        return {"z": z, "y": q}

    def _read_side(self, decoder: Decoder, n: int, grid: tuple[int, ...], quality: int) -> np.ndarray:
        """The side symbols of n images whose main grid is `grid` (the side grid is 4x smaller)."""
        return self.side.read(decoder, n, tuple(-(-g // 4) for g in grid), quality)["y"]

    def _write_ranked(self, encoder: constriction.stream.queue.RangeEncoder, values: np.ndarray, index: np.ndarray) -> None:
        """Main symbols in increasing scale index, each index's run with its Gaussian table
        (stable: within an index, in the arrays' order)."""
        order, sizes = _ranking(index)
        runs = np.split(values.ravel()[order], np.cumsum(sizes)[:-1])
        write_channels(encoder, self.tables, self._models, runs)  # type: ignore[arg-type]

    def _read_ranked(self, decoder: Decoder, index: np.ndarray) -> np.ndarray:
        """What `_write_ranked` wrote for these scale indices, in their shape."""
        order, sizes = _ranking(index)
        ranked = np.concatenate(read_channels(decoder, self.tables, self._models, sizes.tolist()))  # type: ignore[arg-type]
        values = np.empty_like(ranked)
        values[order] = ranked
        return values.reshape(index.shape)

    def bits(self, symbols: Symbols, quality: int) -> np.ndarray:
        return self._priced(symbols, self.indices(symbols["z"], symbols["y"], quality), quality)

    def _priced(self, symbols: Symbols, index: np.ndarray, quality: int) -> np.ndarray:
        """Each image's exact bits: side symbols, then main symbols at their scale indices."""
        q = symbols["y"]
        cost = np.zeros(q.shape)
        for k in np.unique(index).tolist():
            where = index == k
            cost[where] = self.tables.costs(q[where], k)
        return self.side.bits({"y": symbols["z"]}, quality) + cost.reshape(len(q), -1).sum(1)

    @torch.no_grad()
    def freeze(self) -> dict[str, np.ndarray]:
        side = self.side.freeze()
        tables = scale_tables()
        self._use(tables)
        return {**{f"side.{k}": v for k, v in side.items()}, **tables.to_store("scales."), **self._freeze_gains()}

    def thaw(self, tables: dict[str, np.ndarray]) -> None:
        self.side.thaw({k[5:]: v for k, v in tables.items() if k.startswith("side.")})
        self._use(CodingTables.stored(tables, "scales.", SCALES))
        self._thaw_gains(tables)

    def _use(self, tables: CodingTables) -> None:
        self.tables = tables
        self._models = tables.models()
        self._fixed = [fixed.FixedNet(self.hyper_synthesis), *(fixed.FixedNet(head) for head in self.heads)]


class ContextLatents(HyperpriorLatents):
    """The hyperprior with means and a spatial context: a latent's mean and scale come
    from the side latents, from every latent of the slices before it (signed: a mean
    needs the sign), and from the decoded latents of its own slice around it.

    Each slice is coded in two passes over a checkerboard (He et al. 2021): the anchors,
    (i + j) even, from what the slices before say; then the others, which also see the
    anchors around them through a 3x3 convolution of each channel. Where the transform is
    a block transform, that is how a block's neighbours predict its smooth parts, what
    the intra prediction of WebP and AVIF does. Means are in the latents' own units
    (before gains), so the decoder adds them exactly: y_hat = q * inverse_gain + mean,
    where q = round((y - mean) * gain) is the symbol coded."""

    def __init__(self, channels: int, side: int, width: int, qualities: int = 1, slices: int = 1,
                 padding: str = "zeros"):
        super().__init__(channels, side, width, qualities, slices, padding)
        self.context = nn.ModuleList(
            nn.Conv2d(self._size(k), CONTEXT_MULTIPLIER * self._size(k), 3, padding=1, groups=self._size(k), bias=False)
            for k in range(slices)
        )
        self._fixed_context: list[fixed.CheckerboardContext] = []

    def _head(self, width: int, k: int) -> nn.Sequential:
        """Slice k's log-scales, then means, from [side features, |slices before|,
        slices before, context]; the first inputs are the plain hyperprior's, so a model
        trained without context starts this one where it was (the rest start at zero)."""
        inputs = width + 2 * self.bounds[k] + CONTEXT_MULTIPLIER * self._size(k)
        return nn.Sequential(nn.Conv2d(inputs, width, 1), nn.ReLU(), nn.Conv2d(width, 2 * self._size(k), 1))

    # --- training: float arithmetic ---------------------------------------------------

    def _slice_parameters(self, k: int, features: torch.Tensor, known: torch.Tensor,
                          context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.heads[k](torch.cat([features, known.abs(), known, context], dim=1))
        n = self._size(k)
        return t[:, :n], t[:, n:].clamp(-_VALUE_LIMIT, _VALUE_LIMIT)

    def _pass(self, y: torch.Tensor, z_hat: torch.Tensor, quality: int, hat: str,
              rate: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_hat, each image's bits for the main latents) of float latents `y`: the
        residuals quantized as `hat` says for what the synthesis sees, and as `rate`
        says for the bits (`entropy.quantize`'s modes)."""
        grid = y.shape[-2:]
        features = self.hyper_synthesis(z_hat)[..., : grid[0], : grid[1]]
        anchors = checkerboard(grid, y.device)
        gain, inverse = self.gains.gain(quality, y.ndim), self.gains.inverse(quality, y.ndim)
        hats: list[torch.Tensor] = []
        bits = y.new_zeros(len(y))
        for k in range(len(self.heads)):
            lo, hi = self.bounds[k], self.bounds[k + 1]
            known = torch.cat(hats, dim=1).clamp(-_VALUE_LIMIT, _VALUE_LIMIT) if hats else y[:, :0]
            g, ig, yk = gain[:, lo:hi], inverse[:, lo:hi], y[:, lo:hi]
            empty = y.new_zeros(len(y), CONTEXT_MULTIPLIER * (hi - lo), *grid)
            log_a, mean_a = self._slice_parameters(k, features, known, empty)
            first = quantize((yk - mean_a) * g, hat) * ig + mean_a
            context = self.context[k](first.clamp(-_VALUE_LIMIT, _VALUE_LIMIT) * anchors)
            log_b, mean_b = self._slice_parameters(k, features, known, context)
            log_scale = torch.where(anchors, log_a, log_b) + self.log_scale_bias[quality, lo:hi].view(1, -1, 1, 1)
            mean = torch.where(anchors, mean_a, mean_b)
            residual = (yk - mean) * g
            hats.append(quantize(residual, hat) * ig + mean)
            scales = log_scale.exp().clamp(SCALE_MIN, SCALE_MAX)
            bits = bits - torch.log2(_gaussian(quantize(residual, rate), scales)).flatten(1).sum(1)
        return torch.cat(hats, dim=1), bits

    def forward(self, y: torch.Tensor, quality: int, mode: str = "train",
                side: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        v = y * self.gains.gain(quality, y.ndim)
        z_hat, side_bits = self.side(self._side(v, side), quality, mode)
        y_hat, bits = self._pass(y, z_hat, quality, *_MODES[mode])
        return y_hat, side_bits + bits

    # --- coding: exact integer arithmetic ---------------------------------------------

    def _walk(self, z: np.ndarray, n: int, grid: tuple[int, ...], quality: int,
              symbols_at: Callable[[int, np.ndarray, torch.Tensor, np.ndarray], np.ndarray]) -> Symbols:
        """Every slice's two passes in coding order, in integer arithmetic. For each pass
        `symbols_at(k, spots, mean, index)` gives the symbols q (n, slice channels, P) of
        slice k at the P positions `spots` (bool, grid), given their means (int64, units
        of 2**-ACT_BITS) and scale indices, both (n, slice channels, P): the encoder
        rounds, the decoder reads. The heads are 1x1 convolutions, so they run only at
        the pass's positions, laid out as a (P, 1) grid."""
        if not self._fixed:
            raise RuntimeError("freeze or thaw the hyperprior before coding")
        side = (torch.from_numpy(z) << fixed.ACT_BITS).transpose(0, 1).double()
        features = self._fixed[0].channel_major(side)[..., : grid[0], : grid[1]]  # (C, n, h, w), as heads take it
        bias = fixed.to_fixed(self.log_scale_bias[quality].detach().double()).view(1, -1, 1)
        anchors = checkerboard(grid, torch.device("cpu"))
        limit = fixed.CONV_LIMIT
        q = torch.zeros((n, self.channels, *grid), dtype=torch.int64)
        mean, index, hat = torch.zeros_like(q), torch.zeros_like(q), torch.zeros_like(q)
        # Each slice's two passes, with the side features at their positions (gathered once);
        # a grid of one latent has no second pass.
        passes = [(first, where, features[:, :, where])
                  for first, where in ((True, anchors[0, 0]), (False, ~anchors[0, 0])) if where.any()]
        for k in range(len(self.heads)):
            lo, hi, size = self.bounds[k], self.bounds[k + 1], self._size(k)
            known = hat[:, :lo].clamp(-limit, limit).transpose(0, 1)
            for first, where, side_features in passes:
                seen = known[:, :, where].double()
                # The heads' inputs at the pass's positions, channel-major: (channels, n, P).
                parts = [side_features, seen.abs(), seen]
                if not first:
                    slice_k = hat[:, lo:hi].transpose(0, 1).clamp(-limit, limit).double()
                    parts.append(self._fixed_context[k](slice_k, where))
                # The anchors' context is zero: the heads' first layer skips its inputs.
                inputs = torch.arange(sum(p.shape[0] for p in parts)) if first else None
                t = self._fixed[1 + k].channel_major(torch.cat(parts)[..., None], inputs)[..., 0]
                t = t.transpose(0, 1).to(torch.int64)
                m, i = t[:, size:], scale_index(t[:, :size] + bias[:, lo:hi])
                q[:, lo:hi, where] = torch.from_numpy(symbols_at(k, where.numpy(), m, i.numpy()))
                mean[:, lo:hi, where], index[:, lo:hi, where] = m, i
                hat[:, lo:hi] = self._dequantized(q[:, lo:hi].numpy(), quality, lo) + mean[:, lo:hi]
        return {"z": z, "y": q.numpy(), "mean": mean.numpy(), "index": index.numpy()}

    def indices(self, z: np.ndarray, q: np.ndarray, quality: int) -> np.ndarray:
        return self._walk(z, len(q), q.shape[2:], quality,
                          lambda k, spots, mean, index: q[:, self.bounds[k] : self.bounds[k + 1], spots])["index"]

    @torch.no_grad()
    def quantize(self, y: torch.Tensor, quality: int, side: torch.Tensor | None = None) -> Symbols:
        v = y * self.gains.gain(quality, y.ndim)
        z = self.side.quantize(self._side(v, side), quality)["y"]
        gain = self.gains.gain(quality, y.ndim).double()

        def rounded(k: int, spots: np.ndarray, mean: torch.Tensor, index: np.ndarray) -> np.ndarray:
            lo, hi = self.bounds[k], self.bounds[k + 1]
            residual = (y[:, lo:hi, spots].double() - mean.double() / (1 << fixed.ACT_BITS)) * gain[:, lo:hi, :, 0]
            return torch.round(residual).clamp(-LATENT_LIMIT, LATENT_LIMIT).to(torch.int64).numpy()

        return self._walk(z, len(y), tuple(y.shape[2:]), quality, rounded)

    def fixed_input(self, symbols: Symbols, quality: int) -> torch.Tensor:
        return super().fixed_input(symbols, quality) + torch.from_numpy(symbols["mean"])

    def dequantize(self, symbols: Symbols, quality: int) -> torch.Tensor:
        return (self.fixed_input(symbols, quality).double() / (1 << fixed.ACT_BITS)).float()

    def _runs(self, symbols: Symbols) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(symbols, scale indices) of each pass, in coding order."""
        anchors = checkerboard(symbols["y"].shape[2:], torch.device("cpu")).numpy()
        for k in range(len(self.heads)):
            lo, hi = self.bounds[k], self.bounds[k + 1]
            for where in (anchors, ~anchors):
                mask = np.broadcast_to(where, symbols["y"][:, lo:hi].shape)
                yield symbols["y"][:, lo:hi][mask], symbols["index"][:, lo:hi][mask]

    def write(self, encoder: constriction.stream.queue.RangeEncoder, symbols: Symbols, quality: int) -> None:
        self.side.write(encoder, {"y": symbols["z"]}, quality)
        for values, index in self._runs(symbols):
            self._write_ranked(encoder, values, index)

    def read(self, decoder: Decoder, n: int, grid: tuple[int, ...], quality: int) -> Symbols:
        z = self._read_side(decoder, n, grid, quality)
        return self._walk(z, n, grid, quality, lambda k, spots, mean, index: self._read_ranked(decoder, index))

    def bits(self, symbols: Symbols, quality: int) -> np.ndarray:
        return self._priced(symbols, symbols["index"], quality)

    def _use(self, tables: CodingTables) -> None:
        super()._use(tables)
        self._fixed_context = [fixed.CheckerboardContext(c) for c in self.context]


def checkerboard(grid: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The anchors of a latent grid, (1, 1, h, w) bool: where (row + column) is even."""
    rows = torch.arange(grid[0], device=device).view(-1, 1)
    cols = torch.arange(grid[1], device=device).view(1, -1)
    return ((rows + cols) % 2 == 0).view(1, 1, *grid)


# How forward quantizes in each mode: (the latents the synthesis sees, those the rate is of).
_MODES = {"train": ("ste", "noise"), "relaxed": ("none", "none"), "rounded": ("round", "round")}


def _gaussian(v: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """P(v) of (noisy or rounded) latents under zero-mean Gaussians of `scales`,
    integrated over v +- 1/2 (by symmetry, on |v|, where it is precise). The normal CDF
    is written out: torch.distributions checks its arguments, which waits on a GPU."""
    def cdf(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * (1 + torch.erf(t / math.sqrt(2)))

    a = v.abs()
    return (cdf((0.5 - a) / scales) - cdf((-0.5 - a) / scales)).clamp_min(1e-9)


def build_latents(cfg: Any) -> LatentCodec:
    """The latent codec a network config asks for."""
    if cfg.prior == "hyperprior":
        return (ContextLatents if cfg.context else HyperpriorLatents)(cfg.latent, cfg.hyper, cfg.hidden[0], cfg.qualities, cfg.slices, cfg.padding)
    return FactorizedLatents(cfg.latent, cfg.qualities, gains=not cfg.record.fixed_size)
