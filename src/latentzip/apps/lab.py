"""CIELAB in PyTorch: colourisation predicts the chroma (a, b) of an image from its
lightness L, in the space where CIEDE2000 measures colour error.

sRGB with the D65 white, as scikit-image's `rgb2lab` and `lab2rgb` (the tests hold these
to them); written for tensors so that training converts its batches on its device, and
so that `to_rgb` can pull chroma back into the sRGB gamut instead of clipping, which
keeps each pixel's lightness. Tensors are (N, C, H, W) with values in [0, 1] for RGB.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import data

XYZ_FROM_RGB = torch.tensor([[0.412453, 0.357580, 0.180423],
                             [0.212671, 0.715160, 0.072169],
                             [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
RGB_FROM_XYZ = torch.linalg.inv(XYZ_FROM_RGB)
WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)  # D65, 2-degree observer
EPSILON, KAPPA = 0.008856, 7.787  # where CIELAB's cube root turns linear, and the line's slope
GAMUT_STEPS = 12  # halvings of the chroma scale when a colour lies outside sRGB: 1/4096 of it


def linear(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB values to linear light."""
    return torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def encoded(light: torch.Tensor) -> torch.Tensor:
    """Linear light in [0, 1] to sRGB values."""
    light = light.clamp(0.0, 1.0)
    return torch.where(light > 0.0031308, 1.055 * light.clamp_min(0.0031308) ** (1 / 2.4) - 0.055, light * 12.92)


def _mix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", matrix.to(x), x)


def _f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > EPSILON, t.clamp_min(EPSILON) ** (1 / 3), KAPPA * t + 16 / 116)


def _f_inverse(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > 0.2068966, f**3, (f - 16 / 116) / KAPPA)


def to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (N, 3, H, W) to CIELAB: L in [0, 100], a and b roughly in [-110, 110]."""
    xyz = _mix(XYZ_FROM_RGB, linear(rgb)) / WHITE.to(rgb).view(1, 3, 1, 1)
    fx, fy, fz = _f(xyz).unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def lightness(grey: torch.Tensor) -> torch.Tensor:
    """L (N, 1, H, W) of grey sRGB values (N, 1, H, W): the lightness of (g, g, g)."""
    return 116 * _f(linear(grey)) - 16


def _linear_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Linear RGB of CIELAB colours, unclipped: outside [0, 1] where out of gamut."""
    fy = (lab[:, 0] + 16) / 116
    f = torch.stack([fy + lab[:, 1] / 500, fy, fy - lab[:, 2] / 200], dim=1)
    return _mix(RGB_FROM_XYZ, _f_inverse(f) * WHITE.to(lab).view(1, 3, 1, 1))


def to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB (N, 3, H, W) to sRGB in [0, 1], keeping each pixel's lightness.

    Where a colour lies outside sRGB, its chroma is scaled down (by bisection, a grey of
    the same L being always inside) until it fits, rather than clipping each channel,
    which would change L."""
    light, chroma = lab[:, :1], lab[:, 1:]
    low = torch.zeros_like(light)  # a scale known to fit
    high = torch.ones_like(light)

    def fits(scale: torch.Tensor) -> torch.Tensor:
        rgb = _linear_rgb(torch.cat([light, chroma * scale], dim=1))
        return ((rgb >= -1e-6) & (rgb <= 1 + 1e-6)).all(dim=1, keepdim=True)

    whole = fits(high)
    if not bool(whole.all()):
        for _ in range(GAMUT_STEPS):
            middle = (low + high) / 2
            inside = fits(middle)
            low, high = torch.where(inside, middle, low), torch.where(inside, high, middle)
    scale = torch.where(whole, torch.ones_like(low), low)
    return encoded(_linear_rgb(torch.cat([light, chroma * scale], dim=1)))


def as_tensor(image: np.ndarray) -> torch.Tensor:
    """A uint8 image (H, W, C) as a tensor (1, C, H, W) of float64 in [0, 1]."""
    return torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)[None].double() / 255.0


def as_grey(image: np.ndarray) -> np.ndarray:
    """The uint8 (H, W, 1) grey image of the same lightness as a uint8 image (H, W) or
    (H, W, C): grey as it is, colour by its luminance (what CIELAB's L is computed from);
    alpha, if any, is dropped."""
    image = image[..., None] if image.ndim == 2 else image
    if image.shape[-1] in (1, 2):
        return np.ascontiguousarray(image[..., :1])
    luminance = _mix(XYZ_FROM_RGB[1:2], linear(as_tensor(image[..., :3])))
    return (encoded(luminance)[0].permute(1, 2, 0) * 255.0).round().to(torch.uint8).numpy()


def is_grey(image: np.ndarray) -> bool:
    """Whether a uint8 (H, W) or (H, W, C) image holds no colour: one grey channel, or
    R = G = B."""
    return image.ndim == 2 or image.shape[-1] in (1, 2) or data.is_grey(image[..., :3])
