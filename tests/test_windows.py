"""Training sets larger than training holds (one random window of each image), and sets
of few large images (cut into pieces for the validation split)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from latentzip import data, windows
from latentzip.image import train as training

from .conftest import in_process


def test_images_that_fit_are_kept_whole():
    assert (windows.scales([(600, 800), (64, 64)], 600 * 800 + 64 * 64) == 1).all()
    images = [np.zeros((600, 800, 3), np.uint8)]
    assert windows.within(images, 600 * 800) is images


def test_windows_share_one_scale_within_the_budget_and_none_is_narrower_than_min_side():
    sizes = [(3000, 4000), (1200, 1600), (400, 300), (64, 64)]
    budget = 2_000_000
    shares = windows.scales(sizes, budget)
    kept = sum(round(h * s) * round(w * s) for (h, w), s in zip(sizes, shares))
    assert 0.99 * budget <= kept <= 1.001 * budget  # as much as fits, and no more (but for rounding)
    assert shares[0] == pytest.approx(shares[1]) and shares[0] < 1  # the large ones alike
    assert min(400, 300) * shares[2] >= windows.MIN_SIDE and shares[3] == 1  # small images: wider, or whole


def test_when_even_the_narrowest_windows_do_not_fit_a_random_subset_is_kept():
    sizes = [(1000, 1000)] * 50
    shares = windows.scales(sizes, 10 * windows.MIN_SIDE**2, seed=3)
    assert (shares > 0).sum() == 10 and set(shares[shares > 0]) == {windows.MIN_SIDE / 1000}
    assert np.array_equal(shares, windows.scales(sizes, 10 * windows.MIN_SIDE**2, seed=3))
    assert not np.array_equal(shares, windows.scales(sizes, 10 * windows.MIN_SIDE**2, seed=4))


def _folder(path, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    path.mkdir()
    images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]
    for k, image in enumerate(images):
        Image.fromarray(image).save(path / f"p{k}.png")
    return images


def test_a_folder_larger_than_the_budget_is_read_as_windows_of_its_images(tmp_path):
    """Each image is a window of the file it came from, where its seed places it,
    the same as `within` cuts from the images in memory; a note says what was done."""
    images = _folder(tmp_path / "photos", 4, (400, 600))
    whole = data.load(str(tmp_path / "photos"), max_pixels=10**7)
    assert whole.notes == () and np.array_equal(whole.images, np.stack(images))
    budget = 4 * 300 * 450
    cut = data.load(str(tmp_path / "photos"), max_pixels=budget, seed=7)
    assert len(cut.notes) == 1 and "window" in cut.notes[0] and "4 training images" in cut.notes[0]
    assert [im.shape for im in cut.images] == [(300, 450, 3)] * 4 and cut.names == [f"p{k}.png" for k in range(4)]
    assert isinstance(cut.images, list)  # not stacked: that would hold the windows twice
    assert all(np.array_equal(a, b) for a, b in zip(cut.images, windows.within(images, budget, seed=7)))
    assert sum(im.shape[0] * im.shape[1] for im in cut.images) <= budget


def test_training_a_collection_larger_than_it_holds_trains_on_windows(monkeypatch):
    """The Python API cuts windows too (where it used to refuse the images), from the
    run's seed, and the settings follow the windows."""
    monkeypatch.setattr(training, "TRAIN_MAX_PIXELS", 6 * 256 * 256)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (512, 512, 3), dtype=np.uint8) for _ in range(12)]
    windowed = training.check_images(images, seed=5)
    assert len(windowed) == 6 and all(im.shape == (256, 256, 3) for im in windowed)
    result = training.train(images, training.TrainConfig(epochs=1, batch_size=2, lr=0.0, seed=5), progress=False)
    assert result.config.crop == 128


def test_cli_train_says_when_it_trains_on_windows(tmp_path, capsys, monkeypatch):
    _folder(tmp_path / "photos", 4, (320, 320))
    args = ["train", "--data", str(tmp_path / "photos"), "-o", str(tmp_path / "m.model"), "--epochs", "1",
            "--batch-size", "2", "--lr", "0"]
    monkeypatch.setattr(training, "TRAIN_MAX_PIXELS", 4 * 256 * 256)
    status, err = in_process(capsys, *args)
    assert status == 0, err
    assert "note: the 4 training images hold 0.41 megapixels, more than the 0.26 latentzip trains on at once: " \
           "training on one random window of each, 80% of its sides (at least 256 px)" in err


def test_pieces_tile_each_image_at_least_min_side_a_side():
    rng = np.random.default_rng(1)
    large, narrow = rng.integers(0, 256, (600, 700, 3), np.uint8), rng.integers(0, 256, (300, 900, 3), np.uint8)
    cut = windows.pieces([large, narrow])
    assert len(cut) == 2 * 2 + 1 * 3 and all(min(p.shape[:2]) >= min(windows.MIN_SIDE, 300) for p in cut)
    assert np.array_equal(np.concatenate([np.concatenate(cut[0:2], 1), np.concatenate(cut[2:4], 1)], 0), large)
    assert np.array_equal(np.concatenate(cut[4:], 1), narrow)
    whole = large[:300, :300]
    assert len(windows.pieces([whole])) == 1 and np.array_equal(windows.pieces([whole])[0], whole)


def test_one_large_image_trains_a_conv_model_split_by_the_piece():
    """One scene is enough for a conv model: validation takes pieces of it. One small
    image, or one image for a dense model, is refused with a line that says why."""
    image = np.random.default_rng(2).integers(0, 256, (600, 700, 3), np.uint8)
    cfg = training.choose(training.TrainConfig(), [image])
    val, fit = training.split([image], cfg)
    assert cfg.arch == "conv" and (len(val), len(fit)) == (1, 3)
    with pytest.raises(training.LatentzipError, match="or one of at least 512 pixels on a side"):
        training.choose(training.TrainConfig(), [image[:300, :300]])
    with pytest.raises(training.LatentzipError, match="need at least 2 training images$"):
        training.train(np.zeros((1, 28, 28, 1), np.uint8), training.TrainConfig(epochs=1), progress=False)
