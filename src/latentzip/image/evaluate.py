"""Measure a codec on real bitstreams: bytes, bpp, PSNR, SSIM and speed.

Rates count every byte of a real file. Two views are kept, because headers dominate
small images: one file holding all the images (the container's fixed cost shared),
and files holding one image each (what a per-image codec such as JPEG pays).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import numpy as np

from .. import container, metrics
from .codec import ImageCodec, ImagesLike

# Told as the work goes: (stage, work done since the last call, the stage's total). The
# stages are "encoding", "decoding" (pixels) and "one image per file" (images).
StagedProgress = Callable[[str, int, int], None]


@dataclass
class Evaluation:
    images: int
    pixels: int  # real H*W pixels, summed over images
    file_bytes: int  # one file holding every image
    bytes_per_image: float  # file_bytes / images
    payload_bytes_per_image: float  # the range-coded latents alone
    single_file_bytes: float  # mean size of a file holding one image
    estimated_bytes_per_image: float  # what the learned prior predicts
    bpp: float  # of the one file, per real pixel
    psnr: float  # mean of per-image PSNR, dB
    max_abs_error: int  # largest |decoded - original| of what shows (metrics.max_abs_error), grey levels
    ssim: float | None  # mean of per-image SSIM, over images of 3x3 or more (None: no such image)
    encode_seconds: float
    decode_seconds: float
    max_error: int | None = None  # the refinement layer's bound, when it coded with one

    # The decoded images, when the caller asked to keep them (not a figure: left out of as_dict).
    decoded: list[np.ndarray] | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "decoded"}


def evaluate(
    codec: ImageCodec, images: ImagesLike, singles: int = 200, keep_decoded: bool = False, max_error: int | None = None,
    progress: StagedProgress | None = None,
) -> Evaluation:
    """Code `images` through real files and compare the decoded pixels with the input.

    `singles` images (the first ones) are also coded one per file. `keep_decoded` keeps
    the decoded images on the result, for callers that show or score them. `max_error`
    codes with the refinement layer (None: the codec's own bound; see `ImageCodec.encode`).
    `progress` follows the work (see StagedProgress)."""
    told = progress or (lambda stage, done, total: None)
    batch = [np.asarray(im) for im in images]
    max_error = codec.bound_for(max_error)
    t0 = time.perf_counter()
    blob = codec.encode(batch, max_error=max_error, progress=lambda done, total: told("encoding", done, total))
    t1 = time.perf_counter()
    decoded = codec.decode(blob, progress=lambda done, total: told("decoding", done, total))
    t2 = time.perf_counter()
    header, payload = container.unpack(blob, container.Kind.IMAGES)
    n = len(batch)
    pixels = sum(im.shape[0] * im.shape[1] for im in batch)
    single = []
    for i in range(min(singles, n)):
        single.append(len(codec.encode(batch[i : i + 1], max_error=max_error)))
        told("one image per file", 1, min(singles, n))
    originals = [im[..., 0] if im.ndim == 3 and im.shape[-1] == 1 else im for im in batch]
    return Evaluation(
        images=n,
        pixels=pixels,
        file_bytes=len(blob),
        bytes_per_image=len(blob) / n,
        payload_bytes_per_image=len(payload) / n,
        single_file_bytes=float(np.mean(single)),
        estimated_bytes_per_image=codec.estimate_bits(batch, max_error) / 8 / n,
        bpp=metrics.bpp(len(blob), pixels),
        psnr=metrics.mean_psnr(originals, decoded),
        ssim=metrics.mean_ssim(originals, decoded),
        max_abs_error=max((metrics.max_abs_error(a, b) for a, b in zip(originals, decoded)), default=0),
        decoded=decoded if keep_decoded else None,
        encode_seconds=t1 - t0,
        decode_seconds=t2 - t1,
        max_error=max_error,
    )

