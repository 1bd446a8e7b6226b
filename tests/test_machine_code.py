"""Kernels' machine code in the cache: a later process runs it without numba, with the
same results as numba, and a damaged cache file is compiled again rather than loaded."""

from __future__ import annotations

import hashlib
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

    # A damaged file is compiled again, not loaded (loading bad object code could crash).
    for f in files:
        data = bytearray(f.read_bytes())
        data[-100] ^= 0xFF
        f.write_bytes(bytes(data))
    third, compiled = _run(tmp_path)
    assert third == first and compiled
    assert _run(tmp_path) == (first, False)


def test_numba_and_the_machine_code_give_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (b"numba or machine code, the coder must not know which " * 2000)[:90000]
    expected = {level: lossless.compress(data, level=level, threads=1) for level in (1, 4)}
    # Run every kernel by numba, as when no machine code can be kept.
    monkeypatch.setattr(machine_code, "load", lambda kernel, args: None)
    monkeypatch.setattr(fast._code, "_calls", {})
    for kernel in (lossless.predict.code_steps, lossless.predict.start):
        monkeypatch.setattr(kernel, "_calls", {})
    for level, packed in expected.items():
        assert hashlib.sha256(lossless.compress(data, level=level, threads=1)).digest() == \
            hashlib.sha256(packed).digest()
        assert lossless.decompress(packed, threads=1) == data


def test_arguments_machine_code_cannot_take_go_to_numba() -> None:
    assert machine_code.argument_key((np.zeros((4, 4))[:, 1],)) is None  # not contiguous
    assert machine_code.argument_key(("text",)) is None
    assert machine_code.argument_key((True, 3, 2.5, (1, 2), np.zeros(3, np.uint8))) == (
        ("bool",), ("int",), ("float",), ("ints", 2), ("array", "|u1", 1))
