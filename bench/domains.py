"""Benchmark of codecs trained with the CLI's defaults on domain collections.

    python bench/domains.py [--sets emoji textures satellite icons mnist fashion-mnist]
                            [--minutes 15] [--no-factorized] [--variants V ...]
                            [--models DIR] [--out bench/results/domains.json]

For each collection (see sets.py; MNIST and Fashion-MNIST as a regression check) this
does what a new user would: `latentzip train --data TRAIN -o M --minutes 15` and
nothing else, then codes the whole test split into one file at each of the model's
presets. The defaults give every collection but the grey 28x28 ones a convolutional
model with the hyperprior; each of them is also trained with `--prior factorized`, to set
the two latent codecs side by side from the same start (grey 28x28 images get a dense
model, whose prior is factorized; `--variants default deep` sets the dense network
beside the default on the 32x32 icons).
WebP (method 6), AVIF, JPEG XL and JPEG code the same images in the same run, one file
per image, with alpha where the format has it (JPEG codes the image composited over
black). Every rate is real bytes, headers included; quality is
mean PSNR of what shows (metrics.py: colour premultiplied by alpha, plus alpha).

Derived: each codec's bytes as a share of WebP's at equal PSNR, the geometric mean over
the PSNR range both cover (common.mean_ratio), the hyperprior's share of the factorized
prior's, and encode + decode throughput against WebP's at the nearest PSNR. Models are
kept in --models DIR and reused when present, so a run can be resumed or re-measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

import latentzip
from latentzip import baselines, data, metrics

import common
import sets
from common import Point, frontier, mean_ratio

SCRIPT = "bench/domains.py"
SETS = ("emoji", "textures", "satellite", "icons", "mnist", "fashion-mnist")
BUILTIN = {"mnist", "fashion-mnist"}  # trained from their train split, tested on their test split
PEERS = ("webp", "avif", "jxl", "jpeg")
BUILTIN_PEERS = ("webp",)  # the lossy benchmark measures the others on 28x28 images
TARGET_WEBP = {"emoji": 0.5}  # the bound on bytes as a share of WebP's; 0.8 elsewhere
TARGET_HYPER = 0.85  # the hyperprior's (the default's) share of the factorized prior's bytes, on textures and emoji
FASHION_25DB_TODAY = 41.0  # B/image at 25 dB before this codec generation (bench/results/lossy.json)



# The default (a hyperprior, starting from the shipped photo network where the images
# allow), the factorized prior from the same start (the photo network's transforms), and
# both priors from a linear start (a block KLT), to see how much the start accounts for.
VARIANTS = {"default": [], "factorized": ["--prior", "factorized"], "linear-start": ["--start", "linear"],
            "factorized-linear-start": ["--prior", "factorized", "--start", "linear"],
            "deep": ["--arch", "deep"]}  # the dense network, on small images (icons)
# Each comparison of the priors: (hyperprior variant, factorized variant, derived key, label in the targets)
PRIOR_PAIRS = (("default", "factorized", "hyperprior_vs_factorized", ""),
               ("linear-start", "factorized-linear-start", "hyperprior_vs_factorized_linear_start", ", linear start"))


def train_model(name: str, variant: str, minutes: float, models: Path) -> tuple[Path, dict[str, Any]]:
    """The model the CLI trains on the set's training images with its defaults (plus
    the variant's flags), reused if already in `models`."""
    path = models / f"{name}-{variant}.model"
    record_path = path.with_suffix(".json")
    if path.exists() and record_path.exists():
        return path, json.loads(record_path.read_text())
    spec = f"{name}:train" if name in BUILTIN else str(sets.prepare(name) / "train")
    command = ["latentzip", "train", "--data", spec, "-o", str(path), "--minutes", f"{minutes:g}", *VARIANTS[variant]]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"training {name} ({variant}) failed:\n{done.stderr[-3000:]}")
    output = [common.portable(line) for line in done.stderr.splitlines() if line.strip() and not line.startswith("epoch")]
    record = {"command": common.portable(" ".join(command)), "seconds": time.monotonic() - started, "output": output}
    common.write_json(record_path, record)
    return path, record


def test_images(name: str) -> list[np.ndarray]:
    """The test split, grey images as (H, W): as the codecs decode them and the PNGs hold them."""
    if name in BUILTIN:
        images = data.load(f"{name}:test").images
        return list(images[..., 0] if images.shape[-1] == 1 else images)
    return [np.asarray(Image.open(p)) for p in sorted((sets.prepare(name) / "test").glob("*.png"))]


def measure_model(path: Path, images: list[np.ndarray]) -> list[Point]:
    """Every preset of a model, each coding all of `images` into one file."""
    codec = latentzip.load_model(path)
    pixels = sum(im.shape[0] * im.shape[1] for im in images)
    points = []
    for preset in codec.presets():
        coder = codec.preset(preset)
        t0 = time.perf_counter()
        blob = coder.encode(images)
        t1 = time.perf_counter()
        decoded = coder.decode(blob)
        t2 = time.perf_counter()
        points.append({
            "preset": preset, "quality": coder.quality, "max_error": coder.max_error,
            "bytes_per_image": len(blob) / len(images), "bpp": 8 * len(blob) / pixels,
            "psnr": metrics.mean_psnr(images, decoded), "ssim": metrics.mean_ssim(images, decoded),
            "encode_s": t1 - t0, "decode_s": t2 - t1, "images_per_s": len(images) / (t2 - t0),
        })
    return points


def measure_peer(codec: str, images: list[np.ndarray]) -> list[Point]:
    """A classical codec's sweep; JPEG, which has no alpha, on the composite over black."""
    baseline = baselines.IMAGE_BASELINES[codec]
    with_alpha = [im.ndim == 3 and im.shape[-1] in (2, 4) for im in images]
    if codec == "jpeg" and any(with_alpha):
        points = baselines.sweep(baseline, [baselines.composite(im) if alpha else im
                                            for im, alpha in zip(images, with_alpha)], progress=False)
        for p in points:
            p["note"] = "images with alpha composited over black, alpha not coded: PSNR of the composite"
    else:
        points = baselines.sweep(baseline, images, progress=False)
    for p in points:
        p["images_per_s"] = p["images"] / (p["encode_s"] + p["decode_s"])
    return points


def derive(result: dict[str, Any]) -> dict[str, Any]:
    """Ratios at equal PSNR and throughput, from the measured points."""
    curves = {f"latentzip-{variant}": frontier(m["points"]) for variant, m in result["models"].items()}
    peers = {codec: frontier(points) for codec, points in result["baselines"].items()}
    out: dict[str, Any] = {"vs": {}, "throughput": {}}
    for ours, curve in curves.items():
        out["vs"][ours] = {codec: mean_ratio(curve, theirs) for codec, theirs in peers.items()}
    for hyper, factorized, key, _ in PRIOR_PAIRS:
        if {f"latentzip-{hyper}", f"latentzip-{factorized}"} <= curves.keys():
            out[key] = mean_ratio(curves[f"latentzip-{hyper}"], curves[f"latentzip-{factorized}"])
    webp = result["baselines"].get("webp", [])
    for variant, model in result["models"].items():
        rows = []
        for p in model["points"]:
            match = min(webp, key=lambda w: abs(w["psnr"] - p["psnr"]), default=None)
            if match is not None:
                rows.append({"preset": p["preset"], "psnr": p["psnr"], "images_per_s": p["images_per_s"],
                             "webp_psnr": match["psnr"], "webp_images_per_s": match["images_per_s"]})
        out["throughput"][f"latentzip-{variant}"] = rows
    return out


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the figure it rests on."""
    out: dict[str, Any] = {}
    for name, r in results.items():
        webp = (r["derived"]["vs"].get("latentzip-default") or {}).get("webp")
        if name not in BUILTIN and webp is not None:
            bound = TARGET_WEBP.get(name, 0.8)
            out[f"{name}: at most {bound}x WebP"] = {"figure": webp, "met": webp["ratio"] <= bound}
        for _, _, key, start in PRIOR_PAIRS:
            hvf = r["derived"].get(key)
            if name in ("textures", "emoji") and hvf is not None:
                out[f"{name}: hyperprior at most {TARGET_HYPER}x factorized{start}"] = {
                    "figure": hvf, "met": hvf["ratio"] <= TARGET_HYPER}
        if name == "fashion-mnist" and "default" in r["models"]:
            at25 = common.bytes_at(frontier(r["models"]["default"]["points"]), 25.0)
            out["fashion-mnist: at most 41 B/image at 25 dB"] = {
                "figure": at25, "met": at25 is not None and at25 <= FASHION_25DB_TODAY}
        if name in ("emoji", "satellite") and "default" in r["models"]:  # the 64x64 sets
            rows = r["derived"]["throughput"].get("latentzip-default", [])
            out[f"{name}: encode + decode at least WebP's throughput"] = {
                "figure": rows, "met": bool(rows) and all(x["images_per_s"] >= x["webp_images_per_s"] for x in rows)}
    return out


def run_set(name: str, args: argparse.Namespace, before: dict[str, Any] | None) -> dict[str, Any]:
    images = test_images(name)
    # A run may measure some sets only (the others kept from earlier runs), so each set
    # records the commit and date it was measured at.
    result: dict[str, Any] = {"commit": common.git_commit(), "date": common.now(), "test_images": len(images),
                              "models": {}, "baselines": {}}
    variants = args.variants or ["default"] + (["factorized"] if args.factorized and name not in BUILTIN else [])
    for variant in variants:
        path, record = train_model(name, variant, args.minutes, args.models)
        result["models"][variant] = {**record, "model_bytes": path.stat().st_size, "points": measure_model(path, images)}
    earlier = (before or {}).get("models", {}).get("factorized")
    if not args.factorized and earlier is not None:  # kept from the earlier run, which says when it was measured
        result["models"]["factorized"] = {"measured": {"commit": before["commit"], "date": before["date"]}, **earlier}
    peers = BUILTIN_PEERS if name in BUILTIN else PEERS
    for codec in tqdm(peers, desc=f"{name} peers", file=sys.stderr, leave=False):
        result["baselines"][codec] = measure_peer(codec, images)
    result["derived"] = derive(result)
    return result


def plot(name: str, result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, model in result["models"].items():
        pts = sorted(model["points"], key=lambda p: p["bpp"])
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], "o-", label=f"latentzip ({variant})", lw=2)
    for codec, points in result["baselines"].items():
        pts = sorted(points, key=lambda p: p["bpp"])
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], ".--", label=codec)
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (real files)")
    ax.set_ylabel("PSNR dB")
    ax.set_title(f"{name}: {result['test_images']} test images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict[str, Any], goals: dict[str, Any]) -> str:
    """The README's table: bytes as a share of WebP's at equal PSNR, and the targets."""
    lines = ["| collection | test images | latentzip (defaults) vs WebP | vs AVIF | vs JPEG XL | vs JPEG "
             "| factorized vs WebP | hyperprior vs factorized | PSNR range dB |", "|---" * 9 + "|"]
    for name, r in results.items():
        vs = r["derived"]["vs"].get("latentzip-default", {})
        fac = r["derived"]["vs"].get("latentzip-factorized", {})
        cell = lambda f: "–" if not f else f"{f['ratio']:.2f}x"  # noqa: E731
        span = vs.get("webp")
        covered = "–" if not span else f"{span['range_db'][0]:.1f}-{span['range_db'][1]:.1f}"
        lines.append(f"| {name} | {r['test_images']:,} | {cell(vs.get('webp'))} | {cell(vs.get('avif'))} "
                     f"| {cell(vs.get('jxl'))} | {cell(vs.get('jpeg'))} | {cell(fac.get('webp'))} "
                     f"| {cell(r['derived'].get('hyperprior_vs_factorized'))} "
                     f"| {covered} |")
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {goal} | {'yes' if t['met'] else 'no'} |" for goal, t in goals.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget per model")
    parser.add_argument("--no-factorized", dest="factorized", action="store_false",
                        help="train only the default model of each set, not also one with --prior factorized "
                             "(an earlier run's factorized model is kept, with the commit it was measured at)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        help="train and measure these models of each set instead (e.g. linear-start "
                             "factorized-linear-start, to compare the two priors from a linear start)")
    parser.add_argument("--models", type=Path, default=common.REPO / "bench" / "models",
                        help="where trained models are kept (and reused when present)")
    parser.add_argument("--out", type=Path, default=common.REPO / "bench" / "results" / "domains.json")
    args = parser.parse_args(argv)
    args.models.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    results = dict(previous.get("sets", {}))
    for name in args.sets:
        results[name] = run_set(name, args, results.get(name))
        plot(name, results[name], args.out.with_name(f"{args.out.stem}-{name}.png"))
        goals = targets(results)
        common.write_json(args.out, {
            "command": common.command_line(SCRIPT, argv if argv is not None else sys.argv[1:]),
            "date": common.now(), "machine": common.machine(("torch", "numpy", "pillow", "imagecodecs")),
            "minutes": args.minutes, "sets": results, "targets": goals,
        })
        print(markdown({name: results[name]}, {k: v for k, v in goals.items() if k.startswith(name)}), flush=True)
    print(markdown(results, targets(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
