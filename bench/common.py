"""Helpers every benchmark script shares: what ran, where, and how its JSON is written.

A benchmark result is only worth keeping if it says which command made it, on which
machine and library versions, and at which commit; these helpers gather that once.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from latentzip.fsio import write_bytes

REPO = Path(__file__).resolve().parent.parent


def command_line(script: str, argv: Sequence[str]) -> str:
    """The shell command that reruns this benchmark, relative to the repository root."""
    return shlex.join(["python", script, *argv])


def portable(text: str) -> str:
    """`text` with this checkout's path made relative and the home directory as ~, so a
    result names no path of the machine that measured it."""
    return text.replace(f"{REPO}{os.sep}", "").replace(str(Path.home()), "~")


def now() -> str:
    """UTC date and time of the run, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def machine(packages: Sequence[str] = ("torch", "numpy")) -> dict[str, Any]:
    """Platform, CPU, Python and package versions: what the timings and sizes depend on."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    for package in ("latentzip", *packages):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = None
    if "torch" in packages:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    info["commit"] = git_commit()
    return info


def git_commit() -> str | None:
    """The repository's HEAD commit, with '+dirty' when files differ from it; None outside git."""
    try:
        head = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far.

    Linux keeps ru_maxrss across fork and exec, so a child started by a large process
    reports its parent's peak; VmHWM belongs to the current program alone, so it is
    read where it exists. Elsewhere ru_maxrss is used (KiB on Linux, bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def write_json(path: str | os.PathLike[str], result: dict[str, Any]) -> None:
    """Write `result` as indented JSON, atomically, creating the directory if needed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, (json.dumps(result, indent=2) + "\n").encode())


def mib(num_bytes: float) -> str:
    """A byte count as MiB for tables."""
    return f"{num_bytes / 2**20:.1f} MiB"


# --- rate-distortion curves --------------------------------------------------------------


Point = dict[str, Any]  # one measured setting of a codec: its rate, its quality, its times


def frontier(points: Sequence[Point], quality: str = "psnr", rate: str = "bytes_per_image") -> list[tuple[float, float]]:
    """(PSNR, bytes/image) of the points no other point beats, in increasing PSNR
    (or another `quality` and `rate` the points have, such as MS-SSIM in dB and bpp).

    A setting that costs more bytes than another for no more PSNR (JPEG's lowest
    qualities can do that) is one no user would pick, so it does not shape the curve.
    """
    best: list[tuple[float, float]] = []
    by_bytes = sorted(((p[rate], p[quality]) for p in points if p.get(quality) is not None),
                      key=lambda bq: (bq[0], -bq[1]))
    for size, value in by_bytes:
        if not best or value > best[-1][0]:
            best.append((value, size))
    return best


def bytes_at(curve: Sequence[tuple[float, float]], psnr: float) -> float | None:
    """Bytes/image at `psnr` on a frontier; None outside its measured PSNR range."""
    if not curve or not curve[0][0] <= psnr <= curve[-1][0]:
        return None
    quality, size = np.array(curve).T
    return float(np.exp(np.interp(psnr, quality, np.log(size))))


def mean_ratio(ours: Sequence[tuple[float, float]], theirs: Sequence[tuple[float, float]],
               step: float = 0.05) -> dict[str, Any] | None:
    """Our bytes as a share of theirs at equal PSNR: the geometric mean over the PSNR
    range both frontiers cover (sampled every `step` dB), as BD-rate averages the log
    ratio; None where the ranges do not meet."""
    if not ours or not theirs:
        return None
    low, high = max(ours[0][0], theirs[0][0]), min(ours[-1][0], theirs[-1][0])
    if high <= low:
        return None
    grid = np.linspace(low, high, max(2, round((high - low) / step) + 1))
    logs = [np.log(bytes_at(ours, db) / bytes_at(theirs, db)) for db in grid]  # type: ignore[operator]
    return {"ratio": float(np.exp(np.mean(logs))), "range_db": [float(low), float(high)]}


def _mean_gap(ours: Sequence[tuple[float, float]], theirs: Sequence[tuple[float, float]], x: Callable,
              y: Callable, low: float, high: float) -> tuple[float, float, float] | None:
    """(mean of y(ours) - y(theirs), low, high) over [low, high] in x, clipped to the x range
    both curves cover: y as a piecewise-cubic Hermite (PCHIP) function of x, which, unlike
    the original Bjøntegaard cubic fit, cannot overshoot between points. None where the
    ranges do not meet or a curve has fewer than two points."""
    from scipy.interpolate import PchipInterpolator

    if len(ours) < 2 or len(theirs) < 2:
        return None
    curves = [(x(np.array(c)), y(np.array(c))) for c in (ours, theirs)]
    low, high = max(low, curves[0][0][0], curves[1][0][0]), min(high, curves[0][0][-1], curves[1][0][-1])
    if high <= low:
        return None
    mean = [float(PchipInterpolator(xs, ys).integrate(low, high)) / (high - low) for xs, ys in curves]
    return mean[0] - mean[1], float(low), float(high)


def bd_rate(ours: Sequence[tuple[float, float]], theirs: Sequence[tuple[float, float]],
            low: float = -np.inf, high: float = np.inf) -> dict[str, Any] | None:
    """Bjøntegaard delta rate of two frontiers ((quality, rate) in increasing quality):
    how many percent more bytes ours needs at equal quality (negative: fewer), averaged
    over [low, high] clipped to the range both cover (log rate against quality). None
    where the ranges do not meet."""
    gap = _mean_gap(ours, theirs, lambda c: c[:, 0], lambda c: np.log(c[:, 1]), low, high)
    return None if gap is None else {"percent": 100 * float(np.expm1(gap[0])), "range": [gap[1], gap[2]]}


def bd_psnr(ours: Sequence[tuple[float, float]], theirs: Sequence[tuple[float, float]]) -> dict[str, Any] | None:
    """Bjøntegaard delta PSNR of two frontiers ((quality, rate) in increasing quality): how
    many dB ours is better at equal rate, averaged over the log-rate range both cover.
    It compares codecs whose quality ranges do not meet but whose rates do (a network
    trained for minutes that stops at low PSNR for many bytes). None where they do not."""
    gap = _mean_gap(ours, theirs, lambda c: np.log(c[:, 1]), lambda c: c[:, 0], -np.inf, np.inf)
    return None if gap is None else {"db": gap[0], "rate_range": [float(np.exp(gap[1])), float(np.exp(gap[2]))]}
