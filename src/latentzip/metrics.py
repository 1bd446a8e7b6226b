"""Distortion and rate measures shared by `eval`, the benchmarks and the report.

Images are 8-bit: arrays of shape (H, W) or (H, W, C) with peak value 255. Functions named
`mean_*` take batches and treat the first axis (or the outer sequence) as the image index,
so a batch may also be a list of images of different sizes.

Rates are counted per real pixel: `bpp` divides by H*W of the original image, never by
channels and never by any padding a codec adds.

Images with alpha, (H, W, 2) grey + alpha or (H, W, 4) RGBA, are compared as they show:
colour premultiplied by alpha (the image composited over black), plus alpha itself, so
the colour of a transparent pixel counts for nothing and a half-transparent one half.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

PEAK = 255.0

PSNR_CAP = 100.0
"""dB given to an exactly reconstructed image when averaging PSNR over a batch.

A single lossless image would otherwise make the batch mean infinite. 100 dB is far above
any lossy 8-bit result (an error of one level in one pixel of a 28x28 image is ~77 dB).
"""

Batch = np.ndarray | Sequence[np.ndarray]


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over every pixel and channel, in squared 8-bit levels (of what
    shows, for images with alpha)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    diff = visible(a) - visible(b)
    return float(np.mean(diff * diff))


def max_abs_error(a: np.ndarray, b: np.ndarray) -> int:
    """The largest |a - b| of one image pair in 8-bit levels, of what shows: with alpha,
    colour where `a` is not fully transparent (a codec may put any colour under alpha
    0, and latentzip does) and alpha everywhere. What `--max-error` bounds."""
    a, b = np.asarray(a).astype(np.int16), np.asarray(b).astype(np.int16)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    diff = np.abs(a - b)
    if diff.ndim == 3 and diff.shape[-1] in (2, 4):
        diff[..., :-1][a[..., -1] == 0] = 0
    return int(diff.max(initial=0))


def visible(image: np.ndarray) -> np.ndarray:
    """An image as float64; with alpha, colour premultiplied by alpha (see above)."""
    out = np.asarray(image).astype(np.float64)
    if out.ndim == 3 and out.shape[-1] in (2, 4):
        out[..., :-1] *= out[..., -1:] / PEAK
    return out


def psnr_from_mse(error: float) -> float:
    """PSNR in dB for peak 255; infinite for zero error."""
    if error == 0:
        return float("inf")
    return float(10.0 * np.log10(PEAK * PEAK / error))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of one image in dB; `inf` when the images are identical."""
    return psnr_from_mse(mse(a, b))


def _pairs(batch_a: Batch, batch_b: Batch) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Image pairs of two non-empty, equally long batches."""
    if len(batch_a) != len(batch_b):
        raise ValueError(f"batch sizes differ: {len(batch_a)} vs {len(batch_b)}")
    if len(batch_a) == 0:
        raise ValueError("empty batch")
    return zip(batch_a, batch_b)


def per_image_mse(batch_a: Batch, batch_b: Batch) -> np.ndarray:
    """MSE of each image pair in two equally long batches."""
    return np.array([mse(a, b) for a, b in _pairs(batch_a, batch_b)], dtype=np.float64)


def mean_psnr(batch_a: Batch, batch_b: Batch, cap: float = PSNR_CAP) -> float:
    """Mean over images of per-image PSNR, each capped at `cap` dB.

    This is the convention of the learned-compression literature (Kodak, CLIC tables): it
    weights every image equally, unlike `psnr_of_mean_mse`.
    """
    return float(np.mean([min(psnr_from_mse(e), cap) for e in per_image_mse(batch_a, batch_b)]))


def psnr_of_mean_mse(batch_a: Batch, batch_b: Batch) -> float:
    """PSNR of the mean per-image MSE: the whole batch scored as one signal.

    Always <= `mean_psnr` (Jensen), since a few bad images dominate the mean error.
    """
    return psnr_from_mse(float(np.mean(per_image_mse(batch_a, batch_b))))


SSIM_MIN_SIDE = 3  # the smallest window SSIM has


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of one image with scikit-image's defaults (uniform window, 7x7 where it fits).

    The window shrinks to the largest odd size that fits tiny images (e.g. 8x8 keeps 7,
    5x5 gets 5); RGB is scored per channel and averaged.
    """
    from skimage.metrics import structural_similarity  # scikit-image takes 0.2 s to import

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    side = min(a.shape[:2])
    win_size = min(7, side if side % 2 else side - 1)
    if win_size < SSIM_MIN_SIDE:
        raise ValueError(f"image {a.shape} is too small for SSIM (needs at least 3x3)")
    channel_axis = -1 if a.ndim == 3 else None
    return float(
        structural_similarity(a, b, win_size=win_size, data_range=PEAK, channel_axis=channel_axis)
    )


def mean_ssim(batch_a: Batch, batch_b: Batch) -> float | None:
    """Mean over images of per-image SSIM, of the images it is defined for (at least
    SSIM_MIN_SIDE pixels a side, so a collection with a 1x1 image among it still has
    one); None where it is defined for none."""
    scores = [ssim(a, b) for a, b in _pairs(batch_a, batch_b) if min(np.shape(a)[:2]) >= SSIM_MIN_SIDE]
    return float(np.mean(scores)) if scores else None


def ciede2000(a: np.ndarray, b: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference over the pixels of two RGB images (scikit-image's
    `deltaE_ciede2000` on CIELAB): about 1 is a just-noticeable difference."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"CIEDE2000 compares two RGB images of one shape, got {a.shape} and {b.shape}")
    return float(np.mean(deltaE_ciede2000(rgb2lab(a), rgb2lab(b))))


def mean_ciede2000(batch_a: Batch, batch_b: Batch) -> float:
    """Mean over images of each image's mean CIEDE2000 colour difference."""
    return float(np.mean([ciede2000(a, b) for a, b in _pairs(batch_a, batch_b)]))


def bpp(num_bytes: int, num_pixels: int) -> float:
    """Bits per pixel, where a pixel is one of the H*W positions of the real image."""
    if num_pixels <= 0:
        raise ValueError("num_pixels must be positive")
    return 8.0 * num_bytes / num_pixels


def bpb(num_bytes: int, num_input_bytes: int) -> float:
    """Bits per input byte, the rate measure of lossless byte compression (8 = no gain)."""
    if num_input_bytes <= 0:
        raise ValueError("num_input_bytes must be positive")
    return 8.0 * num_bytes / num_input_bytes


def ratio(original_bytes: int, compressed_bytes: int) -> float:
    """Compression ratio original/compressed (higher is better)."""
    if compressed_bytes <= 0:
        raise ValueError("compressed_bytes must be positive")
    return original_bytes / compressed_bytes


def knn_accuracy(
    reference: np.ndarray, reference_labels: np.ndarray, queries: np.ndarray, query_labels: np.ndarray, k: int = 5
) -> float:
    """Share of queries whose k nearest reference codes vote for their own label: how much
    class information an embedding keeps, as a downstream classifier would see it."""
    from sklearn.neighbors import KNeighborsClassifier

    k = min(k, len(reference))
    return float(KNeighborsClassifier(n_neighbors=k).fit(reference, reference_labels).score(queries, query_labels))


def trustworthiness(pixels: np.ndarray, codes: np.ndarray, k: int = 5) -> float:
    """scikit-learn's trustworthiness: 1 when the codes' k nearest neighbours were also
    neighbours among the original pixels, i.e. the embedding invents no closeness."""
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    flat = np.asarray(pixels).reshape(len(pixels), -1).astype(np.float64)
    return float(sk_trustworthiness(flat, np.asarray(codes, dtype=np.float64), n_neighbors=min(k, len(flat) // 2 - 1)))
