"""The report: every results.json key on a tiny real run, the page in a real browser, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentzip.data import write_png
from latentzip.report import Budget
from latentzip.report.embedding import knn_mixing, own_neighbour_rate
from latentzip.report.inputs import MAX_SIDE, prepare

from .conftest import assert_clean_error, run_cli, write_images

TINY = ["--quick", "--epochs", "1", "--images", "200", "--test-images", "60"]
VARIANTS = {"dense", "deep", "conv", "sparse", "denoising", "contractive", "variational", "pca"}
CODECS = {"jpeg", "webp", "avif", "jxl", "png", "pca"}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    """One tiny report made through the command line, as a user would make it."""
    out = tmp_path_factory.mktemp("report") / "rep"
    proc = run_cli("report", "--data", "digits", "-o", str(out), "-q", *TINY)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return out


@pytest.fixture(scope="module")
def results(report_dir) -> dict:
    return json.loads((report_dir / "results.json").read_text())


def test_results_has_every_experiment(results):
    for key in ("variants", "code_size_sweep", "compression_levels", "per_class", "tsne", "rate_distortion", "speed"):
        assert key in results, key
        assert results[key]["figures"], key
    assert results["budget"]["epochs"] == 1 and results["inputs"]["train_images"] == 200
    assert results["command"].endswith("--quick --epochs 1 --images 200 --test-images 60")


def test_variants_are_real_files(results):
    models = results["variants"]["models"]
    assert set(models) == VARIANTS
    for name, m in models.items():
        assert m["bytes_per_image"] > 0 and 0 < m["ssim"] <= 1 and m["mse"] >= 0, name
        assert m["code_values"] == results["variants"]["code_size"], name
    # PCA stores 2 bytes per coefficient; the autoencoders entropy-code theirs.
    assert models["pca"]["bytes_per_image"] == 2 * results["variants"]["code_size"]


def test_code_sizes_and_photo_network(results):
    sweep = results["code_size_sweep"]
    assert set(sweep["dense"]) == {"dense 128", "dense 32", "dense 8"}
    assert sweep["photo_conv"]["code_values"] == 12 * 12 * 32


def test_compression_levels_show_both_ratios(results):
    levels = results["compression_levels"]["levels"]
    dims = results["compression_levels"]["input_dimensions"]
    assert [lv["level"] for lv in levels] == [0.5, 0.9, 0.95, 0.99]
    for lv in levels:
        assert lv["tutorial_ratio"] == pytest.approx(lv["latent"] / dims)
        assert lv["file_ratio"] == pytest.approx(lv["bytes_per_image"] / dims)
    assert results["compression_levels"]["knee_level"] in (0.5, 0.9, 0.95, 0.99)


def test_per_class_raw_and_normalised(results):
    per_class = results["per_class"]
    assert set(per_class["levels"]) == {"95%", "99%"}
    for classes in per_class["levels"].values():
        assert set(classes) == {str(d) for d in range(10)}
        for name, c in classes.items():
            assert c["mse_per_ink"] == pytest.approx(c["mse"] / per_class["ink"][name])


def test_tsne_and_overlap(results):
    tsne = results["tsne"]
    n = tsne["points_per_set"]
    assert len(tsne["embedding"]["originals"]) == n == len(tsne["embedding"]["reconstructions"])
    assert 0 <= tsne["own_neighbour_rate_pixels"] <= 1 and tsne["knn_mixing"] >= 0


def test_rate_distortion_and_speed(results):
    rd = results["rate_distortion"]
    assert set(rd["baselines"]) == CODECS
    for name, point in rd["latentzip"].items():
        assert point["payload_bytes_per_image"] < point["single_file_bytes"], name
    refined = [name for name in rd["latentzip"] if "max-error" in name]  # the deep model, at three bounds
    assert len(refined) == 3 and all(name.startswith("deep (code") for name in refined)
    assert rd["baselines"]["jxl"][0]["payload_bytes_per_image"] is None
    jpeg = rd["baselines"]["jpeg"][0]
    assert 0 < jpeg["payload_bytes_per_image"] < jpeg["bytes_per_image"]
    speeds = results["speed"]["codecs"]
    assert CODECS <= set(speeds)
    assert all(s["encode_images_per_s"] > 0 and s["decode_images_per_s"] > 0 for s in speeds.values())


def test_applications(results):
    denoise = results["denoise"]["methods"]
    assert {"noisy input", "latentzip conv denoiser", "latentzip dense denoiser", "median", "nl-means",
            "tv-chambolle"} == set(denoise)
    assert all(0 < m["psnr"] < 100 for m in denoise.values())
    anomaly = results["anomaly"]
    assert len(anomaly["per_class"]) == 1 and anomaly["per_class"][0]["held_out"] == "0"
    assert set(anomaly["mean_auc"]) == {"latentzip-error", "latentzip-bits", "latentzip-combined", "pca-error",
                                        "isolation-forest"}
    assert all(0 <= auc <= 1 for auc in anomaly["mean_auc"].values())
    embed = results["embed"]["models"]
    assert {"latentzip dense 32", "pca 32"} == set(embed)
    assert all(0 <= m["knn_accuracy"] <= 1 and 0 <= m["trustworthiness"] <= 1 for m in embed.values())
    colour = results["colorize"]  # digits are grey: the section colours the built-in photographs
    assert {"grey input", "mean-chroma table", "latentzip"} == set(colour["methods"])
    assert colour["network"]["steps"] == 50 and colour["images"] == 60  # 150 quick steps, a third for 1 of 3 epochs
    assert all(0 < m["psnr"] < 100 and 0 < m["ciede2000"] < 100 for m in colour["methods"].values())
    marks = results["watermark"]  # on the built-in photographs too
    assert {"watermarked input", "median 3x3", "inpainting, true mask", "latentzip"} == set(marks["methods"])
    assert marks["network"]["steps"] == 50 and marks["images"] == 60
    assert all(0 < m["psnr"] < 100 and m["psnr_of_mean_mse"] <= m["psnr"] for m in marks["methods"].values())


def test_figures_are_pngs(report_dir, results):
    for key in ("variants", "code_size_sweep", "compression_levels", "per_class", "tsne", "rate_distortion", "speed",
                "denoise", "anomaly", "colorize", "watermark"):
        for figure in results[key]["figures"]:
            assert (report_dir / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure


# --- the page in a real browser ----------------------------------------------------------


def _browser() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("LATENTZIP_REQUIRE_BROWSER"):
        pytest.fail("chromium is not installed, and LATENTZIP_REQUIRE_BROWSER is set")
    return found


def _rendered_dom(browser: str, page: Path, profile: Path) -> str:
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
         "--virtual-time-budget=10000", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return proc.stdout.decode()


def _loaded(dom: str) -> tuple[int, int]:
    marker = 'data-images-loaded="'
    assert marker in dom, dom[:500]
    value = dom.split(marker, 1)[1].split('"', 1)[0]
    loaded, total = value.split("/")
    return int(loaded), int(total)


def test_report_renders_in_chromium(report_dir, results, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    figures = sum(len(results[k]["figures"]) for k in results if isinstance(results[k], dict) and "figures" in results[k])
    dom = _rendered_dom(browser, report_dir / "index.html", tmp_path / "profile")
    assert _loaded(dom) == (figures, figures)
    assert "Rate and distortion" in dom and "t-SNE" in dom

    # The same check sees a figure that is missing, and the page says which.
    broken = tmp_path / "broken"
    shutil.copytree(report_dir, broken)
    (broken / "figures" / "tsne.png").unlink()
    dom = _rendered_dom(browser, broken / "index.html", tmp_path / "profile2")
    assert _loaded(dom) == (figures - 1, figures)
    assert "could not be loaded: figures/tsne.png" in dom


# --- inputs and bad input ----------------------------------------------------------------


def test_directory_of_large_mixed_images_is_cut_into_patches(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "scans"
    folder.mkdir()
    for i, shape in enumerate([(40, 50, 3), (64, 48, 3), (45, 45, 3)] * 3):
        write_png(folder / f"scan{i}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    inputs = prepare(str(folder), Budget.quick().limited(train_images=30, test_images=10))
    assert inputs.train.shape[1:] == (MAX_SIDE, MAX_SIDE, 3) and len(inputs.train) == 30
    assert len(inputs.test) <= 10 and inputs.test_labels is None
    assert any("patches" in note for note in inputs.notes)


def test_overlap_measures_can_tell_sets_apart():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(100, 5))
    assert own_neighbour_rate(a, a + 1e-3) == 1.0
    assert knn_mixing(np.concatenate([a, a + 100]), np.arange(200) >= 100) == 0.0
    assert knn_mixing(np.concatenate([a, a + 1e-3]), np.arange(200) >= 100) > 0.5


def test_bad_inputs_are_clean_errors(tmp_path, report_dir):
    assert_clean_error(run_cli("report", "--data", str(tmp_path / "nope"), "-o", str(tmp_path / "r"), *TINY),
                       "no such file")
    assert not (tmp_path / "r").exists()
    assert_clean_error(run_cli("report", "--data", "digits", "-o", str(report_dir), *TINY), "already exists")
    mixed = tmp_path / "mixed"
    write_images(mixed, np.zeros((2, 8, 8, 1), np.uint8), 2)
    write_png(mixed / "colour.png", np.full((8, 8, 3), (255, 0, 0), np.uint8))
    assert_clean_error(run_cli("report", "--data", str(mixed), "-o", str(tmp_path / "r2"), *TINY), "grey and colour")
    assert_clean_error(run_cli("report", "--data", "digits", "-o", str(tmp_path / "r3"), "--epochs", "0"), "epochs")


def test_importing_latentzip_makes_torch_threads_sleep_while_they_wait():
    """Spinning OpenMP waits made training ~20x slower whenever another process held a core."""
    code = "import os; import latentzip, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, check=True)
    assert out.stdout.decode().strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's own setting wins
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, check=True)
    assert out.stdout.decode().strip() == "ACTIVE"
