"""Benchmark of colourisation: the trained network against its two peers, in one run.

    python bench/colorize.py [--steps 1500] [--seeds 3] [--train photos opencv] [--out bench/results/colorize.json]

- Training images (--train): the photos:train patches (96x96, from five scikit-image
  photographs) and OpenCV's colour sample photographs (bench/sets.py's `opencv`, reduced
  2x); `wallpapers` (KDE's photographs) and `textures` (ufoai's material textures) can
  be added. The network trains with the library's defaults for a fixed number of steps
  on one thread, so that the figures do not depend on how busy the machine is; the
  mean-chroma table is fitted on the same images. Runs of different seeds differ by up
  to 1.4 dB, so --seeds networks are trained (seeds --seed, --seed + 1, ...) and
  latentzip's scores are their mean, each seed's kept beside it.
- Test images: the five sporco photographs at full size (768x512 and 702x574, never
  trained on), and the photos:test patches (two other scikit-image photographs).
- Each test image is made grey (`latentzip.apps.as_grey`: the same CIELAB lightness) and
  coloured by each method: latentzip's network, the grey image itself, and the table of
  the mean chroma of each grey level. Scores against the true colour image: PSNR on RGB
  and the mean CIEDE2000 colour difference (scikit-image), per image, then averaged.

A figure of the sporco photographs (latentzip's: the first seed's network) goes to
bench/results/colorize.png (256 colours, to keep it small).
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

from latentzip import baselines, data, metrics
from latentzip.apps import UNetTrainConfig, as_grey, colorize, train_colorizer
from latentzip.fsio import write_bytes
from latentzip.report import figures

import common
import sets

SCRIPT = "bench/colorize.py"
METHODS = ("grey", "mean-chroma table", "latentzip")
FIGURE_SIDE = 192  # the figure shows each photograph at this width


SOURCES = {
    "photos": "photos:train (480 patches 96x96 of five scikit-image photographs)",
    "opencv": "OpenCV's sample colour photographs (bench/sets.py opencv, reduced 2x)",
    "wallpapers": "KDE Plasma's wallpaper photographs (bench/sets.py wallpapers, 640x400)",
    "textures": "ufoai's photo-derived material textures, train split (bench/sets.py textures)",
}


def training_images(sources: Sequence[str]) -> list[np.ndarray]:
    images: list[np.ndarray] = []
    for source in sources:
        spec = "photos:train" if source == "photos" else str(sets.prepare(source) / "train")
        images.extend(data.load(spec).images)
    return images


def score(truth: Sequence[np.ndarray], made: Sequence[np.ndarray]) -> dict[str, Any]:
    psnr = [metrics.psnr(t, m) for t, m in zip(truth, made, strict=True)]
    error = [metrics.ciede2000(t, m) for t, m in zip(truth, made, strict=True)]
    return {"psnr": float(np.mean(psnr)), "ciede2000": float(np.mean(error)), "per_image_psnr": psnr,
            "per_image_ciede2000": error}


def run_methods(methods: dict[str, Callable[[list[np.ndarray]], list[np.ndarray]]],
                truth: list[np.ndarray]) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    grey = [as_grey(im) for im in truth]
    results, outputs = {}, {}
    for name, method in methods.items():
        started = time.perf_counter()
        outputs[name] = method(grey)
        seconds = time.perf_counter() - started
        results[name] = {**score(truth, outputs[name]), "seconds": seconds}
    return results, outputs


def pooled(results: dict[str, Any], runs: dict[int, str]) -> dict[str, Any]:
    """The runs' results (name by seed) as one: per-image scores and times averaged over
    the seeds, each seed's mean scores kept."""
    each = [results.pop(name) for name in runs.values()]
    mean = {key: np.mean([r[key] for r in each], axis=0).tolist() for key in ("per_image_psnr", "per_image_ciede2000")}
    return {"psnr": float(np.mean(mean["per_image_psnr"])), "ciede2000": float(np.mean(mean["per_image_ciede2000"])),
            **mean, "seconds": float(np.mean([r["seconds"] for r in each])),
            "seeds": {str(seed): {"psnr": r["psnr"], "ciede2000": r["ciede2000"]} for seed, r in zip(runs, each)}}


def figure(names: Sequence[str], truth: list[np.ndarray], outputs: dict[str, list[np.ndarray]]) -> bytes:
    def small(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        return np.asarray(Image.fromarray(image).resize((FIGURE_SIDE, round(h * FIGURE_SIDE / w)), Image.LANCZOS))

    rows = [(name, [small(im) for im in outputs[name]]) for name in METHODS] + [("true colour", [small(im) for im in truth])]
    grid = Image.open(io.BytesIO(figures.image_grid(rows))).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def markdown(result: dict[str, Any]) -> str:
    lines = ["| test set | images | method | PSNR dB | CIEDE2000 |", "|---|---|---|---|---|"]
    for label, section in result["test"].items():
        for name in METHODS:
            r = section["methods"][name]
            bold = "**" if name == "latentzip" else ""
            lines.append(f"| {label} | {section['images']} | {bold}{name}{bold} | {r['psnr']:.2f} | {r['ciede2000']:.2f} |")
    sporco = result["test"]["sporco"]
    lines += ["", "| photograph | " + " | ".join(f"{n} PSNR / CIEDE2000" for n in METHODS) + " |", "|---" * 4 + "|"]
    for i, name in enumerate(sporco["names"]):
        cells = [f"{sporco['methods'][m]['per_image_psnr'][i]:.2f} / {sporco['methods'][m]['per_image_ciede2000'][i]:.2f}"
                 for m in METHODS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps of the network")
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--seeds", type=int, default=3, help="networks trained, one per seed; latentzip's scores are their mean")
    parser.add_argument("--train", nargs="+", default=["photos", "opencv"], choices=list(SOURCES), help="training images")
    parser.add_argument("--out", default="bench/results/colorize.json")
    parser.add_argument("--figure", default="bench/results/colorize.png")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(1)  # what the timings assume, on a shared 2-core machine
    train = training_images(args.train)
    runs = {seed: f"latentzip, seed {seed}" for seed in range(args.seed, args.seed + args.seeds)}
    trained = {}
    for seed in runs:
        started = time.perf_counter()
        trained[seed] = (train_colorizer(train, UNetTrainConfig(steps=args.steps, seed=seed), progress=True),
                         time.perf_counter() - started)
    started = time.perf_counter()
    table = baselines.ChromaTable.fit(train)
    table_seconds = time.perf_counter() - started
    methods: dict[str, Callable[[list[np.ndarray]], list[np.ndarray]]] = {
        "grey": baselines.grey_as_colour,
        "mean-chroma table": table.colorize,
        **{name: (lambda grey, model=trained[seed][0].model: colorize(model, grey)) for seed, name in runs.items()},
    }
    validation = sets.validation_photos()
    sporco, sporco_out = run_methods(methods, list(validation.values()))
    patches = list(data.load("photos:test").images)
    photos, _ = run_methods(methods, patches)
    for section in (sporco, photos):
        section["latentzip"] = pooled(section, runs)
    sporco_out["latentzip"] = sporco_out[runs[args.seed]]
    first = trained[args.seed][0]
    result: dict[str, Any] = {
        "benchmark": "colorize",
        "command": common.command_line(SCRIPT, argv),
        "date": common.now(),
        "machine": common.machine(("torch", "numpy", "scikit-image")),
        "training": {
            "images": len(train),
            "colour_images_used": first.images,
            "pixels": int(sum(im.shape[0] * im.shape[1] for im in train)),
            "sources": [SOURCES[source] for source in args.train],
            "config": {k: v for k, v in vars(first.config).items() if k not in ("threads", "seed")},
            "steps": first.steps,
            "runs": {str(seed): {"seconds": seconds, "loss": run.model.meta["loss"]} for seed, (run, seconds) in trained.items()},
            "table_seconds": table_seconds,
        },
        "test": {
            "sporco": {"images": len(validation), "names": list(validation), "methods": sporco},
            "photos:test": {"images": len(patches), "methods": photos},
        },
        "peak_rss_bytes": common.peak_rss_bytes(),
    }
    for section in result["test"].values():
        ours, others = section["methods"]["latentzip"], [section["methods"][m] for m in METHODS[:-1]]
        section["best_psnr"] = ours["psnr"] > max(o["psnr"] for o in others)
        section["best_ciede2000"] = ours["ciede2000"] < min(o["ciede2000"] for o in others)
    common.write_json(args.out, result)
    write_bytes(args.figure, figure(list(validation), list(validation.values()), sporco_out))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
