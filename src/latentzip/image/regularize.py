"""Training-time regularizers: sparse and contractive penalties, denoising corruption.

Each is a classic autoencoder variant. In latentzip they are added to the rate-distortion
loss, so a sparse or contractive model is still a real codec with a real bitstream.
"""

from __future__ import annotations

import torch

REGULARIZERS = ("none", "sparse", "contractive")
NOISES = ("gaussian", "salt-pepper")


def sparse_penalty(y: torch.Tensor) -> torch.Tensor:
    """Mean L1 norm of the code per image: pushes most activations to zero."""
    return y.abs().flatten(1).sum(1).mean()


def contractive_penalty(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased estimate of the squared Frobenius norm of the encoder Jacobian dy/dx.

    For v ~ N(0, I), E ||J^T v||^2 = ||J||_F^2, so one vector-Jacobian product per step
    works for every architecture (the closed form exists only for one sigmoid layer).
    `x` must have requires_grad set before the encoder ran."""
    v = torch.randn_like(y)
    (jtv,) = torch.autograd.grad(y, x, v, create_graph=True)
    return jtv.pow(2).flatten(1).sum(1).mean()


def corrupt(x: torch.Tensor, level: float, kind: str = "gaussian") -> torch.Tensor:
    """Noisy copy of images in [0, 1], for training denoising autoencoders.

    'gaussian' adds N(0, level^2); 'salt-pepper' sets a fraction `level` of pixels to 0
    or 1 at random."""
    if level <= 0:
        return x
    if kind == "gaussian":
        return (x + level * torch.randn_like(x)).clamp(0.0, 1.0)
    if kind == "salt-pepper":
        hit = torch.rand_like(x) < level
        salt = (torch.rand_like(x) < 0.5).to(x.dtype)
        return torch.where(hit, salt, x)
    raise ValueError(f"unknown noise kind {kind!r}; choose one of {', '.join(NOISES)}")
