"""The Bjøntegaard deltas the benchmarks' comparisons rest on (bench/common.py)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def common(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("common")


THEIRS = [(28.0, 1.0), (31.0, 2.0), (34.0, 4.0), (37.0, 8.0)]  # (PSNR, rate): 3 dB per doubling


def test_a_curve_one_db_better_gains_a_db_and_a_fixed_share_of_the_rate(common):
    ours = [(q + 1.0, r) for q, r in THEIRS]
    psnr = common.bd_psnr(ours, THEIRS)
    assert psnr["db"] == pytest.approx(1.0)
    assert psnr["rate_range"] == pytest.approx([1.0, 8.0])
    assert common.bd_psnr(THEIRS, ours)["db"] == pytest.approx(-1.0)
    rate = common.bd_rate(ours, THEIRS)
    assert rate["percent"] == pytest.approx(100 * (2 ** (-1 / 3) - 1))  # 1 dB is a third of a doubling
    assert rate["range"] == pytest.approx([29.0, 37.0])


def test_curves_that_do_not_meet_have_no_delta(common):
    far = [(20.0, 20.0), (21.0, 40.0)]  # more bytes than THEIRS spends at any PSNR, and lower PSNR
    assert common.bd_rate(far, THEIRS) is None
    assert common.bd_psnr(far, THEIRS) is None
    assert common.bd_psnr(THEIRS[:1], THEIRS) is None
    lower_psnr_same_rates = [(20.0, 1.5), (21.0, 6.0)]
    assert common.bd_rate(lower_psnr_same_rates, THEIRS) is None  # no PSNR in common ...
    assert common.bd_psnr(lower_psnr_same_rates, THEIRS)["db"] < -8  # ... but rates in common
