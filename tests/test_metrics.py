import math

import numpy as np
import pytest

from latentzip import metrics


def test_mse_of_known_arrays():
    a = np.zeros((2, 2), np.uint8)
    b = np.array([[0, 2], [4, 0]], np.uint8)
    assert metrics.mse(a, b) == 5.0  # (0 + 4 + 16 + 0) / 4


def test_mse_does_not_wrap_around_uint8():
    a = np.zeros((3, 3), np.uint8)
    b = np.full((3, 3), 255, np.uint8)
    assert metrics.mse(a, b) == 255.0**2
    assert metrics.mse(b, a) == 255.0**2
    assert metrics.psnr(a, b) == 0.0


def test_mse_rejects_different_shapes():
    with pytest.raises(ValueError):
        metrics.mse(np.zeros((2, 2)), np.zeros((2, 3)))


def test_psnr_of_known_mse():
    a = np.zeros((4, 4), np.uint8)
    assert metrics.psnr(a, a + 1) == pytest.approx(20 * math.log10(255))  # MSE 1: 48.13 dB
    assert metrics.psnr_from_mse(255.0**2 / 100) == pytest.approx(20.0)


def test_psnr_of_identical_images_is_infinite_but_capped_in_means():
    a = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert metrics.psnr(a, a) == math.inf
    batch = np.stack([a, a])
    noisy = np.stack([a, a + 1])
    expected = (metrics.PSNR_CAP + 20 * math.log10(255)) / 2
    assert metrics.mean_psnr(batch, noisy) == pytest.approx(expected)
    capped_at_60 = (60 + 20 * math.log10(255)) / 2
    assert metrics.mean_psnr(batch, noisy, cap=60.0) == pytest.approx(capped_at_60)


def test_mean_psnr_averages_per_image_and_pooled_psnr_averages_mse():
    a = np.zeros((2, 5, 5), np.uint8)
    b = a.copy()
    b[0] += 1  # MSE 1
    b[1] += 3  # MSE 9
    per_image = [20 * math.log10(255), 10 * math.log10(255**2 / 9)]
    assert metrics.mean_psnr(a, b) == pytest.approx(np.mean(per_image))
    assert metrics.psnr_of_mean_mse(a, b) == pytest.approx(10 * math.log10(255**2 / 5))
    assert metrics.psnr_of_mean_mse(a, b) < metrics.mean_psnr(a, b)


def test_batches_may_be_lists_of_different_sizes():
    a = [np.zeros((4, 4), np.uint8), np.zeros((6, 3, 3), np.uint8)]
    b = [x + 1 for x in a]
    assert metrics.mean_psnr(a, b) == pytest.approx(20 * math.log10(255))


def test_batch_errors():
    a = np.zeros((2, 4, 4), np.uint8)
    with pytest.raises(ValueError):
        metrics.mean_psnr(a, a[:1])
    with pytest.raises(ValueError):
        metrics.mean_ssim(a[:0], a[:0])


@pytest.mark.parametrize("shape", [(8, 8), (28, 28), (5, 9), (28, 28, 3)])
def test_ssim_of_identical_images_is_one(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert metrics.ssim(image, image) == pytest.approx(1.0)


def test_ssim_drops_with_noise_and_means_over_the_batch():
    rng = np.random.default_rng(1)
    clean = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    noise = rng.integers(-40, 41, clean.shape)
    noisy = np.clip(clean + noise, 0, 255).astype(np.uint8)
    scores = [metrics.ssim(x, y) for x, y in zip(clean, noisy)]
    assert all(0 < s < 1 for s in scores)
    assert metrics.mean_ssim(clean, noisy) == pytest.approx(np.mean(scores))


def test_ssim_rejects_images_smaller_than_its_window_and_its_mean_leaves_them_out():
    """`latentzip eval` on a folder with a 1x1 image among others crashed on it."""
    with pytest.raises(ValueError):
        metrics.ssim(np.zeros((2, 8), np.uint8), np.zeros((2, 8), np.uint8))
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (8, 8), dtype=np.uint8), np.zeros((1, 1), np.uint8)]
    noisy = [np.clip(images[0] + rng.integers(-20, 21, (8, 8)), 0, 255).astype(np.uint8), np.ones((1, 1), np.uint8)]
    assert metrics.mean_ssim(images, noisy) == pytest.approx(metrics.ssim(images[0], noisy[0]))
    assert metrics.mean_ssim(images[1:], noisy[1:]) is None


def test_rate_arithmetic():
    assert metrics.bpp(98, 28 * 28) == 1.0
    assert metrics.bpp(3 * 512 * 512, 512 * 512) == 24.0  # per pixel, not per channel
    assert metrics.bpb(1, 8) == 1.0
    assert metrics.bpb(100, 100) == 8.0
    assert metrics.ratio(100, 25) == 4.0
    with pytest.raises(ValueError):
        metrics.bpp(1, 0)
