"""Watermark removal: the marks, the network and its file, training, the verbs, bad input."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import latentzip
from latentzip import data
from latentzip.apps import MarkRemover, Marks, UNetTrainConfig, denoise, load_denoiser, train_unmarker, unet, watermark
from latentzip.apps import marktrain
from latentzip.apps.marknet import mark, unmix
from latentzip.apps.marks import OPACITY
from latentzip.errors import LatentzipError, ModelError
from latentzip.image.train import TrainConfig

from .conftest import in_process, run_cli

TINY = UNetTrainConfig(widths=(8, 16), steps=150, crop=32, batch_size=8, lr=3e-3, seed=1)


@pytest.fixture(scope="module")
def trained(photos):
    return train_unmarker(photos, TINY, progress=False)


@pytest.fixture(scope="module")
def model_path(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("watermark") / "marks.model"
    trained.model.save(path)
    return path


# --- the marks ---------------------------------------------------------------------------


def test_marks_blend_like_one_layer_after_another(photos):
    marks = Marks.default()
    rng = np.random.default_rng(3)
    alpha, colour = marks.layer(300, 200, rng)
    assert alpha.shape == (300, 200) and colour.shape == (300, 200, 3)
    assert 0 < (alpha > 0).mean() < 1 and alpha.max() <= 1 - (1 - OPACITY[1]) ** 3 + 1e-6
    assert colour.min() >= 0 and colour.max() <= 1 + 1e-6
    # two marks laid one after the other are the one layer _blend keeps
    from latentzip.apps.marks import _blend

    x = photos[0].astype(np.float32) / 255.0
    first, second = np.zeros((48, 48), np.float32), np.zeros((48, 48), np.float32)
    first[5:30, 5:30], second[20:40, 10:45] = 0.6, 0.5
    red, blue = np.array([1, 0, 0], np.float32), np.array([0, 0, 1], np.float32)
    by_hand = (1 - second[..., None]) * ((1 - first[..., None]) * x + first[..., None] * red) + second[..., None] * blue
    a, c = np.zeros((48, 48), np.float32), np.zeros((48, 48, 3), np.float32)
    _blend(a, c, first, red, 0, 0)
    _blend(a, c, second, blue, 0, 0)
    assert np.abs((1 - a[..., None]) * x + a[..., None] * c - by_hand).max() < 1e-5


def test_watermark_is_reproducible_and_touches_only_the_marks(photos):
    rgba = np.concatenate([photos[1], np.full((48, 48, 1), 77, np.uint8)], axis=-1)
    images = [photos[0], photos[2][..., 0], rgba]
    marked, covers = watermark(images, seed=4)
    again, _ = watermark(images, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(marked, again))
    for image, made, cover in zip(images, marked, covers):
        assert made.shape == image.shape and made.dtype == np.uint8 and cover.shape == image.shape[:2]
        assert np.array_equal(made[cover == 0], image[cover == 0])
    assert np.array_equal(marked[2][..., 3], rgba[..., 3])  # alpha kept
    with pytest.raises(LatentzipError, match="uint8"):
        watermark([photos[0].astype(np.float32)])


def test_marks_from_a_directory(tmp_path):
    import matplotlib

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    (tmp_path / "fonts").mkdir()
    (tmp_path / "fonts" / "mine.ttf").write_bytes(font.read_bytes())
    logo = np.zeros((20, 30, 4), np.uint8)
    logo[5:15, 5:25] = (200, 30, 30, 255)
    Image.fromarray(logo).save(tmp_path / "logo.png")
    only = Marks.from_dir(tmp_path, with_default=False)
    assert [p.name for p in only.fonts] == ["mine.ttf"] and [p.name for p in only.logos] == ["logo.png"]
    assert only.describe() == "text in 1 fonts, 1 logos"
    assert len(Marks.from_dir(tmp_path).fonts) == len(Marks.default().fonts) + 1
    marked, covers = watermark([np.zeros((200, 200, 3), np.uint8)] * 6, only, seed=0)
    assert any(c.max() > 0 for c in covers)
    (tmp_path / "empty").mkdir()
    for where, words in ((tmp_path / "empty", "holds no fonts"), (tmp_path / "none", "no directory")):
        with pytest.raises(LatentzipError, match=words):
            Marks.from_dir(where)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.ttf").write_bytes(b"not a font")
    with pytest.raises(LatentzipError, match="cannot read the font"):
        watermark([np.zeros((64, 64, 3), np.uint8)] * 4, Marks.from_dir(tmp_path / "bad", with_default=False))


# --- the network, cleaning, the file -----------------------------------------------------


def test_the_image_under_a_mark_is_solved_for():
    rng = np.random.default_rng(0)
    clean = torch.from_numpy(rng.random((1, 3, 16, 16), np.float32))
    alpha = torch.from_numpy(rng.uniform(0, 0.7, (1, 1, 16, 16)).astype(np.float32))
    colour = torch.from_numpy(rng.random((1, 3, 16, 16), np.float32))
    marked = (1 - alpha) * clean + alpha * colour
    assert float((unmix(marked, alpha, colour) - clean).abs().max()) < 1e-5


def test_training_learns_where_the_marks_are(trained, photos):
    assert trained.steps == TINY.steps and trained.images == len(photos) and not trained.stopped_early
    assert trained.model.meta["train"]["noise_kind"] == "watermark"
    marked, covers = watermark(list(photos), seed=9)
    with torch.no_grad():
        found = [mark(trained.model.net(torch.from_numpy(m).permute(2, 0, 1)[None].float() / 255))[0][0, 0].numpy()
                 for m in marked]
    inside = np.mean([f[c > 0.1].mean() for f, c in zip(found, covers) if (c > 0.1).any()])
    outside = np.mean([f[c == 0].mean() for f, c in zip(found, covers)])
    assert inside > 2 * outside  # it sees the marks (an untrained network: 1.0), though a few steps cannot yet remove them


def test_the_coverage_threshold_is_chosen_on_images_set_aside(trained, photos):
    """Eight images are too few to spare any: the threshold is chosen on the training
    images, marked afresh. It gives the best mean PSNR of the thresholds tried, and
    leaving every pixel alone (1.0) is one of them."""
    meta = trained.model.meta
    assert meta["calibration"]["images"] == len(photos) and meta["calibration"]["psnr"] >= meta["calibration"]["psnr_marked"]
    assert meta["coverage_threshold"] in marktrain.THRESHOLDS and trained.model.threshold == meta["coverage_threshold"]
    again = marktrain.calibrate(trained.model, list(photos), Marks.default(), TINY.seed)
    assert again == {"coverage_threshold": meta["coverage_threshold"],
                     "calibration": {k: v for k, v in meta["calibration"].items() if k != "set_aside"}}
    x = torch.from_numpy(photos[0]).permute(2, 0, 1)[None].float() / 255
    assert torch.equal(trained.model.clean(x, threshold=1.0), x)
    many = [np.ascontiguousarray(np.rot90(p, k)) for p in photos for k in (0, 1)][:12]
    quick = train_unmarker(many, replace(TINY, steps=2), progress=False)
    assert quick.images == 11 and quick.model.meta["calibration"] | {"psnr": 0, "psnr_marked": 0} == {
        "images": 1, "set_aside": True, "psnr": 0, "psnr_marked": 0}  # the tenth image


def test_any_size_keeps_alpha_and_unmarked_pixels(trained, photos):
    rgba = np.concatenate([photos[3][:5, :7], np.full((5, 7, 1), 90, np.uint8)], axis=-1)
    grey = photos[2][:37, :29, 0]
    out = denoise(trained.model, [photos[1][:37, :29], grey, grey[..., None], rgba, photos[4][:1, :1]])
    assert [o.shape for o in out] == [(37, 29, 3), (37, 29), (37, 29, 1), (5, 7, 4), (1, 1, 3)]
    assert np.array_equal(out[1], out[2][..., 0])
    assert np.array_equal(out[3][..., 3], rgba[..., 3])
    x = torch.from_numpy(photos[1]).permute(2, 0, 1)[None].float() / 255
    alpha, _ = mark(trained.model.run(x))
    plain = (alpha[0, 0] < trained.model.threshold).numpy()
    assert np.array_equal(denoise(trained.model, [photos[1]])[0][plain], photos[1][plain])  # exactly as they came
    with pytest.raises(LatentzipError, match="uint8"):
        denoise(trained.model, [photos[0].astype(np.float32)])


def test_tiles_leave_no_seams(trained, photos, monkeypatch):
    x = torch.from_numpy(np.concatenate([photos[5], photos[6]], axis=1)).permute(2, 0, 1)[None].float() / 255
    whole = trained.model.run(x)
    monkeypatch.setattr(unet, "TILE", 8)
    monkeypatch.setattr(unet, "MARGIN", 24)  # the tiny network sees less than this
    assert float((trained.model.run(x) - whole).abs().max()) < 1e-3


def test_model_file_round_trip_and_kinds(trained, model_path, photos, model_file):
    loaded = load_denoiser(model_path)
    assert isinstance(loaded, MarkRemover) and loaded.meta["steps"] == TINY.steps
    for a, b in zip(denoise(loaded, list(photos[:3])), denoise(trained.model, list(photos[:3])), strict=True):
        assert np.array_equal(a, b)
    with pytest.raises(ModelError, match="is a watermark-removal model, not an image codec: use it with latentzip denoise"):
        latentzip.load_model(model_path)
    with pytest.raises(ModelError, match="is an image codec, not a watermark-removal model"):
        MarkRemover.load(model_file)
    with pytest.raises(ModelError, match="shipped image codec"):
        MarkRemover.load("fashion-mnist:q1")
    blob = model_path.read_bytes()
    for damaged in (blob[: len(blob) // 2], b"\0" * 64):
        with pytest.raises(ModelError):
            MarkRemover.from_bytes(damaged)


def test_codec_training_refuses_watermarks():
    with pytest.raises(LatentzipError, match="train_unmarker"):
        TrainConfig(noise_kind="watermark")
    with pytest.raises(LatentzipError, match="unknown noise kind"):
        TrainConfig(noise_kind="blur")


# --- the verbs -------------------------------------------------------------------------------



def test_train_and_denoise_verbs(tmp_path, capsys, photos):
    (tmp_path / "train").mkdir()
    for i, image in enumerate(photos[:4]):
        data.write_png(tmp_path / "train" / f"p{i}.png", image)
    model = tmp_path / "w.model"
    status, err = in_process(capsys, "train", "--noise-kind", "watermark", "--data", str(tmp_path / "train"), "--steps", "5",
                      "--hidden", "8", "16", "--crop", "32", "-o", str(model))
    assert status == 0, err
    assert "watermark-removal network" in err and "on 4 images" in err and "5 steps" in err, err
    assert "on 4 training images marked afresh" in err, err  # the threshold's choice, said (too few to set any aside)
    marked, _ = watermark([photos[5][:33, :47]], seed=2)
    (tmp_path / "in").mkdir()
    data.write_png(tmp_path / "in" / "odd.png", marked[0])
    proc = run_cli("denoise", "-m", str(model), str(tmp_path / "in"), "-o", str(tmp_path / "out"))  # as a user would
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == [f"1 image(s) -> {tmp_path / 'out'}/ ({model}: watermarks removed)"]
    out = np.asarray(Image.open(tmp_path / "out" / "odd.png"))
    assert np.array_equal(out, denoise(MarkRemover.load(model), marked)[0])


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "--noise-kind", "watermark", "--noise", "0.3", "--data", "{dir}", "-o", "{tmp}/w.model"],
         ["--noise does not apply to --noise-kind watermark"]),
        (["train", "--noise-kind", "watermark", "--arch", "conv", "--data", "{dir}", "-o", "{tmp}/w.model"],
         ["--arch does not apply"]),
        (["train", "--marks", "{dir}", "--data", "{dir}", "-o", "{tmp}/w.model"], ["--marks does not apply to --task codec"]),
        (["train", "--task", "colorize", "--noise-kind", "watermark", "--data", "{dir}", "-o", "{tmp}/w.model"],
         ["--noise-kind does not apply to --task colorize"]),
        (["train", "--noise-kind", "watermark", "--marks", "{tmp}/none", "--data", "{dir}", "-o", "{tmp}/w.model"],
         ["no directory"]),
        (["encode", "-m", "{model}", "{dir}", "-o", "{tmp}/x.ltz"], ["is a watermark-removal model", "denoise"]),
        (["colorize", "-m", "{model}", "{dir}", "-o", "{tmp}/out"], ["is a watermark-removal model"]),
        (["denoise", "-m", "{tmp}/bad.png", "{dir}", "-o", "{tmp}/out"], ["not a latentzip model"]),
        (["denoise", "-m", "{model}", "{tmp}/bad.png", "-o", "{tmp}/out"], ["bad.png", "not an image"]),
    ],
)
def test_bad_input(tmp_path, capsys, model_path, photos, args, words):
    (tmp_path / "in").mkdir()
    data.write_png(tmp_path / "in" / "p.png", photos[0])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    before = sorted(p.name for p in tmp_path.iterdir())
    filled = [a.format(model=model_path, dir=tmp_path / "in", tmp=tmp_path) for a in args]
    status, err = in_process(capsys, *filled)
    assert status == 1 and err.startswith("latentzip: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, partial or whole

