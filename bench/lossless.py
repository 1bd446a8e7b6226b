"""Benchmark the lossless codec against xz, bzip2, zstd, brotli and paq8px on held-out 1 MB samples.

    python bench/lossless.py [--levels 6 6u 9] [--paq8px PATH] [--redundant] [--threads]
                             [--out bench/results/lossless.json]
    python bench/lossless.py --levels 1 2 3 --redundant --out bench/results/lossless-fast.json
    python bench/lossless.py --levels 4 6 9 --redundant --only "zeros 50 MB" --sample-threads 1 0 \
        --out bench/results/lossless-zeros.json

`--redundant` adds two generated inputs: 50 MB of zeros and a 20 MB log whose lines
mostly repeat (generated from a fixed seed; see `redundant_inputs`).

A level with a "u" suffix runs unprimed (primer=False), to show what the built-in
primer contributes; the others decide as the codec does (primed on these inputs).

paq8px -8, the reference for the strong level, is not packaged for pip, apt or npm; it
is run when its binary is given (--paq8px) or found on PATH as `paq8px`, and left out
of the results otherwise. Build it from its source
(github.com/hxim/paq8px, build/build-linux-with-gcc.sh). It takes a few minutes per
sample each way.

--sample-threads codes every sample on each of the given thread counts (default: one).
With --threads, each level also codes 8 MB of held-out prose with -T 1 and -T 2: the
bytes (the same for any thread count, which the run checks) and both speeds, each the
median of --repeats runs taken in turn with the other thread count's.

Each (level, sample, direction) runs in a fresh process, so speed is whole-process
(imports and model set-up included) and peak memory is that process's own. A warm-up
process first compiles the predictor (numba keeps it in its on-disk cache) and writes
Python's bytecode (even where PYTHONDONTWRITEBYTECODE is set), so that no timed run
pays for compiling either, as only the first use after installing would. The
classical tools run in this process on the same bytes, in the same run, so ratios
between them and us are fair even on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from latentzip.baselines import BYTE_BASELINES

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import common  # noqa: E402
import corpora  # noqa: E402

# The classical tools at their benchmark levels, under the names their users know.
CLASSICAL = {"xz -9e": "xz", "bzip2 -9": "bzip2", "zstd -19": "zstd", "brotli -q 11": "brotli"}
CHILD = """
import json, sys, time
t0 = time.perf_counter()
import latentzip.lossless as L
src, dst, spec, threads, bench = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
level, primer = int(spec.rstrip("u")), (False if spec.endswith("u") else None)
sys.path.insert(0, bench)
from common import peak_rss_bytes
data = open(src, 'rb').read()
t1 = time.perf_counter()
out = L.compress(data, level, primer, threads) if level else L.decompress(data, threads=threads)
t2 = time.perf_counter()
open(dst, 'wb').write(out)
print(json.dumps({"codec_s": t2 - t1, "process_s": time.perf_counter() - t0,
                  "peak_mb": peak_rss_bytes() / 2**20}))
"""

# A primed round trip compiles every function coding uses, including the priming path;
# a round trip at each of levels 1-3 compiles the fast kernel for its number of contexts.
WARM_UP = ("import latentzip.lossless as L; L.decompress(L.compress(bytes(range(256)), 6, True)); "
           "[L.decompress(L.compress(bytes(range(256)) * 64, level)) for level in (1, 2, 3)]")


def _child(src: Path, dst: Path, level: str, threads: int = 1) -> dict:
    """Compress (level "1".."9", "u" for unprimed) or decompress (level "0") src into dst in a
    fresh process on `threads` threads."""
    started = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst), level, str(threads), str(BENCH)],
                       capture_output=True, check=True)
    stats = json.loads(r.stdout)
    stats["wall_s"] = time.perf_counter() - started
    return stats


def _timed(cmd: list[str]) -> tuple[float, float]:
    """Run a command; return its wall seconds and peak memory (MiB, from wait4)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {out.strip()[-300:]}")
    peak = usage.ru_maxrss / 2**20 if sys.platform == "darwin" else usage.ru_maxrss / 2**10
    return time.perf_counter() - started, peak


def paq8px_version(binary: str) -> str:
    """The version paq8px prints in its banner, e.g. "v216"."""
    run = subprocess.run([binary], capture_output=True, text=True, timeout=60)
    out = run.stdout + run.stderr
    found = re.search(r"paq8px\S* data compressor (v\S+)", out)
    return found.group(1) if found else "unknown"


def bench_paq8px(binary: str, src: Path, workdir: Path) -> dict:
    """paq8px -8 on src both ways, each a whole process, checked byte for byte."""
    packed, restored = workdir / f"{src.name}.paq8px", workdir / f"{src.name}.paq8px.out"
    enc_s, enc_peak = _timed([binary, "-8", str(src), str(packed)])
    dec_s, dec_peak = _timed([binary, "-d", str(packed), str(restored)])
    if not restored.exists() or restored.read_bytes() != src.read_bytes():
        raise SystemExit(f"paq8px round trip failed on {src.name}")
    n = src.stat().st_size
    return {
        "bpb": round(8 * packed.stat().st_size / n, 4),
        "compress_kb_s": round(n / 1e3 / enc_s, 2),
        "decompress_kb_s": round(n / 1e3 / dec_s, 2),
        "peak_mb": round(max(enc_peak, dec_peak), 1),
    }


def bench_sample(name: str, data: bytes, levels: list[str], workdir: Path, paq8px: str | None,
                 thread_counts: list[int]) -> dict:
    n = len(data)
    row: dict = {"bytes": n, "classical_bpb": {}, "classical_bytes": {}, "latentzip": {}}
    for label, tool in CLASSICAL.items():
        row["classical_bytes"][label] = len(BYTE_BASELINES[tool].compress(data))
        row["classical_bpb"][label] = round(8 * row["classical_bytes"][label] / n, 6)
    best_tool = min(row["classical_bytes"], key=row["classical_bytes"].get)
    row["best_classical"] = best_tool
    src = workdir / f"{name}.bin"
    src.write_bytes(data)
    if paq8px:
        row["paq8px -8"] = bench_paq8px(paq8px, src, workdir)
        print(name, "paq8px -8", row["paq8px -8"], flush=True)
    for level, threads in ((level, threads) for level in levels for threads in thread_counts):
        key = level if threads == 1 else f"{level} -T {threads}"
        packed, restored = workdir / f"{name}.{level}.lzc", workdir / f"{name}.{level}.out"
        enc = _child(src, packed, level, threads)
        dec = _child(packed, restored, "0", threads)
        if restored.read_bytes() != data:
            raise SystemExit(f"round trip failed on {name} at level {level} on {threads} threads")
        bpb = 8 * packed.stat().st_size / n
        row["latentzip"][key] = {
            "bpb": round(bpb, 6),
            "ratio": round(n / packed.stat().st_size, 3),
            "bytes": packed.stat().st_size,
            "vs_best_classical": round(packed.stat().st_size / row["classical_bytes"][best_tool], 4),
            "compress_kb_s": round(n / 1e3 / enc["wall_s"], 1),
            "decompress_kb_s": round(n / 1e3 / dec["wall_s"], 1),
            "compress_kb_s_codec_only": round(n / 1e3 / enc["codec_s"], 1),
            "decompress_kb_s_codec_only": round(n / 1e3 / dec["codec_s"], 1),
            "peak_mb": round(max(enc["peak_mb"], dec["peak_mb"]), 1),
        }
        if paq8px:
            ref, ours = row["paq8px -8"], row["latentzip"][key]
            ours["vs_paq8px"] = round(bpb / ref["bpb"], 4)
            ours["speed_vs_paq8px"] = round(min(ours["compress_kb_s"] / ref["compress_kb_s"],
                                                ours["decompress_kb_s"] / ref["decompress_kb_s"]), 2)
        print(name, key, row["latentzip"][key], flush=True)
    return row


def bench_threads(data: bytes, levels: list[str], workdir: Path, repeats: int) -> dict:
    """-T 1 against -T 2 on `data`: bytes and whole-process speeds, level by level.

    The two thread counts run in turn `repeats` times (-T 1, -T 2, -T 1, ...), and each
    speed is the median of its runs: on a shared machine a single pair can land one run
    in a busy moment and the other in a quiet one. Every run's speeds are kept, and the
    speeds of the coding call alone (without the process's start-up), which show how
    the coding itself scales."""
    src = workdir / "threads.bin"
    src.write_bytes(data)
    rows: dict = {"bytes": len(data), "repeats": repeats}
    kinds = ("compress", "decompress", "compress_codec_only", "decompress_codec_only")
    for level in levels:
        runs: dict[int, list[tuple[float, ...]]] = {1: [], 2: []}
        row: dict = {}
        for _ in range(repeats):
            for threads in (1, 2):
                packed, restored = workdir / f"threads.{level}.{threads}.lzc", workdir / f"threads.{level}.{threads}.out"
                enc, dec = _child(src, packed, level, threads), _child(packed, restored, "0", threads)
                if restored.read_bytes() != data:
                    raise SystemExit(f"round trip failed at level {level} on {threads} threads")
                runs[threads].append(tuple(len(data) / 1e3 / s for s in (enc["wall_s"], dec["wall_s"], enc["codec_s"],
                                                                          dec["codec_s"])))
                peak = max(enc["peak_mb"], dec["peak_mb"], row.get(f"T{threads}", {}).get("peak_mb", 0.0))
                row[f"T{threads}"] = {"bytes": packed.stat().st_size, "peak_mb": round(peak, 1)}
        for threads, speeds in runs.items():
            row[f"T{threads}"] |= {f"{kind}_kb_s": round(statistics.median(run[k] for run in speeds), 1)
                                   for k, kind in enumerate(kinds)}
            row[f"T{threads}"]["runs_kb_s"] = [[round(v, 1) for v in run] for run in speeds]
        one, two = row["T1"], row["T2"]
        row["same_bytes"] = (workdir / f"threads.{level}.1.lzc").read_bytes() == (workdir / f"threads.{level}.2.lzc").read_bytes()
        row["speedup"] = {kind: round(two[f"{kind}_kb_s"] / one[f"{kind}_kb_s"], 2) for kind in kinds}
        row["speedup_of_each_pair"] = {kind: [round(b[k] / a[k], 2) for a, b in zip(runs[1], runs[2], strict=True)]
                                       for k, kind in enumerate(kinds)}
        row["bpb"] = round(8 * one["bytes"] / len(data), 6)
        rows[level] = row
        print("threads", level, row, flush=True)
    return rows


def redundant_inputs() -> dict[str, bytes]:
    """50 MB of zeros, and 20 MB of web-server-like log lines: 200 distinct lines, 40 of
    which make up 90% of the log, picked by a seeded generator (the same on every machine)."""
    rng = random.Random(16)
    lines = [f"2026-11-{rng.randint(1, 29):02d} 12:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} INFO "
             f"worker-{rng.randint(0, 7)} GET /api/v1/items/{rng.randint(0, 999)} served in {rng.randint(1, 499)} ms\n"
             for _ in range(200)]
    log = bytearray()
    while len(log) < 20_000_000:
        log += lines[rng.randrange(40) if rng.random() < 0.9 else rng.randrange(200)].encode()
    return {"zeros 50 MB": bytes(50_000_000), "log 20 MB": bytes(log[:20_000_000])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", nargs="+", default=["6", "6u", "9"])
    parser.add_argument("--paq8px", default=shutil.which("paq8px"), help="the paq8px binary (default: on PATH)")
    parser.add_argument("--redundant", action="store_true", help="also code 50 MB of zeros and a 20 MB log")
    parser.add_argument("--threads", action="store_true", help="also code 8 MB of prose with -T 1 and -T 2")
    parser.add_argument("--repeats", type=int, default=5, metavar="K",
                        help="with --threads: runs of each thread count, taken in turn (speeds are their medians)")
    parser.add_argument("--sample-threads", nargs="+", type=int, default=[1], metavar="N",
                        help="code every sample with each of these -T values (0: one per core; "
                             "rows other than 1 are named e.g. '6 -T 0')")
    parser.add_argument("--only", nargs="+", metavar="SAMPLE",
                        help="code only these samples (names as in the JSON, e.g. 'zeros 50 MB')")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "lossless.json"))
    args = parser.parse_args()
    if args.paq8px and not os.access(args.paq8px, os.X_OK):
        parser.error(f"--paq8px: {args.paq8px} is not an executable file")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    samples = corpora.held_out() | (redundant_inputs() if args.redundant else {})
    if args.only:
        if unknown := set(args.only) - set(samples):
            parser.error(f"--only: no sample named {', '.join(sorted(unknown))}; there are {', '.join(samples)}")
        samples = {name: data for name, data in samples.items() if name in args.only}
    warm_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", WARM_UP], check=True, env=warm_env)
    with tempfile.TemporaryDirectory() as tmp:
        rows = {name: bench_sample(name, data, args.levels, Path(tmp), args.paq8px, args.sample_threads)
                for name, data in samples.items()}
        threads = bench_threads(corpora.large(), args.levels, Path(tmp), args.repeats) if args.threads else None
    result = {
        "samples": rows,
        **({"threads": threads, "large": corpora.LARGE} if threads else {}),
        "paq8px": (f"paq8px {paq8px_version(args.paq8px)} -8, built from source, run in the same run"
                   if args.paq8px else "not run (no paq8px binary)"),
        "held_out": corpora.HELD_OUT,
        "tuned_on": corpora.TUNING,
        "primer": corpora.PRIMER,
        "speed": "KB/s = 1000 input bytes per second of a whole fresh process (imports, set-up, file I/O), "
                 "on one thread unless the row says otherwise; "
                 "speed_vs_paq8px = the smaller of the two speed-ups over paq8px, direction by direction",
        "machine": common.machine(packages=("numpy", "numba", "constriction")),
        "date": common.now(),
    }
    common.write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
