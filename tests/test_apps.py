"""Denoising, anomaly detection and embeddings: the API, each verb end to end, bad input."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest
from PIL import Image

import latentzip
from latentzip import container, data, metrics
from latentzip.apps import AnomalyDetector, add_noise, denoise, embed, trained_noise, write_codes
from latentzip.errors import LatentzipError, ModelError
from latentzip.image.train import TrainConfig, train

from .conftest import assert_clean_error, in_process, run_cli, write_images


@pytest.fixture(scope="session")
def denoiser(digits):
    cfg = TrainConfig(arch="deep", latent=16, hidden=(64,), lmbda=1.0, lr=3e-3, epochs=15, batch_size=32, noise=0.2, seed=2)
    return train(digits.images, cfg, progress=False).codec


@pytest.fixture(scope="session")
def denoiser_file(denoiser, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "denoise.model"
    denoiser.save(path)
    return path



# --- codec methods the applications stand on -------------------------------------------


@pytest.mark.parametrize("which", ["dense_codec", "conv_codec"])
def test_reconstruct_is_decode_of_encode(request, which, digits_test):
    codec = request.getfixturevalue(which)
    images = digits_test.images[:50]
    for ours, decoded in zip(codec.reconstruct(images), codec.decode(codec.encode(images)), strict=True):
        assert np.array_equal(ours, decoded)


def test_code_bits_are_what_the_coder_spends(dense_codec, digits_test):
    images = digits_test.images[:200]
    bits = dense_codec.code_bits(images)
    assert bits.shape == (200,) and (bits > 0).all()
    _, payload = container.unpack(dense_codec.encode(images), container.Kind.IMAGES)
    assert abs(8 * len(payload) - bits.sum()) < 64  # the range coder's end costs a word or two
    single = dense_codec.code_bits(images[7:8])[0]
    assert single == pytest.approx(bits[7])  # per image: independent of the batch around it


@pytest.mark.parametrize("max_error", [None, 2])
def test_reconstruct_with_bits_is_both_from_one_analysis(dense_codec, digits_test, max_error):
    images = digits_test.images[:30]
    restored, bits = dense_codec.reconstruct_with_bits(images, max_error=max_error)
    assert np.array_equal(np.stack(restored), np.stack(dense_codec.reconstruct(images, max_error=max_error)))
    assert np.array_equal(bits, dense_codec.code_bits(images, max_error=max_error))


@pytest.mark.parametrize("max_error", [None, 2])
def test_encode_with_bits_prices_the_file_it_writes(dense_codec, digits_test, max_error, model_only):
    """The refinement walk learns as it codes: the prices must come from that same pass."""
    images = digits_test.images[:30]
    blob, bits = dense_codec.encode_with_bits(images, max_error=max_error)
    assert blob == dense_codec.encode(images, max_error=max_error)
    assert np.array_equal(bits, dense_codec.code_bits(images, max_error=max_error))


# --- denoising -----------------------------------------------------------------------


def test_add_noise_is_reproducible_and_matches_the_level(digits_test):
    clean = digits_test.images
    noisy = add_noise(clean, 0.2, seed=3)
    assert noisy.dtype == np.uint8 and noisy.shape == clean.shape
    assert np.array_equal(noisy, add_noise(clean, 0.2, seed=3))
    assert not np.array_equal(noisy, add_noise(clean, 0.2, seed=4))
    hit = add_noise(clean, 0.3, "salt-pepper") != clean
    assert 0.1 < hit.mean() < 0.3  # 30% of pixels set to 0 or 255, some already were
    with pytest.raises(LatentzipError, match="noise kind"):
        add_noise(clean, 0.1, "speckle")


def test_denoise_removes_the_noise_it_was_trained_on(denoiser, dense_codec, digits_test):
    clean = digits_test.images[..., 0]
    noisy = add_noise(digits_test.images, 0.2, seed=5)
    cleaned = denoise(denoiser, noisy)
    assert metrics.mean_psnr(clean, cleaned) > metrics.mean_psnr(clean, noisy[..., 0]) + 1  # 8x8 digits: little to learn from
    assert trained_noise(denoiser) == (0.2, "gaussian")
    assert trained_noise(dense_codec) is None


# --- anomaly detection -----------------------------------------------------------------


def test_anomaly_threshold_and_scores(dense_codec, digits, digits_test):
    detector = AnomalyDetector(dense_codec, fpr=0.1).fit(digits.images[:500])
    assert dense_codec.meta["train"]["lmbda"] == detector.lmbda
    normal = detector.score(digits.images[:500])
    assert abs(normal.flagged.mean() - 0.1) < 0.01  # the fit data is flagged at the asked rate
    noise = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 1), dtype=np.uint8)
    odd = detector.score(noise)
    for name in ("error", "combined"):  # this tiny prior prices static about like digits: no bits check
        assert odd.by(name).min() > normal.by(name).max()
    assert odd.flagged.all()
    assert np.allclose(odd.combined, odd.bits + detector.lmbda * odd.error * 64)
    test = detector.score(digits_test.images)
    assert test.error.shape == test.bits.shape == test.flagged.shape == (len(digits_test),)


def test_anomaly_misuse(dense_codec, digits):
    with pytest.raises(LatentzipError, match="fit"):
        AnomalyDetector(dense_codec).score(digits.images[:5])
    with pytest.raises(LatentzipError, match="false-positive"):
        AnomalyDetector(dense_codec, fpr=1.5)
    with pytest.raises(LatentzipError, match="unknown score"):
        AnomalyDetector(dense_codec, score="vibes")
    with pytest.raises(ModelError, match="8x8"):
        AnomalyDetector(dense_codec).fit(np.zeros((4, 28, 28), np.uint8))


# --- embeddings ----------------------------------------------------------------------


def test_embed_gives_the_latents(dense_codec, conv_codec, digits_test):
    images = digits_test.images[:30]
    codes = latentzip.embed(dense_codec, images)
    assert codes.shape == (30, 12) and codes.dtype == np.float32
    assert np.array_equal(codes, np.stack(dense_codec.latents(images)))
    assert embed(conv_codec, images).shape == (30, 8 * (8 // conv_codec.cfg.stride) ** 2)
    mixed = [images[0, ..., 0], np.zeros((16, 12), np.uint8)]
    with pytest.raises(LatentzipError, match="one size"):
        embed(conv_codec, mixed)


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
def test_write_codes_round_trip(tmp_path, suffix):
    codes = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    names = ["a.png", "b,c.png", "d.png", "e.png", "f.png"]
    path = tmp_path / f"codes{suffix}"
    write_codes(path, codes, names)
    if suffix == ".npy":
        assert np.array_equal(np.load(path), codes)
        return
    if suffix == ".csv":
        rows = list(csv.reader(path.open()))
        header, body = rows[0], rows[1:]
        back_names, back = [r[0] for r in body], np.array([r[1:] for r in body], dtype=np.float32)
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        header = table.column_names
        back_names = table.column("name").to_pylist()
        back = np.stack([table.column(c).to_numpy() for c in header[1:]], axis=1)
    assert header == ["name", "z0", "z1", "z2"]
    assert back_names == names and np.array_equal(back, codes)


def test_write_codes_refuses_what_it_cannot_write(tmp_path, monkeypatch):
    codes = np.zeros((2, 3), np.float32)
    with pytest.raises(LatentzipError, match=r"\.parquet"):
        write_codes(tmp_path / "codes.txt", codes)
    with pytest.raises(LatentzipError, match="names"):
        write_codes(tmp_path / "codes.csv", codes, ["one"])
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    with pytest.raises(LatentzipError, match=r"pip install 'latentzip\[parquet\]'"):
        write_codes(tmp_path / "codes.parquet", codes)
    assert list(tmp_path.iterdir()) == []


# --- the verbs, end to end in fresh processes -----------------------------------------------


def test_denoise_verb(tmp_path, digits_test):
    model = tmp_path / "dn.model"
    proc = run_cli("train", "--data", "digits:train[:400]", "--arch", "dense", "--latent", "8", "--noise", "0.2",
                   "--epochs", "2", "-q", "-o", str(model))
    assert proc.returncode == 0, proc.stderr.decode()
    noisy = add_noise(digits_test.images[:5], 0.2, seed=1)
    write_images(tmp_path / "noisy", noisy, 5)
    (tmp_path / "noisy" / "img_000.png").rename(tmp_path / "noisy" / "first.png")
    proc = run_cli("denoise", "-m", str(model), str(tmp_path / "noisy"), "-o", str(tmp_path / "clean"))
    assert proc.returncode == 0, proc.stderr.decode()
    assert "gaussian noise 0.2" in proc.stderr.decode()
    names = sorted(p.name for p in (tmp_path / "clean").iterdir())
    assert names == ["first.png", "img_001.png", "img_002.png", "img_003.png", "img_004.png"]
    expected = denoise(latentzip.load_model(model), noisy)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "clean" / "img_003.png")), expected[3])


def test_anomaly_verb(tmp_path, model_file, digits_test):
    new = tmp_path / "new"
    write_images(new, digits_test.images, 4)
    rng = np.random.default_rng(2)
    for i in range(2):
        data.write_png(new / f"static_{i}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    out = tmp_path / "scores.csv"
    proc = run_cli("anomaly", "-m", str(model_file), "--fit", "digits:train[:300]", "--score", str(new),
                   "--fpr", "0.02", "--csv", str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    rows = list(csv.DictReader(out.open()))
    assert [r["name"] for r in rows] == [f"img_{i:03d}.png" for i in range(4)] + ["static_0.png", "static_1.png"]
    assert [r["anomaly"] for r in rows][4:] == ["yes", "yes"]
    assert all(float(r["bits"]) > 0 and float(r["error"]) >= 0 for r in rows)
    assert len(proc.stdout.decode().splitlines()) == 7  # a header and one line per image
    assert "2.0% of the --fit images" in proc.stderr.decode()


def test_default_detector_trains_sets_thresholds_and_saves(tmp_path, capsys, digits, digits_test):
    """Without -m the verb trains a dense detector on most --fit images, sets the threshold on
    the rest, and can save it; the saved model scores alike through -m."""
    model, out = tmp_path / "detector.model", tmp_path / "scores.csv"
    new = tmp_path / "new"
    write_images(new, digits_test.images, 4)
    data.write_png(new / "static.png", np.random.default_rng(3).integers(0, 256, (8, 8), dtype=np.uint8))
    status, err = in_process(capsys, "anomaly", "--fit", "digits:train[:200]", "--score", str(new), "--epochs", "3",
                      "--csv", str(out), "--save-model", str(model), "-q")
    assert status == 0, err
    assert "trained a deep detector (32 latents) on 160 of the --fit images; the other 40 set the threshold" in err
    rows = list(csv.DictReader(out.open()))
    assert rows[-1]["name"] == "static.png" and rows[-1]["anomaly"] == "yes"
    status, err = in_process(capsys, "anomaly", "-m", str(model), "--fit", "digits:train[:200]", "--score", str(new), "-q")
    assert status == 0 and "warning" not in err


def test_default_detector_scores_large_images_as_thumbnails(tmp_path):
    from latentzip.apps.anomaly import THUMBNAIL_SIDE, train_detector

    rng = np.random.default_rng(0)
    ramps = [np.clip(np.add.outer(np.arange(h), np.arange(w)) * 2 + rng.integers(0, 8, (h, w)), 0, 255)
             .astype(np.uint8)[..., None] for h, w in [(40, 50), (64, 64), (37, 90)] * 8]
    detector = train_detector(ramps, epochs=2)
    assert detector.thumbnails == (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    path = tmp_path / "d.model"
    detector.codec.save(path)
    again = AnomalyDetector(latentzip.load_model(str(path))).fit(ramps)
    static = rng.integers(0, 256, (2, 70, 30, 1), dtype=np.uint8)
    assert again.thumbnails == detector.thumbnails and again.score(static).flagged.all()


def test_conv_model_is_warned_about(tmp_path, capsys, conv_codec, shots):
    path = tmp_path / "conv.model"
    conv_codec.save(path)
    status, err = in_process(capsys, "anomaly", "-m", str(path), "--fit", str(shots), "--score", str(shots), "-q")
    assert status == 0, err
    assert "warning" in err and "leave out -m" in err


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_embed_verb(tmp_path, model_file, shots, dense_codec, digits_test, suffix):
    out = tmp_path / f"codes{suffix}"
    proc = run_cli("embed", "-m", str(model_file), str(shots), "-o", str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    expected = embed(dense_codec, digits_test.images[:6])
    if suffix == ".npy":
        assert np.array_equal(np.load(out), expected)
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        assert table.column("name").to_pylist() == [f"img_{i:03d}.png" for i in range(6)]
        assert np.array_equal(table.column("z11").to_numpy(), expected[:, 11])


def test_the_verbs_say_what_reading_changed(tmp_path, capsys, model_file, dense_codec, digits_test):
    """An animation is read as its first frame: embed says so, for files and for --data."""
    from PIL import Image

    frames = [Image.fromarray(digits_test.images[i][..., 0]) for i in range(2)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    for source in (str(tmp_path / "anim.gif"), f"--data={tmp_path}"):
        status, err = in_process(capsys, "embed", "-m", str(model_file), source, "-o", str(tmp_path / "c.npy"), "-f")
        assert status == 0 and "first frame" in err, err
    assert np.array_equal(np.load(tmp_path / "c.npy"), embed(dense_codec, digits_test.images[:1]))


def test_embed_verb_with_data_spec_and_csv(tmp_path, capsys, model_file, dense_codec, digits_test):
    out = tmp_path / "codes.csv"
    assert in_process(capsys, "embed", "-m", str(model_file), "--data", "digits:test[:7]", "-o", str(out))[0] == 0
    rows = list(csv.reader(out.open()))
    assert len(rows) == 8 and rows[0][:2] == ["name", "z0"]
    assert np.array_equal(np.array([r[1:] for r in rows[1:]], np.float32), embed(dense_codec, digits_test.images[:7]))


# --- bad input: one line, non-zero exit, no traceback, no output -----------------------------


def test_bad_input_in_a_fresh_process(tmp_path, model_file, shots):
    proc = run_cli("embed", "-m", str(model_file), str(tmp_path / "nowhere"), "-o", str(tmp_path / "c.npy"))
    assert_clean_error(proc, "nowhere")
    proc = run_cli("denoise", "-m", "fashion-mnist:q1", str(shots), "-o", str(tmp_path / "clean"))
    assert_clean_error(proc, "28x28")
    assert not (tmp_path / "c.npy").exists() and not (tmp_path / "clean").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["embed", "-m", "{model}", "{shots}", "-o", "{tmp}/codes.txt"], [".npy", ".csv", ".parquet"]),
        (["embed", "-m", "{model}", "{shots}", "-o", "{tmp}/no/dir/codes.npy"], ["cannot write"]),
        (["embed", "-m", "{model}", "-o", "{tmp}/codes.npy"], ["--data"]),
        (["embed", "-m", "{model}", "{shots}", "--data", "digits", "-o", "{tmp}/codes.npy"], ["--data"]),
        (["embed", "-m", "no-such:q9", "{shots}", "-o", "{tmp}/codes.npy"], ["no-such:q9"]),
        (["anomaly", "-m", "{model}", "--fit", "{tmp}/missing", "--score", "{shots}"], ["missing"]),
        (["anomaly", "-m", "{model}", "--fit", "mnist:test[:5]", "--score", "{shots}"], ["28x28"]),
        (["anomaly", "-m", "{model}", "--fit", "{shots}", "--score", "{shots}", "--fpr", "0"], ["false-positive"]),
        (["anomaly", "-m", "{model}", "--fit", "{shots}", "--score", "{shots}", "--csv", "{tmp}/x/s.csv"], ["cannot write"]),
        (["anomaly", "-m", "{model}", "--fit", "{shots}", "--score", "{shots}", "--save-model", "{tmp}/d.model"],
         ["without -m"]),
        (["anomaly", "--fit", "{shots}", "--score", "{shots}"], ["at least 10 normal images"]),
        (["anomaly", "--fit", "digits:train[:20]", "--score", "{tmp}/missing", "--save-model", "{tmp}/d.model"],
         ["missing"]),
        (["denoise", "-m", "{model}", "{shots}", "-o", "{tmp}/afile"], ["not a directory"]),
    ],
)
def test_bad_input(tmp_path, capsys, model_file, shots, args, words):
    (tmp_path / "afile").write_bytes(b"keep")
    before = sorted(p.name for p in tmp_path.iterdir())
    filled = [a.format(model=model_file, shots=shots, tmp=tmp_path) for a in args]
    status, err = in_process(capsys, *filled)
    assert status == 1 and err.startswith("latentzip: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, partial or whole
    assert (tmp_path / "afile").read_bytes() == b"keep"


def test_existing_output_needs_force(tmp_path, capsys, model_file, shots):
    for verb, flag, target in [("embed", "-o", "codes.npy"), ("anomaly", "--csv", "scores.csv"), ("denoise", "-o", "clean")]:
        path = tmp_path / target
        inputs = ["--fit", str(shots), "--score", str(shots), "-q"] if verb == "anomaly" else [str(shots)]
        command = [verb, "-m", str(model_file), *inputs, flag, str(path)]
        assert in_process(capsys, *command)[0] == 0
        first = path.read_bytes() if path.is_file() else (path / "img_000.png").read_bytes()
        status, err = in_process(capsys, *command)
        assert status == 1 and "-f" in err, err
        assert in_process(capsys, *command, "-f")[0] == 0
        assert first == (path.read_bytes() if path.is_file() else (path / "img_000.png").read_bytes())


def test_parquet_without_pyarrow_is_a_clean_error(tmp_path, model_file, shots, monkeypatch):
    blocker = tmp_path / "blocker"
    (blocker / "pyarrow").mkdir(parents=True)
    (blocker / "pyarrow" / "__init__.py").write_text("raise ImportError('pyarrow is not installed')\n")
    monkeypatch.setenv("PYTHONPATH", str(blocker))
    proc = run_cli("embed", "-m", str(model_file), str(shots), "-o", str(tmp_path / "codes.parquet"))
    assert_clean_error(proc, "pip install")
    assert not (tmp_path / "codes.parquet").exists()
