"""Benchmark of watermark removal: the trained network against its peers, in one run.

    python bench/watermark.py [--steps 3000] [--train photos opencv wallpapers] [--out bench/results/watermark.json]

- Training images (--train): as bench/colorize.py's (the photos:train patches, OpenCV's
  colour sample photographs, KDE's wallpaper photographs), marked afresh at every step
  with the library's default marks (DejaVu and STIX text, drawn badges) and the training
  share of openclipart's clip art (bench/sets.py `marks`). The network trains with the
  library's defaults for a fixed number of steps, so that the figures do not depend on
  how busy the machine is; as the library does, it sets one in ten of the images (at
  most 32) aside and picks on them the coverage threshold below which it leaves pixels
  alone.
- Test images: the five sporco photographs at full size (never trained on), each marked
  --draws times with held-out marks only: text in the Liberation fonts and the test share
  of the clip art, none of which training saw (`latentzip.apps.watermark`).
- Methods: the watermarked input itself; latentzip's network (`latentzip.apps.denoise`);
  scikit-image's biharmonic inpainting told the true mask (every pixel a mark touches);
  median filters of 3x3 and 5x5. PSNR against the clean photograph, averaged over the
  marked images, and the PSNR of their mean squared error (which a few easy images
  cannot lift); also the PSNR inside the mask alone.

A figure of the first draw of three photographs goes to bench/results/watermark.png.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from latentzip import baselines, metrics
from latentzip.apps import Marks, UNetTrainConfig, denoise, train_unmarker, watermark
from latentzip.fsio import write_bytes
from latentzip.report import figures

import colorize
import common
import sets

SCRIPT = "bench/watermark.py"
METHODS = ("watermarked input", "median 3x3", "median 5x5", "inpainting, true mask", "latentzip")
FIGURE = ("kodim23", "monarch", "tulips")
FIGURE_CROP = 256  # the figure shows this square of each photograph, around its densest mark

Method = Callable[[list[np.ndarray], list[np.ndarray]], list[np.ndarray]]  # (marked, true coverages) -> cleaned


def score(truth: list[np.ndarray], made: list[np.ndarray], covers: list[np.ndarray]) -> dict[str, Any]:
    psnr = [metrics.psnr(t, m) for t, m in zip(truth, made, strict=True)]
    inside = [metrics.mse(t[c > 0], m[c > 0]) for t, m, c in zip(truth, made, covers, strict=True)]
    return {"psnr": float(np.mean(psnr)), "psnr_of_mean_mse": metrics.psnr_of_mean_mse(truth, made),
            "psnr_in_mask": metrics.psnr_from_mse(float(np.mean(inside))), "per_image_psnr": psnr}


def figure(rows: dict[str, list[np.ndarray]]) -> bytes:
    labelled = [(name, images) for name, images in rows.items()]
    grid = Image.open(io.BytesIO(figures.image_grid(labelled))).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def window(cover: np.ndarray) -> tuple[slice, slice]:
    """The FIGURE_CROP square holding the most mark."""
    h, w = cover.shape
    side = min(FIGURE_CROP, h, w)
    sums = np.pad(cover, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    totals = sums[side:, side:] - sums[:-side, side:] - sums[side:, :-side] + sums[:-side, :-side]
    top, left = np.unravel_index(int(np.argmax(totals)), totals.shape)
    return slice(top, top + side), slice(left, left + side)


def markdown(result: dict[str, Any]) -> str:
    test = result["test"]
    lines = ["| method | mean PSNR dB | PSNR of mean MSE dB | PSNR inside the marks dB | seconds |", "|---|---|---|---|---|"]
    for name in METHODS:
        r = test["methods"][name]
        bold = "**" if name == "latentzip" else ""
        lines.append(f"| {bold}{name}{bold} | {r['psnr']:.2f} | {r['psnr_of_mean_mse']:.2f} | {r['psnr_in_mask']:.2f} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="training steps of the network")
    parser.add_argument("--crop", type=int, default=None, help="side of the training crops (default: the library's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the steps, not the figures, depend on it)")
    parser.add_argument("--draws", type=int, default=3, help="markings of each test photograph")
    parser.add_argument("--train", nargs="+", default=["photos", "opencv", "wallpapers"], choices=list(colorize.SOURCES),
                        help="training images")
    parser.add_argument("--out", default="bench/results/watermark.json")
    parser.add_argument("--figure", default="bench/results/watermark.png")
    parser.add_argument("--save-model", default=None, metavar="PATH", help="also write the trained model, to look into")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    where = sets.marks()
    train_marks, test_marks = Marks.from_dir(where / "train"), Marks.from_dir(where / "test", with_default=False)
    train = colorize.training_images(args.train)
    started = time.perf_counter()
    trained = train_unmarker(train, UNetTrainConfig(steps=args.steps, crop=args.crop, seed=args.seed), train_marks, progress=True)
    train_seconds = time.perf_counter() - started
    if args.save_model:
        trained.model.save(args.save_model)

    photos = sets.validation_photos()
    names = [f"{name}#{draw}" for draw in range(args.draws) for name in photos]
    truth = [image for _ in range(args.draws) for image in photos.values()]
    marked, covers = watermark(truth, test_marks, seed=args.seed + 1)
    methods: dict[str, Method] = {
        "watermarked input": lambda images, covers: images,
        "median 3x3": lambda images, covers: baselines.median_filtered(images, 3),
        "median 5x5": lambda images, covers: baselines.median_filtered(images, 5),
        "inpainting, true mask": lambda images, covers: baselines.inpainted(images, [c > 0 for c in covers]),
        "latentzip": lambda images, covers: denoise(trained.model, images),
    }
    scores, outputs = {}, {}
    for name, method in methods.items():
        started = time.perf_counter()
        outputs[name] = method(marked, covers)
        scores[name] = {**score(truth, outputs[name], covers), "seconds": time.perf_counter() - started}

    result: dict[str, Any] = {
        "benchmark": "watermark",
        "command": common.command_line(SCRIPT, argv),
        "date": common.now(),
        "machine": common.machine(("torch", "numpy", "scikit-image", "scipy")),
        "training": {
            "images": len(train),
            "pixels": int(sum(im.shape[0] * im.shape[1] for im in train)),
            "sources": [colorize.SOURCES[source] for source in args.train],
            "marks": train_marks.describe(),
            "config": {k: v for k, v in vars(trained.config).items() if k != "threads"},
            "steps": trained.steps,
            "seconds": train_seconds,
            "loss": trained.model.meta["loss"],
            "coverage_threshold": trained.model.meta["coverage_threshold"],
            "calibration": trained.model.meta["calibration"],
        },
        "test": {
            "images": len(truth), "names": names, "marks": test_marks.describe(),
            "mean_coverage": float(np.mean([(c > 0).mean() for c in covers])),
            "methods": scores,
        },
        "peak_rss_bytes": common.peak_rss_bytes(),
    }
    ours, peer = scores["latentzip"], scores["inpainting, true mask"]
    result["target_met"] = ours["psnr"] > peer["psnr"] and ours["psnr_of_mean_mse"] > peer["psnr_of_mean_mse"]
    common.write_json(args.out, result)
    shown = [names.index(f"{name}#0") for name in FIGURE]
    crops = {k: window(covers[k]) for k in shown}
    rows = {name: [outputs[name][k][crops[k]] for k in shown] for name in ("watermarked input", "inpainting, true mask",
                                                                            "latentzip")}
    rows["clean"] = [truth[k][crops[k]] for k in shown]
    write_bytes(args.figure, figure(rows))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
