"""Denoising: a codec trained on corrupted inputs (`TrainConfig(noise=...)`) learned to
reconstruct the clean image, so its reconstruction of a noisy image is the cleaned one."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import LatentzipError
from ..image.codec import ImageCodec, ImagesLike
from ..image.regularize import NOISES, corrupt
from .progress import chunks


def denoise(codec: ImageCodec, images: ImagesLike, progress: bool = False) -> list[np.ndarray]:
    """Cleaned uint8 images, (H, W) grey or (H, W, 3), in input order.

    This is exactly what decode(encode(images)) gives with the network alone: the
    rounding of the latents is part of what drops the noise. A refinement bound (a
    shipped preset's) is not used, as it would put the noise back."""
    plain = codec.bounded(None)
    out: list[np.ndarray] = []
    for chunk in chunks(images, "denoise", progress):
        out.extend(plain.reconstruct(chunk))
    return out


def trained_noise(codec: ImageCodec) -> tuple[float, str] | None:
    """(level, kind) of the corruption the codec was trained to remove; None when it was
    trained on clean images (it then only reconstructs) or its training is unknown."""
    train = codec.meta.get("train", {})
    level = float(train.get("noise", 0.0))
    return (level, train.get("noise_kind", "gaussian")) if level > 0 else None


def add_noise(images: np.ndarray, level: float, kind: str = "gaussian", seed: int = 0) -> np.ndarray:
    """`images` (uint8) with the corruption training uses, rounded back to uint8: test
    data that matches what a denoising model was trained for. Reproducible by `seed`."""
    if kind not in NOISES:
        raise LatentzipError(f"unknown noise kind {kind!r}; choose one of {', '.join(NOISES)}")
    if not 0 < level <= 1:
        raise LatentzipError(f"noise level must be in (0, 1], got {level}")
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise LatentzipError("images must be a uint8 array")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        noisy = corrupt(torch.from_numpy(images).float().div_(255.0), level, kind)
    return torch.round(noisy * 255.0).to(torch.uint8).numpy()
