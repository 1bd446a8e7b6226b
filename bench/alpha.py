"""Benchmark of the alpha bounds the encoder chooses, against lossless alpha, in one run.

    python bench/alpha.py [--sets emoji stamps] [--images 200] [--out bench/results/alpha.json]

Images with alpha (bench/sets.py: the first test emoji, 64x64 RGBA, and tuxpaint's
stamps, grey + alpha and RGBA cut-outs of up to 256 px, glyphs among them) are coded
into one file per shipped photo preset (`photo:q1` .. `photo:q8`, at effort 0: fitting
the latents changes the colour, not how bounds are chosen), once with the bounds the
encoder chooses and once with lossless alpha (`alpha_error=0`). Reported: bytes per
image and mean PSNR of what shows (metrics.py) at each preset, the bound each file
took (or "per image"), and the chosen bounds' bytes as a share of lossless alpha's at
equal mean PSNR, over the whole range both cover and over its part above 40 dB, where
one bound for a whole file used to cost the glyphs more than it saved.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from latentzip import metrics
from latentzip.image.catalog import PER_IMAGE
from latentzip.image.codec import file_catalog
from latentzip.image.zoo import load_model

import common
import sets

SCRIPT = "bench/alpha.py"
SETS = ("emoji", "stamps")
PRESETS = [f"photo:q{q}" for q in range(1, 9)]
HIGH_DB = 40.0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--images", type=int, default=200, help="test images of each set, the first in name order")
    parser.add_argument("--out", type=Path, default=common.REPO / "bench" / "results" / "alpha.json")
    return parser.parse_args(argv)


def test_images(name: str, count: int) -> list[np.ndarray]:
    paths = sorted((sets.prepare(name) / "test").glob("*.png"))[:count]
    return [np.asarray(Image.open(path)) for path in paths]


def measure(images: list[np.ndarray], alpha_error: int | None) -> list[dict[str, Any]]:
    """One file per preset: its size, mean PSNR, alpha bound and coding time."""
    points = []
    for preset in PRESETS:
        codec = load_model(preset).at_effort(0)
        started = time.perf_counter()
        blob = codec.encode(images, alpha_error=alpha_error)
        encode_seconds = time.perf_counter() - started
        bound = file_catalog(blob).alpha_error
        points.append({"preset": preset, "bytes_per_image": len(blob) / len(images),
                       "psnr": metrics.mean_psnr(images, codec.decode(blob)),
                       "alpha_bound": "per image" if bound == PER_IMAGE else bound,
                       "encode_seconds": encode_seconds})
    return points


def compare(chosen: list[dict[str, Any]], lossless: list[dict[str, Any]]) -> dict[str, Any]:
    ours, theirs = common.frontier(chosen), common.frontier(lossless)
    high = [p for p in ours if p[0] > HIGH_DB], [p for p in theirs if p[0] > HIGH_DB]
    return {"chosen_vs_lossless": common.mean_ratio(ours, theirs),
            f"chosen_vs_lossless_above_{HIGH_DB:g}_db": common.mean_ratio(*high)}


def markdown(result: dict[str, Any]) -> str:
    rows = ["| set | images | chosen vs lossless alpha | above 40 dB | bounds q1..q8 |", "|---|---|---|---|---|"]
    for name, found in result["sets"].items():
        cells = [found["ratios"]["chosen_vs_lossless"], found["ratios"][f"chosen_vs_lossless_above_{HIGH_DB:g}_db"]]
        shown = [f"{c['ratio']:.3f}x ({c['range_db'][0]:.1f}-{c['range_db'][1]:.1f} dB)" if c else "–" for c in cells]
        bounds = ", ".join(str(p["alpha_bound"]) for p in found["chosen"])
        rows.append(f"| {name} | {found['images']} | {shown[0]} | {shown[1]} | {bounds} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    result: dict[str, Any] = {"benchmark": "alpha", "command": common.command_line(SCRIPT, argv),
                              "date": common.now(), "commit": common.git_commit(), "machine": common.machine(),
                              "sets": {}}
    for name in args.sets:
        images = test_images(name, args.images)
        chosen, lossless = measure(images, None), measure(images, 0)
        result["sets"][name] = {"images": len(images), "chosen": chosen, "lossless": lossless,
                                "ratios": compare(chosen, lossless)}
        print(f"{name}: done", file=sys.stderr)
    common.write_json(args.out, result)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
