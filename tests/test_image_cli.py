"""Every image verb end to end in fresh processes, and the bad-input rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from latentzip import data

from .conftest import assert_clean_error, run_cli


def test_train_encode_decode_eval(tmp_path, shots, digits_test):
    model = tmp_path / "m.model"
    proc = run_cli("train", "--data", "digits:train[:600]", "--arch", "dense", "--latent", "8", "--epochs", "2", "-q", "-o", str(model))
    assert proc.returncode == 0, proc.stderr.decode()
    assert model.exists() and not (tmp_path / "m.model.ckpt").exists()

    proc = run_cli("encode", "-m", str(model), str(shots), "-o", str(tmp_path / "s.ltz"))
    assert proc.returncode == 0, proc.stderr.decode()
    blob = (tmp_path / "s.ltz").read_bytes()
    assert blob[:4] == b"\x89LTZ"

    proc = run_cli("decode", str(tmp_path / "s.ltz"), "-m", str(model), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr.decode()
    restored = sorted(os.listdir(tmp_path / "out"))
    assert restored == [f"img_{i:03d}.png" for i in range(6)]
    image = np.asarray(Image.open(tmp_path / "out" / restored[0]))
    assert image.shape == (8, 8) and image.dtype == np.uint8

    proc = run_cli("eval", "-m", str(model), "--data", "digits:test[:40]", "--json", str(tmp_path / "rd.json"))
    assert proc.returncode == 0, proc.stderr.decode()
    record = json.loads((tmp_path / "rd.json").read_text())
    for key in ("bytes_per_image", "bpp", "psnr", "ssim", "single_file_bytes", "payload_bytes_per_image"):
        assert key in record
    assert record["images"] == 40


@pytest.mark.parametrize("arch", ["dense", "conv"])  # conv: two learning rates, so two optimizer groups
def test_train_resume_continues_from_checkpoint(tmp_path, digits, arch):
    from latentzip.image.train import TrainConfig, train

    images = digits.images[:300]
    sizes = {"latent": 6} if arch == "dense" else {"latent": 8, "levels": 2, "hidden": (8,), "qualities": 2}
    cfg = TrainConfig(arch=arch, epochs=2, batch_size=50, seed=4, **sizes)
    ckpt = tmp_path / "run.ckpt"
    full = train(images, cfg, checkpoint=ckpt, progress=False)

    def interrupt(stats):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(images, cfg, checkpoint=tmp_path / "half.ckpt", progress=False, on_epoch=interrupt)
    # Resuming after the first epoch reproduces the uninterrupted run exactly.
    resumed = train(images, cfg, checkpoint=tmp_path / "half.ckpt", resume=True, progress=False)
    assert [h.epoch for h in resumed.history] == [2]
    assert resumed.codec.fingerprint == full.codec.fingerprint


def test_a_checkpoint_from_before_a_setting_existed_resumes(tmp_path, digits):
    """A checkpoint without a setting added since (here `post`) resumes as if it held the
    default: what the version that wrote it did."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from latentzip.image.train import TrainConfig, train

    cfg = TrainConfig(arch="conv", epochs=2, batch_size=50, seed=4, latent=8, levels=2, hidden=(8,), qualities=2)

    def interrupt(stats):
        raise KeyboardInterrupt

    ckpt = tmp_path / "old.ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(digits.images[:200], cfg, checkpoint=ckpt, progress=False, on_epoch=interrupt)
    with safe_open(str(ckpt), "pt") as handle:
        meta = handle.metadata()
    config = json.loads(meta["config"])
    del config["post"]
    save_file(load_file(str(ckpt)), str(ckpt), metadata={**meta, "config": json.dumps(config)})
    resumed = train(digits.images[:200], cfg, checkpoint=ckpt, resume=True, progress=False)
    assert [h.epoch for h in resumed.history] == [2]


def test_models_lists_shipped_names():
    proc = run_cli("models")
    assert proc.returncode == 0
    lines = proc.stdout.decode().splitlines()
    for line in lines:
        assert line.split()[0].count(":") == 1


def test_every_architecture_is_offered_and_an_unknown_one_refused(tmp_path):
    from latentzip.image.transforms import ARCHS

    usage = run_cli("train", "--help").stdout.decode()
    assert all(name in usage for name in ARCHS)
    assert_clean_error(run_cli("train", "--data", "digits:50", "--arch", "linear", "-o", str(tmp_path / "m")),
                       "unknown architecture 'linear'")
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_starts_without_torch():
    """Lossless verbs never touch a network: parsing must not pay for importing PyTorch
    (seconds at start and again at exit)."""
    code = "import sys, latentzip.cli; latentzip.cli.build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_checking_a_model_file_stays_cheap():
    """Loading a model builds its network on the meta device to check the stored shapes.
    Arithmetic on meta tensors pulls in PyTorch's symbolic-shape machinery (sympy), which
    once cost every command and every bulk worker about 3 s: constructors must only fill."""
    code = """
import sys, torch
from latentzip.image.model import Autoencoder
from latentzip.image.train import TrainConfig
from latentzip.image.transforms import ARCHS
for arch in ARCHS:
    for prior in ("factorized", "hyperprior") if arch == "conv" else ("factorized",):
        with torch.device("meta"):
            Autoencoder(TrainConfig(arch=arch, prior=prior, latent=8, hidden=(8,), qualities=2).net(4, 32, 32))
print('sympy' in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


def test_decode_finds_shipped_model_by_fingerprint(tmp_path, shots):
    from latentzip.image import zoo

    names = [n for n in zoo.names() if n.startswith("mnist:")]
    if not names:
        pytest.skip("no shipped MNIST model in this checkout")
    big = tmp_path / "big"
    big.mkdir()
    for i in range(3):
        data.write_png(big / f"d{i}.png", np.zeros((28, 28), np.uint8) + 40 * i)
    assert run_cli("encode", "-m", names[0], str(big), "-o", str(tmp_path / "z.ltz")).returncode == 0
    proc = run_cli("decode", str(tmp_path / "z.ltz"), "-o", str(tmp_path / "zout"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert sorted(os.listdir(tmp_path / "zout")) == ["d0.png", "d1.png", "d2.png"]


# --- bad input: one line, non-zero exit, no traceback, no output, input untouched ---------


@pytest.fixture()
def encoded(tmp_path, shots, model_file):
    out = tmp_path / "good.ltz"
    assert run_cli("encode", "-m", str(model_file), str(shots), "-o", str(out)).returncode == 0
    return out


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign", "empty"])
def test_damaged_files_fail_cleanly(tmp_path, encoded, model_file, damage):
    blob = encoded.read_bytes()
    bad = tmp_path / "bad.ltz"
    if damage == "flip":
        bad.write_bytes(blob[:20] + bytes([blob[20] ^ 4]) + blob[21:])
    elif damage == "truncate":
        bad.write_bytes(blob[: len(blob) - 3])
    elif damage == "foreign":
        data.write_png(bad, np.zeros((4, 4), np.uint8))
    else:
        bad.write_bytes(b"")
    before = bad.read_bytes()
    proc = run_cli("decode", str(bad), "-m", str(model_file), "-o", str(tmp_path / "out"))
    assert_clean_error(proc)
    assert not (tmp_path / "out").exists()
    assert bad.read_bytes() == before


def test_wrong_model_fails_cleanly(tmp_path, encoded, conv_codec):
    other = tmp_path / "other.model"
    conv_codec.save(other)
    proc = run_cli("decode", str(encoded), "-m", str(other), "-o", str(tmp_path / "out"))
    assert_clean_error(proc, "model")
    assert not (tmp_path / "out").exists()


def test_unknown_model_and_unshipped_file(tmp_path, encoded, shots):
    assert_clean_error(run_cli("encode", "-m", "no-such:q9", str(shots), "-o", str(tmp_path / "x.ltz")), "no-such:q9")
    assert not (tmp_path / "x.ltz").exists()
    assert_clean_error(run_cli("decode", str(encoded), "-o", str(tmp_path / "out")), "-m")


def test_missing_dataset_and_missing_input(tmp_path, model_file):
    assert_clean_error(run_cli("eval", "-m", str(model_file), "--data", str(tmp_path / "nowhere")))
    assert_clean_error(run_cli("train", "--data", "imagenet", "-o", str(tmp_path / "m.model")), "imagenet")
    assert_clean_error(run_cli("encode", "-m", str(model_file), str(tmp_path / "nope.png"), "-o", str(tmp_path / "x.ltz")))
    assert not (tmp_path / "x.ltz").exists() and not (tmp_path / "m.model").exists()


def test_unsupported_image_mode(tmp_path, model_file):
    deep = tmp_path / "deep"
    deep.mkdir()
    Image.new("F", (8, 8), 0.5).save(deep / "float.tif")  # 16-bit images are reduced; floats are refused
    proc = run_cli("encode", "-m", str(model_file), str(deep), "-o", str(tmp_path / "x.ltz"))
    assert_clean_error(proc, "mode")
    assert not (tmp_path / "x.ltz").exists()


def test_rgb_image_for_grey_model(tmp_path, model_file):
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    colours = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    data.write_png(rgb / "c.png", colours)
    assert_clean_error(run_cli("encode", "-m", str(model_file), str(rgb), "-o", str(tmp_path / "x.ltz")), "grey")


def test_unwritable_output(tmp_path, shots, model_file, encoded):
    proc = run_cli("encode", "-m", str(model_file), str(shots), "-o", str(tmp_path / "no" / "dir" / "x.ltz"))
    assert_clean_error(proc, "cannot write")
    target = tmp_path / "afile"
    target.write_bytes(b"keep")
    proc = run_cli("decode", str(encoded), "-m", str(model_file), "-o", str(target))
    assert_clean_error(proc, "not a directory")
    assert target.read_bytes() == b"keep"


def test_existing_output_needs_force(tmp_path, shots, model_file, encoded):
    before = encoded.read_bytes()
    proc = run_cli("encode", "-m", str(model_file), str(shots), "-o", str(encoded))
    assert_clean_error(proc, "-f")
    assert encoded.read_bytes() == before
    assert run_cli("encode", "-m", str(model_file), str(shots), "-o", str(encoded), "-f").returncode == 0
    out = tmp_path / "out"
    assert run_cli("decode", str(encoded), "-m", str(model_file), "-o", str(out)).returncode == 0
    assert_clean_error(run_cli("decode", str(encoded), "-m", str(model_file), "-o", str(out)), "-f")
    assert run_cli("decode", str(encoded), "-m", str(model_file), "-o", str(out), "-f").returncode == 0


def test_resume_with_other_settings_fails_cleanly(tmp_path, digits):
    from latentzip.image.train import TrainConfig, train

    def interrupt(stats):
        raise KeyboardInterrupt

    model = tmp_path / "m.model"
    cfg = TrainConfig(arch="dense", latent=4, epochs=2, batch_size=50)
    with pytest.raises(KeyboardInterrupt):  # leaves a real checkpoint after epoch 1
        train(digits.images[:200], cfg, checkpoint=tmp_path / "m.model.ckpt", progress=False, on_epoch=interrupt)
    proc = run_cli("train", "--data", "digits:train[:200]", "--arch", "dense", "--latent", "5", "--epochs", "2",
                   "-q", "--resume", "-o", str(model))
    assert_clean_error(proc, "other settings", "latent 4 there, 5 here")
    assert not model.exists()


def test_max_error_through_the_cli(tmp_path, shots, model_file):
    out = tmp_path / "s.ltz"
    proc = run_cli("encode", "-m", str(model_file), "--max-error", "3", str(shots), "-o", str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    proc = run_cli("decode", str(out), "-m", str(model_file), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr.decode()
    for name in os.listdir(shots):
        original = np.asarray(Image.open(shots / name)).astype(int)
        restored = np.asarray(Image.open(tmp_path / "out" / name)).astype(int)
        assert np.abs(original - restored).max() <= 3

    proc = run_cli("eval", "-m", str(model_file), "--data", "digits:test[:30]", "--max-error", "0", "--json", str(tmp_path / "rd.json"))
    assert proc.returncode == 0, proc.stderr.decode()
    record = json.loads((tmp_path / "rd.json").read_text())
    assert record["max_error"] == 0 and record["max_abs_error"] == 0

    proc = run_cli("encode", "-m", str(model_file), "--max-error", "400", str(shots), "-o", str(tmp_path / "bad.ltz"))
    assert_clean_error(proc, "max error")
    assert not (tmp_path / "bad.ltz").exists()
    proc = run_cli("encode", "-m", str(model_file), "--effort", "7", str(shots), "-o", str(tmp_path / "bad.ltz"))
    assert_clean_error(proc, "effort is 0 to 2")
    assert not (tmp_path / "bad.ltz").exists()


def test_encode_says_once_that_jpeg_inputs_lose_a_generation(tmp_path, model_file, digits_test):
    for i in range(2):
        Image.fromarray(digits_test.images[i, :, :, 0]).save(tmp_path / f"shot{i}.jpg", quality=90)
    Image.fromarray(digits_test.images[2, :, :, 0]).save(tmp_path / "shot2.png")
    proc = run_cli("encode", "-m", str(model_file), str(tmp_path), "-o", str(tmp_path / "s.ltz"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr.decode().count("second generation of loss") == 1
    proc = run_cli("encode", "-m", str(model_file), str(tmp_path / "shot2.png"), "-o", str(tmp_path / "t.ltz"))
    assert proc.returncode == 0 and b"generation" not in proc.stderr


def test_inputs_that_differ_only_in_suffix_decode_to_files_of_their_own(tmp_path, model_file, digits_test):
    """shot.webp beside shot.bmp (and shot.png) once encoded into a file that no
    directory could decode into: all wanted shot.png."""
    shots = tmp_path / "in"
    shots.mkdir()
    Image.fromarray(digits_test.images[0, :, :, 0]).save(shots / "shot.webp", lossless=True)
    Image.fromarray(digits_test.images[1, :, :, 0]).save(shots / "shot.bmp")
    Image.fromarray(digits_test.images[2, :, :, 0]).save(shots / "shot.png")
    Image.fromarray(digits_test.images[3, :, :, 0]).save(shots / "other.bmp")
    assert run_cli("encode", "-m", str(model_file), str(shots), "-o", str(tmp_path / "s.ltz")).returncode == 0
    proc = run_cli("decode", "-m", str(model_file), str(tmp_path / "s.ltz"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert sorted(os.listdir(tmp_path / "out")) == ["other.png", "shot.bmp.png", "shot.png", "shot.webp.png"]
    decoded = np.asarray(Image.open(tmp_path / "out" / "shot.webp.png"))
    assert np.abs(decoded.astype(int) - digits_test.images[0, :, :, 0]).mean() < 40
