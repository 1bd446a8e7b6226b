"""Fuzz the readers of latentzip files: image decoding, lossless decompression, and the
image catalog parser.

    python scripts/fuzz.py ltz --minutes 10             # atheris where installed, else random
    python scripts/fuzz.py ltz-bytes --minutes 10       # mutations of real files, checksums repaired
    python scripts/fuzz.py lzc --runs 20000 --engine random
    python scripts/fuzz.py catalog --minutes 5

Run from the repository root. The structured targets (ltz, lzc, catalog) build files with
the strategies of tests/crafted.py: valid checksums and random fields, so parsing goes
deep. With atheris (`pip install atheris`), its coverage-guided mutations drive those
strategies through Hypothesis' `fuzz_one_input`; without it, random buffers do. The
ltz-bytes target mutates the bytes of real files (made with the model at hand) and
repairs their checksum.

A finding is any exception that is not latentzip's own (LatentzipError), and any input
that takes longer than --slow seconds. Each is saved under --out and counted; a summary
line (runs, findings by kind, time spent) is printed every minute and at the end.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import hashlib
import random
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

try:
    import atheris
except ImportError:
    atheris = None

# atheris follows coverage of what is imported here, latentzip itself, not its dependencies;
# not the predictor either, whose functions numba compiles from their (unchanged) bytecode.
instrumented = atheris.instrument_imports(include=["latentzip"], exclude=["latentzip.lossless.predict"]) \
    if atheris else contextlib.nullcontext()
with instrumented:
    from latentzip import container
    from latentzip.errors import LatentzipError
    from latentzip.image import catalog
    from latentzip.image.zoo import load_model
    from latentzip.lossless import decompress
from tests import crafted  # noqa: E402

TARGETS = ("ltz", "ltz-bytes", "lzc", "catalog")
MAX_LENGTH = 1 << 20  # what the lossless target lets a file restore


class Fuzzer:
    """Runs inputs through a reader, counting runs and saving findings."""

    def __init__(self, out: Path, slow: float) -> None:
        self.out, self.slow = out, slow
        self.runs = 0
        self.findings: collections.Counter[str] = collections.Counter()
        self.started = self.reported = time.monotonic()

    def check(self, read: Callable[[], object], blob: bytes) -> None:
        self.runs += 1
        began = time.monotonic()
        try:
            read()
        except LatentzipError:
            pass
        except Exception as exc:  # the finding this script looks for
            self._save(f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}", blob)
        if time.monotonic() - began > self.slow:
            self._save(f"slow (over {self.slow:g} s)", blob)
        if time.monotonic() - self.reported > 60:  # libFuzzer ends the process without atexit
            self.reported = time.monotonic()
            print(self.summary(), flush=True)

    def _save(self, kind: str, blob: bytes) -> None:
        self.findings[kind] += 1
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / hashlib.sha256(blob).hexdigest()[:16]).write_bytes(blob)
        print(f"finding: {kind}", flush=True)

    def summary(self) -> str:
        minutes = (time.monotonic() - self.started) / 60
        found = ", ".join(f"{n} x {kind}" for kind, n in self.findings.most_common()) or "no findings"
        return f"{self.runs} runs in {minutes:.1f} min: {found}"


def _model(name: str):
    return load_model(name).bounded(None)


def structured(target: str, fuzzer: Fuzzer, model: str) -> Callable[[bytes], None]:
    """A function of a byte buffer that Hypothesis turns into one crafted file and reads."""
    if target == "ltz":
        codec = _model(model)
        shape = (codec.cfg.height, codec.cfg.width, codec.cfg.channels)
        strategy, read = crafted.ltz_files(codec.fingerprint, shape), codec.decode_named
    elif target == "lzc":
        strategy, read = crafted.lzc_files(), lambda blob: decompress(blob, max_length=MAX_LENGTH)
    else:
        strategy, read = crafted.catalogs(), lambda blob: catalog.unpack(blob, len(blob))

    @settings(database=None, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(blob: bytes) -> None:
        fuzzer.check(lambda: read(blob), blob)

    return one.hypothesis.fuzz_one_input


def mutated(fuzzer: Fuzzer, model: str) -> tuple[Callable[[bytes], None], list[bytes]]:
    """Reading a buffer as an image file's body (its checksum repaired), and seeds: real
    files made with the model, without their checksum."""
    codec = _model(model)
    images = codec.reconstruct(_sample_images(codec, 6))
    seeds = [codec.encode(images[:k], [f"img_{i:03d}.png" for i in range(k)], max_error=bound)[:-4]
             for k in (1, 3, 6) for bound in (None, 8) if bound is None or codec.refinement is not None]
    if codec.refinement is not None:  # lossless files whose two-level images are coded directly (version 2)
        flat = [(image > 127).astype(image.dtype) * 255 for image in images]
        seeds += [codec.encode(flat[:k], max_error=0)[:-4] for k in (1, 3)]

    def one(body: bytes) -> None:
        blob = body + container.crc32(body).to_bytes(4, "little")
        fuzzer.check(lambda: codec.decode_named(blob), blob)

    return one, seeds


def _sample_images(codec, count: int):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, codec.cfg.height, codec.cfg.width), dtype=np.uint8)


def mutate(rng: random.Random, blob: bytes, seeds: list[bytes]) -> bytes:
    """A few random edits: flips, overwrites, insertions, deletions, splices."""
    data = bytearray(blob)
    for _ in range(rng.randint(1, 4)):
        op, pos = rng.randrange(5), rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[pos % len(data)] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            data[pos % len(data)] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op == 2:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3:
            del data[pos : pos + rng.randint(1, 8)]
        else:
            other = rng.choice(seeds)
            start = rng.randrange(len(other) + 1)
            data[pos:] = other[start:]
    return bytes(data)


def run_random(one: Callable[[bytes], None], seeds: list[bytes] | None, stop: Callable[[], bool]) -> None:
    rng = random.Random(1)
    while not stop():
        if seeds:
            one(mutate(rng, rng.choice(seeds), seeds))
        else:
            one(rng.randbytes(rng.choice([16, 64, 256, 1024, 4096])))


def run_atheris(one: Callable[[bytes], None], seeds: list[bytes] | None, minutes: float, runs: int,
                corpus: Path) -> None:
    """libFuzzer over `one`. The structured targets start from random buffers long enough
    for Hypothesis to draw whole files, and may grow them at once (-len_control=0)."""
    corpus.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2)
    for seed in seeds or [rng.randbytes(size) for size in (256, 1024, 4096) for _ in range(3)]:
        (corpus / hashlib.sha256(seed).hexdigest()[:16]).write_bytes(seed)
    args = [sys.argv[0], f"-max_total_time={int(minutes * 60)}", "-rss_limit_mb=8192", "-max_len=8192",
            "-len_control=0", str(corpus)]
    if runs:
        args.insert(1, f"-runs={runs}")
    atheris.Setup(args, one)
    atheris.Fuzz()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=0, help="stop after this many inputs (0: only the time)")
    parser.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    parser.add_argument("--model", default="mnist:q3", help="the model image files are made for")
    parser.add_argument("--slow", type=float, default=5.0, help="seconds after which an input is a finding")
    parser.add_argument("--out", type=Path, default=Path("runs") / "fuzz", help="findings and corpus go here")
    args = parser.parse_args()
    fuzzer = Fuzzer(args.out / "findings" / args.target, args.slow)
    atexit.register(lambda: print(f"{args.target}: {fuzzer.summary()}", flush=True))
    if args.target == "ltz-bytes":
        one, seeds = mutated(fuzzer, args.model)
    else:
        one, seeds = structured(args.target, fuzzer, args.model), None
    engine = args.engine if args.engine != "auto" else "atheris" if atheris else "random"
    if engine == "atheris" and not atheris:
        parser.error("atheris is not installed (pip install atheris)")
    print(f"fuzzing {args.target} with {engine} for {args.minutes:g} min", flush=True)
    if engine == "atheris":
        run_atheris(one, seeds, args.minutes, args.runs, args.out / "corpus" / args.target)
    else:
        deadline = time.monotonic() + args.minutes * 60
        run_random(one, seeds, lambda: time.monotonic() > deadline or 0 < args.runs <= fuzzer.runs)


if __name__ == "__main__":
    main()
