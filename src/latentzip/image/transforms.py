"""Analysis (encoder) and synthesis (decoder) networks.

Images enter as float tensors (N, C, H, W) in [0, 1]. Dense transforms flatten a fixed
image size to a code vector of `latent` numbers; the convolutional transform is fully
convolutional, mapping any H x W to a (latent, ceil(H/s), ceil(W/s)) grid with s = 2**levels.
The VAE variant makes the analysis output a mean and a log-variance per latent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

ARCHS = ("dense", "deep", "conv", "vae")


@dataclass
class NetConfig:
    """What the networks need to be rebuilt; stored in the model file."""

    arch: str = "conv"
    latent: int = 32
    channels: int = 1
    height: int = 28
    width: int = 28
    hidden: tuple[int, ...] = (64,)
    levels: int = 2

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.arch not in ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")

    @property
    def dense(self) -> bool:
        return self.arch != "conv"

    @property
    def stride(self) -> int:
        return 2**self.levels


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016), or its inverse.

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2): the nonlinearity that Gaussianizes
    image statistics, which is why learned codecs use it instead of ReLU."""

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(0.1 * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta.abs() + 1e-6
        gamma = self.gamma.abs()
        norm = F.conv2d(x * x, gamma[:, :, None, None], beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


def _mlp(sizes: list[int], last: nn.Module | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    if last is not None:
        layers.append(last)
    return nn.Sequential(*layers)


class DenseAnalysis(nn.Module):
    """A linear map plus an MLP. The linear part can start as PCA (see `init_from_pca`),
    so training begins at the best linear code and the MLP learns what PCA misses."""

    def __init__(self, cfg: NetConfig, outputs: int):
        super().__init__()
        size = cfg.channels * cfg.height * cfg.width
        self.linear = nn.Linear(size, outputs)
        self.net = _mlp([size, *cfg.hidden, outputs], None)

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
        self.net = _mlp([cfg.latent, *reversed(cfg.hidden), math.prod(self.shape)], None)

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


def _conv_stack(cfg: NetConfig, ins: int, outs: int, layer: Callable[[int, int], nn.Module], inverse: bool) -> nn.Sequential:
    """`cfg.levels` stride-2 layers, GDN (or its inverse) between them."""
    width = cfg.hidden[0]
    layers: list[nn.Module] = []
    for level in range(cfg.levels):
        last = level == cfg.levels - 1
        layers.append(layer(ins, outs if last else width))
        if not last:
            layers.append(GDN(width, inverse=inverse))
        ins = width
    return nn.Sequential(*layers)


class ConvAnalysis(nn.Module):
    def __init__(self, cfg: NetConfig, outputs: int):
        super().__init__()
        self.net = _conv_stack(cfg, cfg.channels, outputs, lambda i, o: nn.Conv2d(i, o, 5, stride=2, padding=2), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvSynthesis(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.net = _conv_stack(
            cfg, cfg.latent, cfg.channels,
            lambda i, o: nn.ConvTranspose2d(i, o, 5, stride=2, padding=2, output_padding=1), True,
        )

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(y))


def pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Replicate-pad the bottom and right edges to a multiple of `stride`. The padding
    is a private detail of the transform: decode crops it and no metric counts it."""
    h, w = x.shape[-2:]
    ph, pw = -h % stride, -w % stride
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def build(cfg: NetConfig) -> tuple[nn.Module, nn.Module]:
    """(analysis, synthesis) for `cfg`; the VAE analysis emits 2 x latent numbers."""
    outputs = cfg.latent * (2 if cfg.arch == "vae" else 1)
    if cfg.arch == "conv":
        return ConvAnalysis(cfg, outputs), ConvSynthesis(cfg)
    return DenseAnalysis(cfg, outputs), DenseSynthesis(cfg)
