"""Benchmark of scale-out: bulk jobs on Dask and DDP training, 1 against 2.

    python bench/scale.py [--images 70000] [--out bench/results/scale.json]

- Bulk: the Fashion-MNIST images (train then test, 70,000) are written as PNG files;
  `latentzip bulk encode -m fashion-mnist:q3` codes them into shards of 1,000 and
  `bulk decode` restores them, each on a local cluster of 1 and then 2 worker processes
  (one thread each). Throughput counts the job from submission to manifest, cluster
  start-up left out; each worker's peak memory is read from the worker itself.
- DDP: `latentzip train --procs 1` and `--procs 2` on the first 12,000 training images
  (deep dense network, global batch 128, 4 epochs): steps per second over the epochs and
  the final validation loss.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from latentzip import data
from latentzip.image.codec import ImageCodec
from latentzip.scale import bulk_decode, bulk_encode, cluster

import common

SCRIPT = "bench/scale.py"
MODEL = "fashion-mnist:q3"
TARGET_SPEEDUP = 1.7
DDP_RUN = ["--data", "fashion-mnist:train[:12000]", "--arch", "deep", "--batch-size", "128", "--epochs", "4", "-q"]


def write_pngs(root: Path, count: int) -> None:
    images = np.concatenate([data.load("fashion-mnist:train").images, data.load("fashion-mnist:test").images])
    for k, image in enumerate(tqdm(images[:count], desc="writing PNGs", leave=False)):
        folder = root / f"{k // 10_000:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        data.write_png(folder / f"{k:05d}.png", image)


def _peak_rss() -> int:
    """A worker's peak resident memory, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bulk(root: Path, workers: int) -> dict[str, Any]:
    with cluster.connect(workers=workers) as client:
        client.wait_for_workers(workers)
        started = time.perf_counter()
        encoded = bulk_encode(MODEL, root / "pngs", root / f"coded-{workers}", client=client, progress=False)
        encode_seconds = time.perf_counter() - started
        started = time.perf_counter()
        decoded = bulk_decode(root / f"coded-{workers}", root / f"restored-{workers}", client=client, progress=False)
        decode_seconds = time.perf_counter() - started
        memory = sorted(client.run(_peak_rss).values())
    images = len(encoded.rows)
    assert len(decoded.rows) == images
    return {"workers": workers, "images": images, "shards": encoded.shards,
            "encode_seconds": encode_seconds, "decode_seconds": decode_seconds,
            "encode_images_per_second": images / encode_seconds, "decode_images_per_second": images / decode_seconds,
            "bytes": sum(p.stat().st_size for p in (root / f"coded-{workers}").glob("shard-*.ltz")),
            "worker_peak_rss_bytes": memory}


def same_pixels(root: Path) -> bool:
    """The 1- and 2-worker outputs hold the same PNGs, pixel for pixel."""
    for one in (root / "restored-1").rglob("*.png"):
        two = root / "restored-2" / one.relative_to(root / "restored-1")
        if not np.array_equal(data.decode_image(one, str(one)), data.decode_image(two, str(two))):
            return False
    return True


def ddp(root: Path, procs: int) -> dict[str, Any]:
    path = root / f"ddp-{procs}.model"
    done = subprocess.run([sys.executable, "-m", "latentzip", "train", *DDP_RUN, "--procs", str(procs),
                           "-o", str(path)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"training with {procs} process(es) failed: {done.stderr[-2000:]}")
    history = ImageCodec.load(path).meta["history"]
    steps = int(np.ceil(12_000 * 0.9 / 128)) if procs == 1 else int(12_000 * 0.9 // 128)
    return {"procs": procs, "epochs": len(history), "steps_per_epoch": steps,
            "steps_per_second": steps * len(history) / sum(h["seconds"] for h in history),
            "final_val_loss": history[-1]["val_loss"], "final_val_psnr": history[-1]["val_psnr"]}


def markdown(result: dict[str, Any]) -> str:
    one, two = result["bulk"]
    lines = ["| job | 1 worker | 2 workers | speed-up |", "|---|---|---|---|"]
    for verb in ("encode", "decode"):
        a, b = one[f"{verb}_images_per_second"], two[f"{verb}_images_per_second"]
        lines.append(f"| bulk {verb}, images/s | {a:,.0f} | {b:,.0f} | {b / a:.2f}x |")
    mem = [max(r["worker_peak_rss_bytes"]) for r in (one, two)]
    lines.append(f"| peak memory per worker | {common.mib(mem[0])} | {common.mib(mem[1])} | |")
    d1, d2 = result["ddp"]
    lines.append(f"| DDP training, steps/s | {d1['steps_per_second']:.1f} | {d2['steps_per_second']:.1f} | "
                 f"{d2['steps_per_second'] / d1['steps_per_second']:.2f}x |")
    lines.append(f"| DDP final validation loss | {d1['final_val_loss']:.3f} | {d2['final_val_loss']:.3f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=70_000)
    parser.add_argument("--out", type=Path, default=common.REPO / "bench" / "results" / "scale.json")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"command": common.command_line(SCRIPT, sys.argv[1:] if argv is None else argv),
                              "date": common.now(), "machine": common.machine(("torch", "numpy", "dask", "distributed"))}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_pngs(root / "pngs", args.images)
        result["bulk"] = [bulk(root, workers) for workers in (1, 2)]
        result["same_pixels_with_1_and_2_workers"] = same_pixels(root)
        result["ddp"] = [ddp(root, procs) for procs in (1, 2)]
    one, two = result["bulk"]
    result["targets"] = {
        "bulk_encode_speedup": {"value": two["encode_images_per_second"] / one["encode_images_per_second"],
                                "target": TARGET_SPEEDUP},
        "bulk_decode_speedup": {"value": two["decode_images_per_second"] / one["decode_images_per_second"],
                                "target": TARGET_SPEEDUP},
    }
    for target in result["targets"].values():
        target["met"] = target["value"] >= target["target"]
    common.write_json(args.out, result)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
