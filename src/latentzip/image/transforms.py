"""Analysis (encoder) and synthesis (decoder) networks, one record per architecture.

Images enter as float tensors (N, C, H, W) in [0, 1], C = 1 (grey), 2 (grey + alpha),
3 (RGB) or 4 (RGBA). Dense transforms flatten a fixed image size to a code vector of
`latent` numbers. The convolutional transform is fully convolutional: any H x W maps to
a (latent, ceil(H/s), ceil(W/s)) grid, s = 2**levels.

Both families start linear and learn what a linear code misses: the dense transforms
start as PCA, and the convolutional one as a KLT of s x s blocks (PCA of the blocks,
see `init_linear`) with a nonlinear branch beside it whose output starts at zero. A
codec is therefore at the quality of a good linear transform coder at step zero, and
training only has to improve on that; on a CPU budget of minutes that head start is
most of the quality (see docs/format.md for the exact layer list).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

MAX_CHANNELS = 4
# Zero padding makes a 3x3 layer see its edges unlike its interior. A model trained on
# crops a few blocks wide is mostly edge, so on larger images its interior ran on taps
# that training had barely seen (on textures, 2-4x the bits per pixel at 256 px of what
# 64 px crops cost, measured); replicate padding makes an edge look like more of the image.
PADDINGS = ("zeros", "replicate")
CHANNEL_NAMES = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}


@dataclass
class NetConfig:
    """What the networks need to be rebuilt; stored in the model file as JSON."""

    arch: str = "conv"
    latent: int = 32
    channels: int = 1
    height: int = 28
    width: int = 28
    hidden: tuple[int, ...] = (64,)
    levels: int = 2
    prior: str = "factorized"  # the latent codec: "factorized" or "hyperprior" (see latents.py)
    qualities: int = 1  # rungs of the quality ladder one model codes at (see latents.Gains)
    hyper: int = 0  # hyperprior: side channels (0: none)
    slices: int = 1  # hyperprior: groups of latent channels, each also conditioned on those before
    padding: str = "zeros"  # how 3x3 convolutions see past an edge: "replicate", or "zeros" (older files)
    context: bool = False  # hyperprior: means and a checkerboard context (latents.ContextLatents; False: older files)
    post: int = 0  # conv: channels of the pixel post-filter (PostFilter; 0: none, as in older files)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.padding not in PADDINGS:
            raise ValueError(f"unknown padding {self.padding!r}")
        if not isinstance(self.context, bool):
            raise ValueError(f"context must be true or false, not {self.context!r}")
        if type(self.post) is not int:
            raise ValueError(f"post must be a whole number of channels, not {self.post!r}")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")

    @property
    def record(self) -> "Architecture":
        return ARCHITECTURES[self.arch]

    @property
    def stride(self) -> int:
        return 2**self.levels

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def halo(self) -> int:
        """Latents on each side of a block that its pixels depend on: the architecture's,
        plus the blocks a post-filter reaches into."""
        return self.record.halo + (-(-PostFilter.RADIUS // self.stride) if self.post else 0)


@dataclass(frozen=True)
class Architecture:
    """What the codec needs to know of an architecture, in one place.

    `build` makes (analysis, synthesis); `grid` is the latent grid of an image of
    (height, width) after checking the model can code that size (None: it cannot);
    `fixed_size` says the model codes only cfg.height x cfg.width images; `halo` is
    how far one block's networks see (the one 3x3 layer of each conv branch: 1), so a
    tile coded with that margin is coded as in the whole image."""

    name: str
    description: str
    build: Callable[[NetConfig], tuple[nn.Module, nn.Module]]
    grid: Callable[[NetConfig, int, int], tuple[int, ...] | None]
    fixed_size: bool
    variational: bool = False
    limits: dict[str, int] = field(default_factory=dict)
    halo: int = 0  # latents on each side of one that its synthesis reads (and blocks its analysis reads)


GDN_FLOOR = 1e-6


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016), or its inverse.

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2): the nonlinearity that Gaussianizes
    image statistics, which is why learned codecs use it instead of ReLU."""

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(torch.zeros(channels, channels).fill_diagonal_(0.1))

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(beta, gamma) as the layer uses them: both non-negative."""
        return self.beta.abs() + GDN_FLOOR, self.gamma.abs()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta, gamma = self.coefficients()
        norm = F.conv2d(x * x, gamma[:, :, None, None], beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


# --- dense ------------------------------------------------------------------------------


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class DenseAnalysis(nn.Module):
    """A linear map plus an MLP. The linear part can start as PCA (see `init_from_pca`),
    so training begins at the best linear code and the MLP learns what PCA misses."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        size = cfg.channels * cfg.height * cfg.width
        outputs = cfg.latent * (2 if cfg.record.variational else 1)
        self.linear = nn.Linear(size, outputs)
        self.net = _mlp([size, *cfg.hidden, outputs])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return self.linear(flat) + self.net(flat)


class DenseSynthesis(nn.Module):
    """Mirror of DenseAnalysis; its output is unbounded while training and clamped to
    [0, 1] when decoding, so the linear part can be exactly PCA's reconstruction."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.shape = (cfg.channels, cfg.height, cfg.width)
        self.linear = nn.Linear(cfg.latent, math.prod(self.shape))
        self.net = _mlp([cfg.latent, *reversed(cfg.hidden), math.prod(self.shape)])

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return (self.linear(y) + self.net(y)).reshape(-1, *self.shape)


@torch.no_grad()
def init_from_pca(analysis: DenseAnalysis, synthesis: DenseSynthesis, components: torch.Tensor, mean: torch.Tensor, gain: float) -> None:
    """Start the dense transforms as PCA: latent i = gain x (coefficient of component i),
    whose rounding is a uniform quantizer of step 1/gain; the MLPs start at zero output."""
    k = components.shape[0]
    for layer in (analysis.linear, synthesis.linear, analysis.net[-1], synthesis.net[-1]):
        layer.weight.zero_()
        layer.bias.zero_()
    analysis.linear.weight[:k] = components * gain
    analysis.linear.bias[:k] = -(components @ mean) * gain
    synthesis.linear.weight[:, :k] = components.T / gain
    synthesis.linear.bias.copy_(mean)


def _dense_grid(cfg: NetConfig, height: int, width: int) -> tuple[int, ...] | None:
    return () if (height, width) == (cfg.height, cfg.width) else None


# --- convolutional ----------------------------------------------------------------------
#
# Both transforms work on the grid of s x s blocks (s = 2**levels): a block's pixels are
# its channels there (pixel unshuffle), so every layer runs at 1/s^2 of the resolution
# and a network trains in minutes on a CPU. The linear path is a 1x1 layer, a block
# transform; the nonlinear path sees 3x3 neighbourhoods of blocks, which lets the
# synthesis blend blocks into each other instead of leaving seams.


class ConvAnalysis(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        block = cfg.channels * cfg.stride**2
        width = cfg.hidden[0]
        self.stride = cfg.stride
        self.linear = nn.Conv2d(block, cfg.latent, 1)
        self.net = nn.Sequential(
            nn.Conv2d(block, width, 1), GDN(width),
            nn.Conv2d(width, width, 3, padding=1, padding_mode=cfg.padding), GDN(width),
            nn.Conv2d(width, cfg.latent, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = F.pixel_unshuffle(pad_to_stride(x, self.stride) - 0.5, self.stride)
        return self.linear(blocks) + self.net(blocks)


class PostFilter(nn.Module):
    """A residual filter on the synthesis's pixels, which sees across block edges.

    The block synthesis leaves errors that pixels around them reveal (photo:q5 on the
    sporco photographs: 18-25% more squared error in the outer rows and columns of a
    block than inside it); three 3x3 layers over 2x2 pixel groups see 6 px each way.
    Each quality adds its own bias to the first layer: one filter for all rungs of the
    ladder helped the low ones and cost the top one 1.4 dB (4,000 steps, measured), since
    how much to smooth depends on the step. The last layer starts at zero, so a model gains a
    filter without a change to what it decodes until the filter is trained.
    `fixed.FixedConvSynthesis` runs it in integers."""

    RADIUS = 6  # pixels each side that one output pixel reads
    GROUP = 2  # it runs on GROUP x GROUP pixel groups (pixel unshuffle): a quarter of the positions

    def __init__(self, channels: int, width: int, qualities: int):
        super().__init__()
        inner = channels * self.GROUP**2
        self.first = nn.Conv2d(inner, width, 3, padding=1, padding_mode="replicate")
        self.quality = nn.Parameter(torch.zeros(qualities, width))
        self.rest = nn.Sequential(
            nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, padding_mode="replicate"), nn.ReLU(),
            nn.Conv2d(width, inner, 3, padding=1, padding_mode="replicate"),
        )
        nn.init.zeros_(self.rest[-1].weight)
        nn.init.zeros_(self.rest[-1].bias)

    def forward(self, x: torch.Tensor, quality: int) -> torch.Tensor:
        """Pixels centred on 0 (N, C, H, W), H and W even, filtered for `quality` (0-based)."""
        h = self.first(F.pixel_unshuffle(x, self.GROUP)) + self.quality[quality][:, None, None]
        return x + F.pixel_shuffle(self.rest(h), self.GROUP)


class ConvSynthesis(nn.Module):
    """Latents (N, latent, h, w) to pixels (N, C, h*s, w*s), unbounded (decoding clamps).
    Its layers are what `fixed.FixedConvSynthesis` runs in integer arithmetic."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        block = cfg.channels * cfg.stride**2
        width = cfg.hidden[0]
        self.stride = cfg.stride
        self.linear = nn.Conv2d(cfg.latent, block, 1)
        self.net = nn.Sequential(
            nn.Conv2d(cfg.latent, width, 1), GDN(width, inverse=True),
            nn.Conv2d(width, width, 3, padding=1, padding_mode=cfg.padding), GDN(width, inverse=True),
            nn.Conv2d(width, block, 1),
        )
        self.post = PostFilter(cfg.channels, cfg.post, cfg.qualities) if cfg.post else None

    def forward(self, y: torch.Tensor, quality: int | None = None) -> torch.Tensor:
        """Pixels, post-filtered for `quality` (0-based) where the model has a post-filter
        and a quality is given."""
        x = F.pixel_shuffle(self.linear(y) + self.net(y), self.stride)
        return (self.post(x, quality) if quality is not None and self.post is not None else x) + 0.5


@torch.no_grad()
def init_linear(analysis: ConvAnalysis, synthesis: ConvSynthesis, components: torch.Tensor, mean: torch.Tensor) -> None:
    """Start the convolutional transforms as a block KLT: latent k of a block is its
    coefficient on component k (unit steps are then one grey level / 255: the quality
    ladder's gains set the real step), and the nonlinear branches start at zero output.

    `components` are (k, C*s*s) orthonormal rows over centred blocks, `mean` the mean
    block minus 1/2 (the transforms centre pixels on 1/2)."""
    k = components.shape[0]
    for layer in (analysis.linear, synthesis.linear, analysis.net[-1], synthesis.net[-1]):
        layer.weight.zero_()
        layer.bias.zero_()
    analysis.linear.weight[:k, :, 0, 0] = components
    analysis.linear.bias[:k] = -(components @ mean)
    synthesis.linear.weight[:, :k, 0, 0] = components.T
    synthesis.linear.bias.copy_(mean)


def pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Replicate-pad the bottom and right edges to a multiple of `stride`. The padding
    is a private detail of the transform: decode crops it and no metric counts it."""
    h, w = x.shape[-2:]
    ph, pw = -h % stride, -w % stride
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def _conv_grid(cfg: NetConfig, height: int, width: int) -> tuple[int, ...] | None:
    return (-(-height // cfg.stride), -(-width // cfg.stride))


def _dense(cfg: NetConfig) -> tuple[nn.Module, nn.Module]:
    return DenseAnalysis(cfg), DenseSynthesis(cfg)


def _conv(cfg: NetConfig) -> tuple[nn.Module, nn.Module]:
    return ConvAnalysis(cfg), ConvSynthesis(cfg)


_DENSE_LIMITS = {"latent": 4096, "hidden": 8192, "layers": 8, "pixels": 1 << 16}
_CONV_LIMITS = {"latent": 4096, "hidden": 1024, "layers": 1, "levels": 5, "post": 128}

ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("dense", "784-64-code-64-784 style MLP, started from PCA", _dense, _dense_grid, True,
                     limits=_DENSE_LIMITS),
        Architecture("deep", "a deeper MLP, started from PCA", _dense, _dense_grid, True, limits=_DENSE_LIMITS),
        Architecture("vae", "variational MLP (codes its posterior mean)", _dense, _dense_grid, True, True,
                     limits=_DENSE_LIMITS),
        Architecture("conv", "fully convolutional on s x s blocks, started from a block KLT, GDN branches",
                     _conv, _conv_grid, False, limits=_CONV_LIMITS, halo=1),
    )
}
ARCHS = tuple(ARCHITECTURES)


def check_config(cfg: NetConfig) -> None:
    """Raise ValueError unless `cfg` describes a network of sane size: a model file is
    checked against this before anything is built from it."""
    limits = cfg.record.limits
    if not 1 <= cfg.channels <= MAX_CHANNELS:
        raise ValueError(f"{cfg.channels} image channels")
    if not 1 <= cfg.latent <= limits["latent"]:
        raise ValueError(f"{cfg.latent} latents")
    if not 1 <= len(cfg.hidden) <= limits["layers"] or not all(1 <= h <= limits["hidden"] for h in cfg.hidden):
        raise ValueError(f"hidden layers {cfg.hidden}")
    if cfg.record.fixed_size:
        if not (1 <= cfg.height and 1 <= cfg.width and cfg.height * cfg.width * cfg.channels <= limits["pixels"]):
            raise ValueError(f"image size {cfg.height}x{cfg.width}")
    elif not 1 <= cfg.levels <= limits["levels"]:
        raise ValueError(f"{cfg.levels} downsampling levels")
    if not 1 <= cfg.qualities <= 16 or not 0 <= cfg.hyper <= 512 or not 1 <= cfg.slices <= min(16, cfg.latent):
        raise ValueError("quality ladder or hyperprior size")
    if cfg.prior not in ("factorized", "hyperprior") or (cfg.prior == "hyperprior") != (cfg.hyper > 0):
        raise ValueError(f"latent codec {cfg.prior!r} with {cfg.hyper} side channels")
    if cfg.context and cfg.prior != "hyperprior":
        raise ValueError("a context needs the hyperprior")
    if not 0 <= cfg.post <= limits.get("post", 0):
        raise ValueError(f"a post-filter of {cfg.post} channels")
    if cfg.prior == "hyperprior" and cfg.record.fixed_size:
        raise ValueError("a hyperprior needs a convolutional transform")


def build(cfg: NetConfig) -> tuple[nn.Module, nn.Module]:
    """(analysis, synthesis) for `cfg`; the VAE analysis emits 2 x latent numbers."""
    return cfg.record.build(cfg)
