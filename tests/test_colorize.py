"""Colourisation: the colour space, the network and its file, training, the verbs, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import color

import latentzip
from latentzip import baselines, data
from latentzip.apps import Colorizer, UNetTrainConfig, as_grey, colorize, train_colorizer
from latentzip.apps import colornet, lab, unet
from latentzip.errors import LatentzipError, ModelError

from .conftest import in_process, run_cli

TINY = UNetTrainConfig(widths=(8, 16), steps=40, crop=32, batch_size=8, lr=3e-3, seed=1)


@pytest.fixture(scope="module")
def trained(photos):
    return train_colorizer(photos, TINY, progress=False)


@pytest.fixture(scope="module")
def model_path(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("colorize") / "colour.model"
    trained.model.save(path)
    return path


def _tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].double() / 255.0


def _lightness(rgb: np.ndarray) -> np.ndarray:
    return color.rgb2lab(rgb)[..., 0]


# --- the colour space --------------------------------------------------------------------


def test_lab_is_scikit_images(photos):
    rgb = photos[0]
    ours = lab.to_lab(_tensor(rgb))[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - color.rgb2lab(rgb)).max() < 1e-6
    back = lab.to_rgb(torch.from_numpy(color.rgb2lab(rgb)).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    assert np.abs(back - rgb / 255.0).max() < 1e-6


def test_out_of_gamut_colours_keep_their_lightness():
    rng = np.random.default_rng(0)
    light, chroma = rng.uniform(0, 100, (1, 1, 40, 40)), rng.uniform(-128, 128, (1, 2, 40, 40))
    wanted = torch.from_numpy(np.concatenate([light, chroma], axis=1))
    rgb = lab.to_rgb(wanted)
    assert float(rgb.min()) >= 0 and float(rgb.max()) <= 1
    assert float((lab.to_lab(rgb)[:, 0] - wanted[:, 0]).abs().max()) < 0.01
    with pytest.warns(UserWarning, match="negative Z"):  # scikit-image clips, and says so
        clipped = torch.from_numpy(color.lab2rgb(wanted[0].permute(1, 2, 0).numpy())).permute(2, 0, 1)[None]
    assert float((lab.to_lab(clipped)[:, 0] - wanted[:, 0]).abs().max()) > 1  # what clipping would have done


def test_grey_keeps_the_lightness_of_colour(photos):
    grey = as_grey(photos[1])
    assert grey.shape == (48, 48, 1) and grey.dtype == np.uint8
    assert np.abs(_lightness(np.repeat(grey, 3, -1)) - _lightness(photos[1])).max() < 0.5
    assert np.array_equal(as_grey(grey), grey) and np.array_equal(as_grey(grey[..., 0]), grey)


# --- the network, colouring, the file --------------------------------------------------------


def test_training_learns_colour(trained, photos):
    assert trained.steps == TINY.steps and trained.images == len(photos) and not trained.stopped_early
    made = colorize(trained.model, [as_grey(im) for im in photos])
    error = np.mean([np.abs(color.rgb2lab(m)[..., 1:] - color.rgb2lab(p)[..., 1:]).mean() for m, p in zip(made, photos)])
    grey = np.mean([np.abs(color.rgb2lab(p)[..., 1:]).mean() for p in photos])
    assert error < 0.8 * grey  # closer to the true chroma than no colour at all


def test_any_size_keeps_lightness_and_alpha(trained, photos):
    grey = as_grey(photos[2])[:37, :29]  # odd sides, not multiples of the stride
    rgba = np.concatenate([photos[3][:5, :7], np.full((5, 7, 1), 90, np.uint8)], axis=-1)
    out = colorize(trained.model, [grey, grey[..., 0], rgba, photos[4][:1, :1]])
    assert [o.shape for o in out] == [(37, 29, 3), (37, 29, 3), (5, 7, 4), (1, 1, 3)]
    assert np.array_equal(out[0], out[1])
    assert np.abs(as_grey(out[0]).astype(int) - grey).max() <= 1
    assert np.array_equal(out[2][..., 3], rgba[..., 3])
    assert np.abs(as_grey(out[2]).astype(int) - as_grey(rgba)).max() <= 1  # colour input: made grey first
    with pytest.raises(LatentzipError, match="uint8"):
        colorize(trained.model, [grey.astype(np.float32)])


def test_the_receptive_field_fits_in_the_tile_margin():
    net = colornet.ColorNet(unet.NetConfig())
    x = torch.zeros(1, 1, 512, 512, requires_grad=True)
    net(x)[0, :, 256, 256].sum().backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).ravel()
    assert 256 - int(rows.min()) < unet.MARGIN and int(rows.max()) - 256 < unet.MARGIN
    assert unet.TILE % net.cfg.stride == 0 and unet.MARGIN % net.cfg.stride == 0


def test_tiles_leave_no_seams(trained, photos, monkeypatch):
    light = lab.lightness(_tensor(as_grey(np.concatenate([photos[5], photos[6]], axis=1))))  # 48x96
    whole = trained.model.chroma(light)
    monkeypatch.setattr(unet, "TILE", 8)
    monkeypatch.setattr(unet, "MARGIN", 24)  # the tiny network sees less than this
    tiled = trained.model.chroma(light)
    assert float((tiled - whole).abs().max()) < 1e-3


def test_model_file_round_trip(trained, model_path, photos):
    loaded = Colorizer.load(model_path)
    assert loaded.meta["steps"] == TINY.steps and loaded.net.cfg == trained.model.net.cfg
    grey = [as_grey(im) for im in photos[:3]]
    for a, b in zip(colorize(loaded, grey), colorize(trained.model, grey), strict=True):
        assert np.array_equal(a, b)
    assert loaded.meta == Colorizer.from_bytes(loaded.to_bytes()).meta


def test_wrong_kind_of_model_is_refused_both_ways(model_path, model_file):
    with pytest.raises(ModelError, match="is a colourisation model, not an image codec: use it with latentzip colorize"):
        latentzip.load_model(model_path)
    with pytest.raises(ModelError, match="is an image codec, not a colourisation model"):
        Colorizer.load(model_file)
    with pytest.raises(ModelError, match="shipped image codec"):
        Colorizer.load("fashion-mnist:q1")


def test_damaged_model_files_are_refused(model_path, tmp_path):
    import json

    from safetensors.torch import load, save

    blob = model_path.read_bytes()
    for damaged in (blob[: len(blob) // 2], b"\0" * 64, blob[:8] + b"[" + blob[9:]):
        with pytest.raises(ModelError):
            Colorizer.from_bytes(damaged)
    stored = load(blob)
    for widths, problem in (([8, 32], "shape"), ([8, 16, 32], "damaged"), ([0], "widths")):
        odd = save(stored, metadata={"format": "latentzip-colorize-model", "version": "1",
                                     "net": json.dumps({"widths": widths}), "meta": "{}"})
        with pytest.raises(ModelError, match=problem):
            Colorizer.from_bytes(odd)
    stored["net.out.bias"] = torch.full_like(stored["net.out.bias"], float("nan"))
    with pytest.raises(ModelError, match="not finite"):
        Colorizer.from_bytes(save(stored, metadata={"format": "latentzip-colorize-model", "version": "1",
                                                    "net": json.dumps({"widths": [8, 16]}), "meta": "{}"}))


def test_crops_come_from_each_image_by_its_pixels():
    """An image the size of a crop is picked for its pixels: by crop positions it would
    have 1 chance in 1,090 against a 64x64 image, not 1 in 5."""
    from latentzip.apps import unettrain

    images = [np.zeros((32, 32, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)]
    assert np.allclose(unettrain._odds(images), [0.2, 0.8])


def test_grey_training_images_are_refused(digits):
    with pytest.raises(LatentzipError, match="grey"):
        train_colorizer(digits.images[:20], TINY, progress=False)
    tinted = np.repeat(digits.images[:3], 3, axis=-1)  # grey, though stored as RGB
    with pytest.raises(LatentzipError, match="grey"):
        train_colorizer(tinted, TINY, progress=False)


def test_chroma_table_is_the_mean_chroma_of_each_level(photos):
    table = baselines.ChromaTable.fit(photos)
    levels = as_grey(photos[0])[..., 0]
    level = int(np.bincount(levels.ravel()).argmax())
    picked = np.concatenate([color.rgb2lab(p)[..., 1:][as_grey(p)[..., 0] == level] for p in photos])
    assert np.allclose(table.table[level], picked.mean(0))
    made = table.colorize([as_grey(photos[0])])[0]
    assert made.shape == photos[0].shape
    assert np.abs(as_grey(made).astype(int) - as_grey(photos[0])).max() <= 1
    assert np.array_equal(baselines.grey_as_colour([as_grey(photos[0])])[0][..., 1], levels)


# --- the verbs -------------------------------------------------------------------------------



def test_train_and_colorize_verbs(tmp_path, capsys, photos):
    (tmp_path / "train").mkdir()
    for i, image in enumerate(photos[:4]):
        data.write_png(tmp_path / "train" / f"p{i}.png", image)
    model = tmp_path / "c.model"
    status, err = in_process(capsys, "train", "--task", "colorize", "--data", str(tmp_path / "train"), "--steps", "5",
                      "--hidden", "8", "16", "--crop", "32", "-o", str(model))
    assert status == 0, err
    assert "on 4 colour images" in err and "crops of 32" in err and "5 steps" in err
    (tmp_path / "grey").mkdir()
    grey = as_grey(photos[5])[:33, :47, 0]
    Image.fromarray(grey).save(tmp_path / "grey" / "odd.png")
    data.write_png(tmp_path / "grey" / "colour.png", photos[6])
    proc = run_cli("colorize", "-m", str(model), str(tmp_path / "grey"), "-o", str(tmp_path / "out"))  # as a user would
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr.decode().splitlines() == ["1 of 2 input(s) were in colour: made grey first (their lightness kept)",
                                                 f"2 image(s) -> {tmp_path / 'out'}/ ({model})"]
    out = np.asarray(Image.open(tmp_path / "out" / "odd.png"))
    assert out.shape == (33, 47, 3)
    assert np.abs(as_grey(out)[..., 0].astype(int) - grey).max() <= 1
    assert np.array_equal(out, colorize(Colorizer.load(model), [grey])[0])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["colour.png", "odd.png"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["colorize", "-m", "{codec}", "{grey}", "-o", "{tmp}/out"], ["is an image codec, not a colourisation model"]),
        (["encode", "-m", "{colour}", "{grey}", "-o", "{tmp}/x.ltz"], ["is a colourisation model", "colorize"]),
        (["denoise", "-m", "{colour}", "{grey}", "-o", "{tmp}/out"], ["is a colourisation model"]),
        (["colorize", "-m", "{tmp}/none.model", "{grey}", "-o", "{tmp}/out"], ["no model file", "--task colorize"]),
        (["colorize", "-m", "{colour}", "{tmp}/bad.png", "-o", "{tmp}/out"], ["bad.png", "not an image"]),
        (["train", "--task", "colorize", "--data", "digits:train[:30]", "-o", "{tmp}/c.model"], ["grey"]),
        (["train", "--task", "colorize", "--data", "{grey}", "--arch", "conv", "--lmbda", "1", "-o", "{tmp}/c.model"],
         ["--arch, --lmbda do not apply to --task colorize"]),
        (["train", "--data", "{grey}", "--steps", "3", "-o", "{tmp}/c.model"], ["--steps does not apply to --task codec"]),
    ],
)
def test_bad_input(tmp_path, capsys, model_path, model_file, photos, args, words):
    (tmp_path / "grey").mkdir()
    data.write_png(tmp_path / "grey" / "g.png", as_grey(photos[0]))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    before = sorted(p.name for p in tmp_path.iterdir())
    filled = [a.format(codec=model_file, colour=model_path, grey=tmp_path / "grey", tmp=tmp_path) for a in args]
    status, err = in_process(capsys, *filled)
    assert status == 1 and err.startswith("latentzip: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, partial or whole


def test_existing_output_needs_force(tmp_path, capsys, model_path, photos):
    (tmp_path / "grey").mkdir()
    data.write_png(tmp_path / "grey" / "g.png", as_grey(photos[0]))
    out = tmp_path / "out"
    command = ["colorize", "-m", str(model_path), str(tmp_path / "grey"), "-o", str(out)]
    assert in_process(capsys, *command)[0] == 0
    first = (out / "g.png").read_bytes()
    (out / "g.png").write_bytes(b"mine")
    status, err = in_process(capsys, *command)
    assert status == 1 and "-f" in err and err.count("\n") == 1, err
    assert (out / "g.png").read_bytes() == b"mine"
    assert in_process(capsys, *command, "-f")[0] == 0
    assert (out / "g.png").read_bytes() == first


