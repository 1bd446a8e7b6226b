"""Kernels' machine code in the cache: a later process runs it without numba, with the
same results as numba, and a damaged cache file is compiled again rather than loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentzip import lossless, machine_code
from latentzip.lossless import fast

# Codes a fast and a mixing level both ways, and says whether numba was imported.
SCRIPT = """
import hashlib, sys
from latentzip import lossless
data = bytes(range(256)) * 40 + b"a text that repeats itself, a text that repeats itself " * 300
out = []
for level in (1, 4):
    packed = lossless.compress(data, level=level, threads=2)
    assert lossless.decompress(packed, threads=2) == data
    out.append(hashlib.sha256(packed).hexdigest())
print(" ".join(out), "numba" in sys.modules)
"""


def _run(cache: Path) -> tuple[str, bool]:
    env = {**os.environ, "LATENTZIP_CACHE": str(cache)}
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    *digests, numba = r.stdout.split()
    return " ".join(digests), numba == "True"


def test_a_later_process_runs_the_cached_machine_code_without_numba(tmp_path: Path) -> None:
    first, compiled = _run(tmp_path)
    assert compiled, "the first process compiles the kernels with numba"
    files = sorted((tmp_path / "kernels").glob("*/*.bin"))
    assert files
    second, imported = _run(tmp_path)
    assert second == first and not imported

    # A damaged file is compiled again, not loaded (loading bad object code could crash),
    # and the kernel's files compiled from other sources go.
    stale = []
    for f in files:
        data = bytearray(f.read_bytes())
        data[-100] ^= 0xFF
        f.write_bytes(bytes(data))
        stale.append(f.with_name(f.name.rsplit("-", 1)[0] + "-0123456789abcdef.bin"))
        stale[-1].write_bytes(b"compiled from other sources")
    third, compiled = _run(tmp_path)
    assert third == first and compiled
    assert not any(f.exists() for f in stale) and all(f.exists() for f in files)
    assert _run(tmp_path) == (first, False)


def test_numba_and_the_machine_code_give_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (b"numba or machine code, the coder must not know which " * 2000)[:90000]
    expected = {level: lossless.compress(data, level=level, threads=1) for level in (1, 4)}
    # Run every kernel by numba, as when no machine code can be kept.
    monkeypatch.setattr(machine_code, "load", lambda kernel, key, args: None)
    monkeypatch.setattr(fast._code, "_calls", {})
    for kernel in (lossless.predict.code_steps, lossless.predict.start):
        monkeypatch.setattr(kernel, "_calls", {})
    for level, packed in expected.items():
        assert lossless.compress(data, level=level, threads=1) == packed
        assert lossless.decompress(packed, threads=1) == data


def test_arguments_machine_code_cannot_take_go_to_numba() -> None:
    assert machine_code.argument_key((np.zeros((4, 4))[:, 1],)) is None  # not contiguous
    assert machine_code.argument_key(("text",)) is None
    assert machine_code.argument_key((np.uint8(3),)) is None  # a scalar type ctypes is not given here
    assert machine_code.argument_key((True, 3, 2.5, (1, 2), np.zeros(3, np.uint8))) == (
        ("bool",), ("int",), ("float",), ("ints", 2), ("array", "|u1", 1))


def test_a_kernel_declared_after_numba_was_imported_compiles_with_its_callees() -> None:
    script = (
        "from latentzip import jit\n"
        "from latentzip.lossless.predict import SQUASH, squash\n"
        "jit.import_numba()\n"
        "@jit.njit()\n"
        "def late(x):\n"
        "    return squash(x, SQUASH) + 1\n"
        "assert late(300) == squash(300, SQUASH) + 1 > 2048\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr


def test_a_kernel_that_may_raise_is_left_to_numba_and_raises(tmp_path: Path) -> None:
    """Machine code could not report an exception, so such a kernel is never kept."""
    (tmp_path / "raising.py").write_text(
        "from latentzip.jit import njit\n\n\n"
        "@njit(nogil=True)\n"
        "def checked(x):\n"
        "    if x > 0:\n"
        "        raise ValueError('positive')\n"
        "    return x - 1\n")
    script = ("import raising\n"
              "assert raising.checked(-3) == -4\n"
              "try:\n"
              "    raising.checked(2)\n"
              "except ValueError as e:\n"
              "    print(e)\n")
    env = {**os.environ, "LATENTZIP_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    for _ in range(2):  # compiling, then with the cache's verdict
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0 and r.stdout == "positive\n", r.stderr
    [kept] = (tmp_path / "cache" / "kernels").glob("*/*.bin")
    assert b'"kind": "numba"' in kept.read_bytes()


def test_a_cache_that_cannot_be_written_leaves_the_kernels_to_numba(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    digests, imported = _run(blocker)
    assert imported and blocker.read_bytes() == b""
    assert digests == _run(tmp_path / "cache")[0]
