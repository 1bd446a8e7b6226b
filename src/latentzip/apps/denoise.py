"""Denoising, by either of two kinds of model.

- A codec trained on corrupted inputs (`TrainConfig(noise=...)`, gaussian or
  salt-and-pepper noise) learned to reconstruct the clean image, so its reconstruction
  of a noisy image is the cleaned one.
- A watermark-removal network (`train_unmarker`, `latentzip train --noise-kind
  watermark`) finds the marks laid over an image and solves for the image under them;
  pixels it finds no mark on come back unchanged.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import LatentzipError, printable
from ..fsio import read_bytes
from ..image.codec import ImageCodec, ImagesLike
from ..image.modelfile import MAX_BYTES, UNMARKER, kind_of
from ..image.regularize import NOISES, corrupt
from .marknet import MarkRemover
from .progress import chunks, each
from .unet import as_rgb, checked

Denoiser = ImageCodec | MarkRemover


def load_denoiser(model: str | os.PathLike[str]) -> Denoiser:
    """A watermark-removal model file, or else any codec `load_model` takes."""
    from ..image import zoo

    if not (isinstance(model, str) and model in zoo.names()) and os.path.isfile(model):  # read once, either kind
        data, name = read_bytes(model, MAX_BYTES), printable(os.fspath(model))
        return (MarkRemover if kind_of(data, name) is UNMARKER else ImageCodec).from_bytes(data, name=name)
    return zoo.load_model(model)


def denoise(model: Denoiser, images: ImagesLike, progress: bool = False) -> list[np.ndarray]:
    """Cleaned uint8 images in input order, each the shape of its input.

    With a codec this is exactly what decode(encode(images, effort=0)) gives with the
    network alone ((H, W) grey or (H, W, 3)): the rounding of the latents is part of
    what drops the noise. A refinement bound (a shipped preset's) is not used, as it
    would put the noise back, nor is fitting the latents (a higher effort), which fits
    them to the noise. A watermark-removal model takes images of any size, colour or grey, and
    keeps their alpha as it is."""
    if isinstance(model, MarkRemover):
        return [_unmarked(model, image) for image in each(images, "denoise", progress)]
    plain = model.bounded(None).at_effort(0)
    out: list[np.ndarray] = []
    for chunk in chunks(images, "denoise", progress):
        out.extend(plain.reconstruct(chunk))
    return out


def trained_noise(model: Denoiser) -> tuple[float, str] | None:
    """(level, kind) of the corruption the model was trained to remove (a watermark
    model: level 1.0, kind "watermark"); None when it was trained on clean images (it
    then only reconstructs) or its training is unknown."""
    if isinstance(model, MarkRemover):
        return 1.0, "watermark"
    train = model.meta.get("train", {})
    level = float(train.get("noise", 0.0))
    return (level, train.get("noise_kind", "gaussian")) if level > 0 else None


def _unmarked(model: MarkRemover, given: np.ndarray) -> np.ndarray:
    image = checked(given, "denoise")
    grey = image.shape[-1] in (1, 2)
    x = torch.from_numpy(np.ascontiguousarray(as_rgb(image))).permute(2, 0, 1)[None].float() / 255.0
    clean = (model.clean(x)[0].permute(1, 2, 0) * 255.0).round().to(torch.uint8).numpy()
    out = image.copy()
    out[..., : 1 if grey else 3] = np.round(clean.mean(-1, keepdims=True)) if grey else clean
    return out.reshape(np.shape(given))


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
