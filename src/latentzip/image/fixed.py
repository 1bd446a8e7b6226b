"""The dense synthesis in exact integer arithmetic: the same pixels on every machine.

A float network's output can differ in its last bits between CPUs, BLAS builds and
thread counts; rounded to uint8, a rare pixel then moves by one level. That is harmless
for viewing but not for a codec that promises bounds and uses the decoded image to pick
coding tables (see `refine`). So dense models decode through fixed-point arithmetic:

- weights are rounded to multiples of 2**-WEIGHT_BITS, activations to 2**-ACT_BITS;
- each layer is an integer matrix product done in float64, which is exact because every
  product and partial sum is an integer below 2**53 (checked when the model is loaded),
  so no summation order can change it;
- GELU is a table over [-8, 8] in steps of 2**-ACT_BITS; every entry lies at least 8e-5
  from a rounding boundary, so any libm's erf builds the same table.

On the shipped models 1-4% of pixels come out one grey level away from the float
network's, none further, and mean PSNR agrees to 0.001 dB.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .transforms import DenseSynthesis, PostFilter

WEIGHT_BITS = 16
ACT_BITS = 12
GELU_LIMIT = 8 << ACT_BITS  # table covers [-8, 8]; beyond it GELU(x) is 0 or x to float precision
ACTIVATION_LIMIT = 1 << 22  # activations are clamped to +-1024 (in units of 2**-ACT_BITS)
LATENT_LIMIT = 1 << 11  # latents are clamped to +-2048, far beyond what any model emits
EXACT_LIMIT = 1 << 52  # |integer sums| stay below this, so float64 holds them exactly


class FixedSynthesis:
    """A dense synthesis network frozen to integers; `__call__` maps integer latents to
    uint8 pixels (N, C, H, W)."""

    def __init__(self, synthesis: DenseSynthesis):
        linears = [m for m in synthesis.net if isinstance(m, nn.Linear)]
        self.shape = synthesis.shape
        self.layers = [_integer(m) for m in linears]
        self.skip = _integer(synthesis.linear)
        self.gelu = _gelu_table()
        bounds = [LATENT_LIMIT << ACT_BITS] + [ACTIVATION_LIMIT] * (len(self.layers) - 1)
        for (weight, bias), bound in zip([*self.layers, self.skip], [*bounds, bounds[0]]):
            if bound * np.abs(weight).sum(1).max() + np.abs(bias).max() >= EXACT_LIMIT:
                raise ValueError("weights too large for exact integer synthesis")

    def __call__(self, latents: np.ndarray) -> np.ndarray:
        x = np.clip(latents.reshape(len(latents), -1).astype(np.int64), -LATENT_LIMIT, LATENT_LIMIT) << ACT_BITS
        h = x
        for i, layer in enumerate(self.layers):
            h = _affine(h, layer)
            if i < len(self.layers) - 1:
                h = self._gelu(np.clip(h, -ACTIVATION_LIMIT, ACTIVATION_LIMIT))
        out = h + _affine(x, self.skip)
        pixels = np.clip((out * 255 + (1 << (ACT_BITS - 1))) >> ACT_BITS, 0, 255).astype(np.uint8)
        return pixels.reshape(len(latents), *self.shape)

    def _gelu(self, h: np.ndarray) -> np.ndarray:
        inside = np.abs(h) <= GELU_LIMIT
        return np.where(inside, self.gelu[np.clip(h, -GELU_LIMIT, GELU_LIMIT) + GELU_LIMIT], np.maximum(h, 0))


def _integer(layer: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    """Weights as integer-valued float64 (for exact BLAS products), bias as int64, both
    in units of 2**-(WEIGHT_BITS + ACT_BITS) once multiplied by an activation."""
    weight = np.round(layer.weight.detach().double().numpy() * (1 << WEIGHT_BITS))
    bias = np.round(layer.bias.detach().double().numpy() * (1 << (WEIGHT_BITS + ACT_BITS))).astype(np.int64)
    return weight, bias


def _affine(h: np.ndarray, layer: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """h @ W.T + b, exact, rounded back to ACT_BITS fractional bits (half up)."""
    weight, bias = layer
    acc = (h.astype(np.float64) @ weight.T).astype(np.int64) + bias
    return (acc + (1 << (WEIGHT_BITS - 1))) >> WEIGHT_BITS


def _gelu_table() -> np.ndarray:
    """round(GELU(i / 2**ACT_BITS) * 2**ACT_BITS) for i in [-GELU_LIMIT, GELU_LIMIT]."""
    scale = 1 << ACT_BITS
    return np.array(
        [round(0.5 * i * (1.0 + math.erf(i / scale / math.sqrt(2.0)))) for i in range(-GELU_LIMIT, GELU_LIMIT + 1)],
        dtype=np.int64,
    )


# --- convolutional networks ---------------------------------------------------------------
#
# The convolutional synthesis and the hyperprior's synthesis run the same way: every
# value is an integer in units of 2**-ACT_BITS, every weight an integer in units of
# 2**-CONV_WEIGHT_BITS, and each convolution is an integer product sum done by torch in
# float64, exact because every term and partial sum is an integer below 2**52 (checked
# when the network is frozen), so neither the summation order, the thread count nor the
# device can change a result. Inverse GDN takes an exact integer square root. Between
# layers the values stay float64 (holding integers) and channel-major, (C, n, h, w):
# rounding is a float64 floor, as exact as an int64 shift, and no layer converts or
# re-lays out what the next one reads.

CONV_WEIGHT_BITS = 16
GDN_INPUT_BITS = 8  # GDN squares its inputs at 2**-8 ...
GDN_WEIGHT_BITS = 12  # ... and weighs them by gamma in units of 2**-12
CONV_LIMIT = 1 << (ACT_BITS + 6)  # activations are clamped to +-64


def _check_exact(weight: torch.Tensor, bias: torch.Tensor, limit: int) -> None:
    """Refuse weights whose integer sums could reach EXACT_LIMIT for inputs within +-limit."""
    if limit * float(weight.abs().flatten(1).sum(1).max()) + float(bias.abs().max()) >= EXACT_LIMIT:
        raise ValueError("weights too large for exact integer synthesis")


def _integer_conv(layer: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A convolution's weights and bias as integer-valued float64, checked for exact sums."""
    weight = torch.round(layer.weight.detach().double() * (1 << CONV_WEIGHT_BITS))
    bias = layer.bias.detach().double() if layer.bias is not None else torch.zeros(len(weight), dtype=torch.float64)
    bias = torch.round(bias * (1 << (CONV_WEIGHT_BITS + ACT_BITS)))
    _check_exact(weight, bias, CONV_LIMIT)
    return weight, bias


def _rounded(acc: torch.Tensor, bits: int) -> torch.Tensor:
    """floor((acc + 2**(bits - 1)) / 2**bits) of integer-valued float64, in place: exact,
    since acc is below 2**52 and the scale a power of two (an int64 shift, in float64)."""
    return acc.add_(1 << (bits - 1)).mul_(2.0 ** -bits).floor_()


class _Conv:
    def __init__(self, layer: nn.Conv2d):
        if layer.groups > 1:
            raise ValueError("a grouped convolution has an integer form only as a checkerboard context")
        self.weight, self.bias = _integer_conv(layer)
        self.padding = layer.padding
        self.replicate = layer.padding_mode == "replicate"

    def __call__(self, x: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """The layer on channel-major values x (C, n, h, w) -> (C', n, h, w); with `inputs`,
        `x` holds only those input channels (the others being zero everywhere, their
        terms are zero: the sums are the same)."""
        weight = self.weight if inputs is None else self.weight[:, inputs]
        _, n, h, w = x.shape
        if weight.shape[-2:] == (1, 1):  # one matrix product: several times faster than conv2d in float64
            acc = torch.addmm(self.bias[:, None], weight[:, :, 0, 0], x.flatten(1)).view(len(weight), n, h, w)
        else:
            batch = x.transpose(0, 1)  # conv2d takes (n, C, h, w)
            if self.replicate:
                ph, pw = self.padding  # type: ignore[misc]
                acc = F.conv2d(F.pad(batch, (pw, pw, ph, ph), mode="replicate"), weight, self.bias)
            else:
                acc = F.conv2d(batch, weight, self.bias, padding=self.padding)
            acc = acc.transpose(0, 1).contiguous()
        return _rounded(acc, CONV_WEIGHT_BITS)


class CheckerboardContext:
    """A 3x3 depthwise convolution with zero padding, frozen to integers, of the anchors
    of a checkerboard, evaluated at the other squares only. There the window holds
    anchors only at its four edge midpoints, so those four taps are the whole sum: the
    integers of the full convolution from less than a quarter of its products."""

    EDGES = ((-1, 0), (1, 0), (0, -1), (0, 1))

    def __init__(self, layer: nn.Conv2d):
        if layer.kernel_size != (3, 3) or layer.padding != (1, 1) or layer.groups != layer.in_channels \
                or layer.padding_mode != "zeros":
            raise ValueError("a checkerboard context is a 3x3 depthwise convolution with zero padding")
        weight, bias = _integer_conv(layer)
        self.channels, self.multiplier = layer.in_channels, layer.out_channels // layer.in_channels
        shape = (self.channels, self.multiplier, 1, 1)
        self.taps = [weight[:, 0, 1 + di, 1 + dj].view(shape) for di, dj in self.EDGES]
        self.bias = bias.view(shape)

    def __call__(self, x: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """The convolution of channel-major values x (C, n, h, w), read at anchors only, at
        the P positions where the (h, w) bool `where` holds, none of them an anchor:
        (C * multiplier, n, P), rounded and clamped as `FixedNet` does."""
        (h, w), padded = x.shape[-2:], F.pad(x, (1, 1, 1, 1))
        acc = self.bias
        for (di, dj), tap in zip(self.EDGES, self.taps):
            acc = acc + padded[:, :, 1 + di : 1 + di + h, 1 + dj : 1 + dj + w][:, :, where][:, None] * tap
        acc = acc.reshape(self.channels * self.multiplier, *acc.shape[2:])
        return _rounded(acc, CONV_WEIGHT_BITS).clamp_(-CONV_LIMIT, CONV_LIMIT)


class _InverseGDN:
    """y_i = x_i * sqrt(beta_i + sum_j gamma_ij x_j^2), exact."""

    NORM_BITS = 2 * GDN_INPUT_BITS + GDN_WEIGHT_BITS

    def __init__(self, layer: nn.Module):
        beta, gamma = (v.detach().double() for v in layer.coefficients())
        self.gamma = torch.round(gamma * (1 << GDN_WEIGHT_BITS))
        self.beta = torch.round(beta * (1 << self.NORM_BITS))
        _check_exact(self.gamma, self.beta, (CONV_LIMIT >> (ACT_BITS - GDN_INPUT_BITS)) ** 2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The layer on channel-major values x (C, n, h, w)."""
        coarse = _rounded(x.clone(), ACT_BITS - GDN_INPUT_BITS)
        norm = torch.addmm(self.beta[:, None], self.gamma, coarse.square_().flatten(1)).view_as(x)
        return _rounded(x * _isqrt(norm), self.NORM_BITS // 2)  # the root is in units of 2**-(NORM_BITS / 2)


def _isqrt(n: torch.Tensor) -> torch.Tensor:
    """floor(sqrt(n)) of non-negative integer values below 2**52 (int64, or float64
    holding integers), exactly: the float64 root is within one of it, and corrections
    in n's type, exact below 2**53, settle it."""
    root = n.double().sqrt().floor().to(n.dtype)
    for _ in range(2):
        root = root - (root * root > n).to(n.dtype)
        root = root + ((root + 1) * (root + 1) <= n).to(n.dtype)
    return root


def _pixel_shuffle(x: torch.Tensor, factor: int) -> torch.Tensor:
    """`F.pixel_shuffle` on channel-major values: (C * f * f, n, h, w) -> (C, n, h * f, w * f)."""
    c, n, h, w = x.shape
    blocks = x.view(c // factor**2, factor, factor, n, h, w).permute(0, 3, 4, 1, 5, 2)
    return blocks.reshape(c // factor**2, n, h * factor, w * factor)


def _pixel_unshuffle(x: torch.Tensor, factor: int) -> torch.Tensor:
    """`F.pixel_unshuffle` on channel-major values: (C, n, H, W) -> (C * f * f, n, H / f, W / f)."""
    c, n, h, w = x.shape
    blocks = x.view(c, n, h // factor, factor, w // factor, factor).permute(0, 3, 5, 1, 2, 4)
    return blocks.reshape(c * factor**2, n, h // factor, w // factor)


def _relu(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_min(0)


class FixedNet:
    """A torch network of Conv2d, inverse GDN, ReLU and PixelShuffle layers frozen to
    integers. It runs on channel-major float64 values (`channel_major`): the heads run at
    scattered positions and the synthesis's 1x1 layers are matrix products, so keeping
    one layout and one type from layer to layer saves a copy and a conversion at each."""

    def __init__(self, net: nn.Module):
        from .transforms import GDN

        self.layers: list[Callable[[torch.Tensor], torch.Tensor]] = []
        for layer in [net] if isinstance(net, nn.Conv2d) else list(net.children()):
            if isinstance(layer, nn.Conv2d):
                self.layers.append(_Conv(layer))
            elif isinstance(layer, GDN) and layer.inverse:
                self.layers.append(_InverseGDN(layer))
            elif isinstance(layer, nn.ReLU):
                self.layers.append(_relu)
            elif isinstance(layer, nn.PixelShuffle):
                self.layers.append(partial(_pixel_shuffle, factor=layer.upscale_factor))
            else:
                raise ValueError(f"{type(layer).__name__} has no integer form")

    def __call__(self, x: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """The network on int64 values (n, C, h, w) in units of 2**-ACT_BITS, to int64."""
        values = x.transpose(0, 1).to(torch.float64, memory_format=torch.contiguous_format)
        return self.channel_major(values, inputs).transpose(0, 1).to(torch.int64)

    def channel_major(self, x: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """The same integers on float64 values laid out (C, n, h, w); `inputs` as for the
        first layer, a convolution."""
        for i, layer in enumerate(self.layers):
            x = (layer(x, inputs) if i == 0 and inputs is not None else layer(x)).clamp_(-CONV_LIMIT, CONV_LIMIT)
        return x


def to_fixed(values: torch.Tensor) -> torch.Tensor:
    """Real numbers as int64 in units of 2**-ACT_BITS, rounded half up."""
    return torch.floor(values.double() * (1 << ACT_BITS) + 0.5).to(torch.int64)


def to_pixels(values: torch.Tensor) -> torch.Tensor:
    """Values in units of 2**-ACT_BITS on a [0, 1] scale as uint8 levels, rounded half up."""
    return _rounded(values.double() * 255, ACT_BITS).clamp_(0, 255).to(torch.uint8)


class _FixedPostFilter:
    """`transforms.PostFilter` in integers, on channel-major pixels (C, n, H, W).

    It runs on at most GROUPS pixel groups at a time: as many whole images as fit, or
    bands of rows of one image, each band with the MARGIN rows its three 3x3 layers read
    from the bands beside it. A float64 3x3 convolution unfolds its input nine times
    (0.7 GB for one 1024 px tile at once; a chunk of ten 768x512 photographs at once,
    3.2 GB at the peak of decoding), and the margins make the bands' integers those of
    the whole."""

    GROUPS, MARGIN = 128 * 512, 3  # a 1024 px tile: bands of 128 rows

    def __init__(self, post: PostFilter):
        self.first, self.rest = FixedNet(post.first), FixedNet(post.rest)
        self.quality = torch.round(post.quality.detach().double() * (1 << ACT_BITS))

    def __call__(self, pixels: torch.Tensor, quality: int) -> torch.Tensor:
        group = PostFilter.GROUP
        u = _pixel_unshuffle(pixels, group)
        _, n, rows, cols = u.shape
        images = max(1, self.GROUPS // (rows * cols))
        band = rows if images > 1 else max(1, self.GROUPS // cols)
        out = torch.empty_like(u)
        for first in range(0, n, images):
            some = slice(first, first + images)
            for top in range(0, rows, band):
                bottom = min(rows, top + band)
                start, stop = max(0, top - self.MARGIN), min(rows, bottom + self.MARGIN)
                h = self.first.channel_major(u[:, some, start:stop])
                h = h.add_(self.quality[quality][:, None, None, None]).clamp_(-CONV_LIMIT, CONV_LIMIT)
                out[:, some, top:bottom] = self.rest.channel_major(h)[:, :, top - start : bottom - start]
        return pixels.add_(_pixel_shuffle(out, group))


class FixedConvSynthesis:
    """The convolutional synthesis (`transforms.ConvSynthesis`) in integer arithmetic:
    int64 latents in units of 2**-ACT_BITS to uint8 pixels (N, C, h*s, w*s)."""

    def __init__(self, synthesis: nn.Module):
        self.linear = FixedNet(synthesis.linear)
        self.net = FixedNet(synthesis.net)
        post = getattr(synthesis, "post", None)
        self.post = None if post is None else _FixedPostFilter(post)
        self.stride = synthesis.stride

    def __call__(self, latents: torch.Tensor, quality: int) -> np.ndarray:
        """uint8 pixels (n, C, H, W) of int64 latents (n, latent, h, w); `quality`
        (0-based) is the post-filter's."""
        # Most latents are zero (97% at a middle quality on photographs), and many
        # channels are zero everywhere: the first layers skip those.
        used = (latents != 0).flatten(2).any(2).any(0).nonzero().flatten()
        x = latents.transpose(0, 1)[used].double()  # (C, n, h, w), contiguous
        blocks = self.linear.channel_major(x, used).add_(self.net.channel_major(x, used))
        half = 1 << (ACT_BITS - 1)  # + half a level: pixel centres
        if self.post is None:  # blocks become pixels as uint8: an eighth of float64's bytes to move
            return F.pixel_shuffle(to_pixels(blocks.add_(half)).transpose(0, 1), self.stride).numpy()
        pixels = self.post(_pixel_shuffle(blocks, self.stride), quality)  # (C, n, H, W), centred on 0
        return to_pixels(pixels.add_(half)).transpose(0, 1).numpy()
