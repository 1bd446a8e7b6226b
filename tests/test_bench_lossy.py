"""The lossy benchmark end to end on tiny inputs, and the interpolation its figures rest on."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def lossy(monkeypatch):
    """bench/lossy.py as a module (bench/ is a folder of scripts, not a package)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("lossy")


def test_runs_end_to_end(lossy, model_file, tmp_path, capsys):
    out = tmp_path / "results" / "lossy.json"
    argv = [
        "--data", "digits", "--limit", "40", "--codecs", "jpeg", "webp", "pca",
        "--pca-k", "4", "8", "16", "--model", f"digits={model_file}", "--max-errors", "8", "--out", str(out),
    ]
    returned = lossy.main(argv)

    result = json.loads(out.read_text())
    assert result == json.loads(json.dumps(returned))
    assert {"command", "date", "machine", "settings", "datasets", "peak_rss_bytes", "shipped_models_bytes"} <= result.keys()
    assert {"platform", "cpu_count", "python", "torch", "numpy"} <= result["machine"].keys()
    ds = result["datasets"]["digits"]
    assert ds["test_images"] == 40
    assert set(ds["baselines"]) == {"jpeg", "webp", "pca"}
    point, refined = ds["latentzip"]
    assert point["images"] == 40 and point["model_bytes"] == model_file.stat().st_size and point["preset"] is None
    assert point["memory"]["peak_rss_bytes"] > point["memory"]["rss_before_coding_bytes"] > 0
    assert point["max_error"] is None and refined["max_error"] == 8 and refined["max_abs_error"] <= 8
    assert refined["psnr"] > point["psnr"] and refined["bytes_per_image"] > point["bytes_per_image"]
    assert {"below_baselines", "webp_ratio", "throughput"} <= ds["targets"].keys()
    assert isinstance(ds["targets"]["throughput"]["met"], bool)
    assert (out.parent / "lossy-digits.png").stat().st_size > 0
    assert "### digits" in capsys.readouterr().out

    # Every derived figure is null exactly where its codec's measured PSNRs do not reach.
    curves = {"latentzip": ds["latentzip"], **ds["baselines"]}
    for codec, at in ds["bytes_at_psnr"].items():
        psnrs = [p["psnr"] for p in curves[codec]]
        for db, value in at.items():
            assert (value is None) == (not min(psnrs) <= float(db) <= max(psnrs)), (codec, db)


def test_interpolation_stays_inside_the_measured_range(lossy):
    points = [
        {"bytes_per_image": 100.0, "psnr": 20.0},
        {"bytes_per_image": 120.0, "psnr": 19.0},  # dominated: more bytes, less PSNR
        {"bytes_per_image": 400.0, "psnr": 30.0},
    ]
    curve = lossy.frontier(points)
    assert curve == [(20.0, 100.0), (30.0, 400.0)]
    assert lossy.bytes_at(curve, 25.0) == pytest.approx(200.0)  # geometric mean: log-linear
    assert lossy.bytes_at(curve, 20.0) == pytest.approx(100.0)
    assert lossy.bytes_at(curve, 19.9) is None
    assert lossy.bytes_at(curve, 30.1) is None
    assert lossy.bytes_at([], 25.0) is None


def test_targets_follow_from_the_points(lossy):
    def point(size: float, psnr: float, **extra) -> dict:
        return {"bytes_per_image": size, "psnr": psnr, **extra}

    ours = [
        point(20.0, 21.0, model="a", images_per_s=1000.0),
        point(60.0, 34.0, model="b", images_per_s=10.0),
    ]
    webp = [point(100.0, 21.0, quality=0, images=10, encode_s=0.01, decode_s=0.01),
            point(300.0, 36.0, quality=90, images=10, encode_s=0.01, decode_s=0.01)]
    derived = lossy.derive(ours, {"webp": webp})
    targets = derived["targets"]
    assert targets["below_baselines"]["per_codec"]["webp"]["met"] is True
    assert targets["below_baselines"]["met"] is False  # 21-34 dB does not span 20-35 dB
    assert targets["webp_ratio"]["ratio"] == pytest.approx(
        derived["bytes_at_psnr"]["latentzip"]["25"] / derived["bytes_at_psnr"]["webp"]["25"]
    )
    assert targets["webp_ratio"]["met"] is True
    assert [m["met"] for m in targets["throughput"]["per_model"]] == [True, False]
    assert targets["throughput"]["met"] is False
    assert derived["bytes_at_psnr"]["latentzip"]["35"] is None  # ours stops at 34 dB

    ours.append(point(70.0, 36.0, model="c", images_per_s=1000.0))
    ours[0]["psnr"] = 19.0
    avif = [point(360.0, 35.5, quality=0), point(420.0, 45.0, quality=60)]  # never inside 20-35 dB
    below = lossy.derive(ours, {"webp": webp, "avif": avif})["targets"]["below_baselines"]
    assert below["per_codec"]["avif"]["met"] is None
    assert below["met"] is True
    webp[0]["bytes_per_image"] = 15.0  # now cheaper than ours at 21 dB
    assert lossy.derive(ours, {"webp": webp})["targets"]["below_baselines"]["met"] is False
