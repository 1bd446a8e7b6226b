"""Benchmark of the shipped photograph presets (photo:q1, photo:q2, ...) against classical codecs.

    python bench/photos.py [--model PATH] [--effort E] [--no-large] [--quick] [--out bench/results/photos.json]

Test photographs, in two groups reported apart and together: the five sporco photographs
(sets.validation_photos: kodim23 and four of the Waterloo BragZone set, never trained on)
and the photographs scripts/train_photos.py holds out of training (its textures left
out: they are the domain benchmark's). Every codec writes one file per photograph, as a
user stores them, and every rate is those real files' bytes, headers included: each
latentzip preset, and JPEG (optimized Huffman tables), WebP (method 6), AVIF and JPEG XL
(baselines.py) at qualities that span about 24-42 dB.

Per group and setting: bpp (8 * bytes / pixels, summed over the group), mean PSNR
(metrics.mean_psnr) and mean MS-SSIM (pytorch-msssim, on the photographs of at least
161 px a side; its rate then counts those photographs alone). From them, the
Bjøntegaard delta rate of every codec against each peer (common.bd_rate) over 30-40 dB
PSNR, and over the MS-SSIM range both cover in dB (-10 log10(1 - MS-SSIM)); and
latentzip's BD-rate over 30-40 dB on each photograph alone, which shows where a group's
figure comes from.
Speed: encode and decode seconds per megapixel, the median over photographs of calls
timed in this process after a warm-up call, and kodim23 (768x512) at photo:q4, the
median of three. Near-lossless: the default preset at max errors 0 (lossless), 1, 2
and 4 (its refinement layer, or each photograph coded directly where that is cheaper),
against JPEG-LS at the same bounds, PNG and lossless JPEG XL, all photographs.
Memory: the CLI's peak RSS encoding and decoding a 24-megapixel photograph, opaque and
as a cut-out with a soft alpha edge, each step in its own process (--no-large skips it).

--model codes with a model file's qualities 1..N instead of the shipped presets (named
photo:qN as the shipped ones will be); --effort encodes at that effort instead of the
codec's default (the JSON records which); --quick is a smoke run: the first two photographs
of each group, three qualities of each peer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from pytorch_msssim import ms_ssim
from tqdm import tqdm

from latentzip import baselines, metrics
from latentzip.image import tiling, zoo
from latentzip.image.codec import ImageCodec, file_catalog

import common
import sets
from common import Point, bd_rate, frontier

sys.path.insert(0, str(common.REPO / "scripts"))
import train_photos

SCRIPT = "bench/photos.py"
PEERS = {  # qualities spanning about 24-42 dB on these photographs
    "jpeg": (5, 10, 20, 35, 50, 70, 85, 92, 97),
    "webp": (0, 5, 15, 30, 50, 70, 85, 95, 100),
    "avif": (10, 25, 40, 55, 70, 80, 90, 95),
    "jxl": (5, 20, 40, 60, 75, 85, 92, 97),
}
OURS = "latentzip"
DEFAULT_PRESET, DEFAULT_QUALITY = "photo:q4", 4
PSNR_RANGE = (30.0, 40.0)  # the BD-rate range, dB
NEAR_LOSSLESS = (0, 1, 2, 4)  # max errors of the refinement layer
MSSSIM_MIN_SIDE = 161  # pytorch-msssim's smallest side for its 11-px window and 4 downsamplings
LARGE_SIZE = (6000, 4000)  # 24 megapixels
MEMORY_GOAL = "24 MP peak RSS <= 2 GB (CLI encode and decode, opaque and cut-out)"
CHILD_TIMEOUT_S = 3600
TARGETS = {"bd_vs_webp_percent": 0.0, "bd_vs_jpeg_percent": -40.0, "seconds_768x512": 1.5, "peak_bytes_24mp": 2e9,
           "seam_db": 0.3}

Coder = tuple[Callable[[np.ndarray], bytes], Callable[[bytes], np.ndarray]]


def photographs(quick: bool) -> dict[str, dict[str, np.ndarray]]:
    """The two groups of test photographs by name (the first two of each with `quick`)."""
    _, held = train_photos.sources()
    groups = {"sporco": sets.validation_photos(),
              "held-out": {k: held[k] for k in sorted(held) if not k.startswith("textures/")}}
    return {g: dict(list(photos.items())[:2]) if quick else photos for g, photos in groups.items()}


def presets(model: Path | None, effort: int | None) -> dict[str, Coder]:
    """The latentzip settings to measure: the shipped photo presets, or a model file's
    qualities, encoding at `effort` (None: the codec's default)."""
    if model is None:
        names = [n for n in zoo.names() if n.startswith("photo:")]
        if not names:
            raise SystemExit("no shipped photo:* presets; pass --model PATH")
        codecs = {n: (zoo.load(n), None) for n in names}
    else:
        codecs = ladder(ImageCodec.load(model), "photo:q")
    return coders(codecs, effort)


def ladder(codec: ImageCodec, prefix: str) -> dict[str, tuple[ImageCodec, int | None]]:
    """Each quality of a codec, named `prefix` and its number."""
    return {f"{prefix}{q}": (codec, q) for q in range(1, codec.cfg.qualities + 1)}


def coders(codecs: dict[str, tuple[ImageCodec, int | None]], effort: int | None) -> dict[str, Coder]:
    """One photograph a file with each (codec, quality) (None: the codec's own), encoding at
    `effort` (None: the codec's default)."""
    return {name: (lambda im, c=c, q=q: c.encode([im], quality=q, effort=effort),
                   lambda blob, c=c: c.decode(blob)[0])
            for name, (c, q) in codecs.items()}


def peer(name: str, quality: float) -> Coder:
    baseline = baselines.IMAGE_BASELINES[name]
    return (lambda im: baseline.encode(im, quality)), (lambda blob: baseline.decode(blob, 3))


def msssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM of two RGB photographs; None below the size its five scales need."""
    if min(a.shape[:2]) < MSSSIM_MIN_SIDE:
        return None
    x, y = (torch.from_numpy(np.array(im, dtype=np.float32)).permute(2, 0, 1)[None] for im in (a, b))
    with torch.no_grad():
        return float(ms_ssim(x, y, data_range=255.0))


def measure(coder: Coder, photos: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Each photograph as its own file: bytes, PSNR (capped as metrics.mean_psnr does),
    MS-SSIM and seconds, after a warm-up call on the smallest photograph so that no
    timing includes a library's first-call set-up."""
    encode, decode = coder
    decode(encode(min(photos.values(), key=lambda im: im.size)))
    out = {}
    for name, image in photos.items():
        t0 = time.perf_counter()
        blob = encode(image)
        t1 = time.perf_counter()
        decoded = decode(blob)
        t2 = time.perf_counter()
        out[name] = {"bytes": len(blob), "psnr": metrics.mean_psnr([image], [decoded]),
                     "msssim": msssim(image, decoded), "encode_s": t1 - t0, "decode_s": t2 - t1}
    return out


def aggregate(setting: str, measured: dict[str, dict[str, Any]], photos: dict[str, np.ndarray]) -> Point:
    """One RD point of a group from its photographs' measurements."""
    rows = [measured[n] for n in photos]
    pixels = [im.shape[0] * im.shape[1] for im in photos.values()]
    scored = [(r, p) for r, p in zip(rows, pixels) if r["msssim"] is not None]
    mean_msssim = float(np.mean([r["msssim"] for r, _ in scored])) if scored else None
    return {
        "setting": setting, "bytes_per_image": sum(r["bytes"] for r in rows) / len(rows),
        "bpp": 8 * sum(r["bytes"] for r in rows) / sum(pixels), "psnr": float(np.mean([r["psnr"] for r in rows])),
        "msssim": mean_msssim, "msssim_photos": len(scored),
        "msssim_db": None if mean_msssim is None else float(-10 * np.log10(max(1 - mean_msssim, 1e-10))),
        "msssim_bpp": 8 * sum(r["bytes"] for r, _ in scored) / sum(p for _, p in scored) if scored else None,
        "encode_s_per_mp": statistics.median(r["encode_s"] / p * 1e6 for r, p in zip(rows, pixels)),
        "decode_s_per_mp": statistics.median(r["decode_s"] / p * 1e6 for r, p in zip(rows, pixels)),
    }


def group_curves(measured: dict[str, dict[str, dict[str, dict[str, Any]]]],
                 members: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list[Point]]]:
    """Each group's RD points for every codec, from the measurements of its photographs."""
    return {g: {c: [aggregate(s, m, photos) for s, m in settings.items()] for c, settings in measured.items()}
            for g, photos in members.items()}


def compare(curves: dict[str, list[Point]]) -> dict[str, Any]:
    """BD-rate of every codec against each peer: on PSNR over 30-40 dB, and on MS-SSIM dB."""
    psnr = {c: frontier(points, "psnr", "bpp") for c, points in curves.items()}
    ssim = {c: frontier(points, "msssim_db", "msssim_bpp") for c, points in curves.items()}
    return {
        "psnr_30_40": {c: {p: bd_rate(psnr[c], psnr[p], *PSNR_RANGE) for p in PEERS if p != c} for c in curves},
        "msssim_db": {c: {p: bd_rate(ssim[c], ssim[p]) for p in PEERS if p != c} for c in curves},
    }


def time_default(coder: Coder, image: np.ndarray, repeats: int = 3) -> dict[str, float]:
    """Median seconds of `repeats` encode and decode calls of one photograph, after a warm-up."""
    encode, decode = coder
    blob = encode(image)
    decode(blob)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        blob = encode(image)
        t1 = time.perf_counter()
        decode(blob)
        times.append((t1 - t0, time.perf_counter() - t1))
    return {"encode_s": statistics.median(t[0] for t in times), "decode_s": statistics.median(t[1] for t in times),
            "repeats": repeats, "bytes": len(blob)}


def near_lossless(model: Path | None, photos: dict[str, np.ndarray]) -> dict[str, Any]:
    """bpp and mean PSNR of the default preset with every value within each of
    NEAR_LOSSLESS levels (the largest error checked on the decoded photographs), and how
    many photographs it coded directly; JPEG-LS (CharLS) at the same bounds (its NEAR
    parameter), each photograph a file; PNG and lossless JPEG XL."""
    import imagecodecs

    codec = ImageCodec.load(model).bounded(None, DEFAULT_QUALITY) if model else zoo.load(DEFAULT_PRESET)
    images = list(photos.values())
    pixels = sum(im.shape[0] * im.shape[1] for im in images)
    out: dict[str, Any] = {"preset": DEFAULT_PRESET, "max_error": {}}

    def measured(blobs: list[bytes], decoded: list[np.ndarray]) -> dict[str, Any]:
        return {"bpp": 8 * sum(map(len, blobs)) / pixels, "psnr": metrics.mean_psnr(images, decoded),
                "largest_error": max(metrics.max_abs_error(im, d) for im, d in zip(images, decoded))}

    for bound in tqdm(NEAR_LOSSLESS, desc="near lossless", file=sys.stderr, leave=False):
        blobs = [codec.encode([im], max_error=bound) for im in images]
        ls = [imagecodecs.jpegls_encode(im, level=bound) for im in images]
        out["max_error"][bound] = {**measured(blobs, [codec.decode(b)[0] for b in blobs]),
                                   "coded_directly": sum(sum(file_catalog(b).direct or ()) for b in blobs),
                                   "jpegls": measured(ls, [imagecodecs.jpegls_decode(b) for b in ls])}
    png = baselines.IMAGE_BASELINES["png"]
    out["png_bpp"] = 8 * sum(len(png.encode(im)) for im in images) / pixels
    out["jxl_lossless_bpp"] = 8 * sum(len(imagecodecs.jpegxl_encode(im, lossless=True, effort=7)) for im in images) / pixels
    return out


_PEAK_HELPER = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
try:
    done = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=float(sys.argv[1]))
    rc, err = done.returncode, done.stderr
except subprocess.TimeoutExpired:
    rc, err = None, "timed out after %s s" % sys.argv[1]
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t, "stderr": err[-2000:],
                  "peak_bytes": peak if sys.platform == "darwin" else peak * 1024}))
"""


def peak_of(command: list[str]) -> dict[str, Any]:
    """Run `command` under a fresh, small helper process and return the child's peak RSS.

    The helper is needed because Linux carries ru_maxrss across fork and exec: a child
    started straight from this process (torch loaded, photographs in memory) would
    report this process's peak, not its own."""
    done = subprocess.run([sys.executable, "-c", _PEAK_HELPER, str(CHILD_TIMEOUT_S), *command],
                          capture_output=True, text=True, check=False)
    return json.loads(done.stdout)


def large(model: Path | None, effort: int | None) -> dict[str, Any]:
    """Peak memory of `latentzip encode` and `decode` on one 24-megapixel photograph,
    opaque and as a cut-out (the same photograph with a feathered elliptical alpha edge,
    as product shots and stickers have: coding alpha makes the encoder decode the image).

    No 24-megapixel original is at hand (the wallpapers are kept reduced to 640x400),
    so one wallpaper, cropped to 3:2, is enlarged 10x with Lanczos: the pixel count, not
    the content, is what memory depends on, though such a smooth image codes smaller
    than a real one."""
    source = min((sets.prepare("wallpapers") / "train").glob("*.png"))
    image = Image.open(source).convert("RGB")
    side = min(image.width, image.height * 3 // 2)
    left, top = (image.width - side) // 2, (image.height - side * 2 // 3) // 2
    image = image.crop((left, top, left + side, top + side * 2 // 3)).resize(LARGE_SIZE, Image.Resampling.LANCZOS)
    width, height = LARGE_SIZE
    edge = Image.new("L", LARGE_SIZE, 0)
    ImageDraw.Draw(edge).ellipse((width // 20, height // 20, width - width // 20, height - height // 20), fill=255)
    cut_out = image.copy()
    cut_out.putalpha(edge.filter(ImageFilter.GaussianBlur(width / 150)))
    out: dict[str, Any] = {"size": list(LARGE_SIZE), "preset": DEFAULT_PRESET,
                           "source": f"wallpapers/{source.name} ({side}x{side * 2 // 3} of it) enlarged with Lanczos",
                           "cut_out_alpha": f"an ellipse inset by 1/20 of each side, its edge blurred by a Gaussian "
                                            f"of sigma {width / 150:g} px"}
    for kind, picture in (("opaque", image), ("cut_out", cut_out)):
        out[kind] = coded_large(np.asarray(picture), model, effort)
    return out


def coded_large(image: np.ndarray, model: Path | None, effort: int | None) -> dict[str, Any]:
    """One large image through the CLI: each step's peak RSS and seconds, the file's
    bytes, PSNR (of what shows, where it has alpha) and, opaque, the PSNR near tile borders."""
    encode_model = [str(model), "--quality", str(DEFAULT_QUALITY)] if model else [DEFAULT_PRESET]
    encode_model += ["--effort", str(effort)] if effort is not None else []
    decode_model = ["-m", str(model)] if model else []
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as temp:
        png, ltz, restored = Path(temp, "large.png"), Path(temp, "large.ltz"), Path(temp, "out")
        Image.fromarray(image).save(png, compress_level=1)
        cli = [sys.executable, "-m", "latentzip"]
        for step, command in (("encode", [*cli, "encode", "-m", *encode_model, str(png), "-o", str(ltz)]),
                              ("decode", [*cli, "decode", str(ltz), "-o", str(restored), *decode_model])):
            run = peak_of(command)
            out[step] = {"peak_bytes": run["peak_bytes"], "seconds": run["seconds"]}
            if run["rc"] != 0:
                out[step]["error"] = common.portable(run["stderr"].strip() or f"exit status {run['rc']}")
                return out
        decoded = [np.asarray(Image.open(p)) for p in restored.iterdir()]
        out["bytes"] = ltz.stat().st_size
        if len(decoded) == 1:
            out["psnr"] = metrics.mean_psnr([image], decoded)
        if len(decoded) == 1 and image.shape[-1] == 3:  # seams are measured where every pixel shows
            stride = (ImageCodec.load(model) if model else zoo.load_model(DEFAULT_PRESET)).cfg.stride
            out["tile_borders"] = tile_borders(image, decoded[0], stride)
    return out


def tile_borders(image: np.ndarray, decoded: np.ndarray, stride: int) -> dict[str, float]:
    """PSNR within one block of a tile border, and elsewhere: tiles are rounded about
    their own means (see docs/format.md), so a seam would show as a lower PSNR there."""
    near = np.zeros(image.shape[:2], bool)
    for tile in tiling.tiles(*image.shape[:2], tiling.SIDE, stride):
        if tile.rows.start > 0:
            near[tile.rows.start - stride : tile.rows.start + stride, tile.cols] = True
        if tile.cols.start > 0:
            near[tile.rows, tile.cols.start - stride : tile.cols.start + stride] = True
    return {"border_px": stride, "psnr_near_borders": metrics.psnr(image[near], decoded[near]),
            "psnr_interior": metrics.psnr(image[~near], decoded[~near])}


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the figure it rests on (None: not measured)."""
    bd = result["bd_rate"]["all"]["psnr_30_40"][OURS]
    kodim = result["default_preset"]
    large = result.get("large", {})
    runs = [large[kind][step] for kind in ("opaque", "cut_out") if kind in large
            for step in ("encode", "decode") if step in large[kind]]
    failed = any("error" in run for run in runs)  # the CLI could not code it at all: not met
    borders = large.get("opaque", {}).get("tile_borders")
    figures = {
        "BD-rate vs WebP <= 0% (PSNR 30-40 dB, all photographs)": (bd["webp"] and bd["webp"]["percent"],
                                                                  TARGETS["bd_vs_webp_percent"]),
        "BD-rate vs JPEG <= -40% (PSNR 30-40 dB, all photographs)": (bd["jpeg"] and bd["jpeg"]["percent"],
                                                                    TARGETS["bd_vs_jpeg_percent"]),
        "768x512 encode <= 1.5 s (kodim23, photo:q4)": (kodim and kodim["encode_s"], TARGETS["seconds_768x512"]),
        "768x512 decode <= 1.5 s (kodim23, photo:q4)": (kodim and kodim["decode_s"], TARGETS["seconds_768x512"]),
        MEMORY_GOAL: (max((r["peak_bytes"] for r in runs), default=None), TARGETS["peak_bytes_24mp"]),
        "24 MP PSNR near tile borders within 0.3 dB of the interior": (
            borders and borders["psnr_interior"] - borders["psnr_near_borders"], TARGETS["seam_db"]),
    }
    out = {goal: {"figure": figure, "bound": bound, "met": None if figure is None else figure <= bound}
           for goal, (figure, bound) in figures.items()}
    if failed:
        out[MEMORY_GOAL]["met"] = False
    return out


def plot(groups: dict[str, dict[str, list[Point]]], path: Path, solid: Collection[str] = (OURS,)) -> None:
    """Each group's PSNR against bpp, one panel a group; the `solid` codecs drawn bold."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), squeeze=False)
    for ax, (group, curves) in zip(axes[0], groups.items()):
        for codec, points in curves.items():
            pts = sorted(points, key=lambda p: p["bpp"])
            ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], "o-" if codec in solid else ".--",
                    lw=2 if codec in solid else 1, label=codec)
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel (real files)")
        ax.set_ylabel("mean PSNR dB")
        ax.set_title(group)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict[str, Any]) -> str:
    """The README's tables: BD-rates on all photographs, ours per group, and the targets."""
    def cell(bd: dict[str, Any] | None) -> str:
        return "–" if bd is None else f"{bd['percent']:+.1f}%"

    groups, bd = result["groups"], result["bd_rate"]
    lines = [("| codec (all photographs) | BD-rate vs WebP | vs JPEG | vs AVIF | vs JPEG XL | MS-SSIM BD-rate vs WebP "
              "| encode s/MP | decode s/MP |"), "|---" * 8 + "|"]
    for codec, points in groups["all"].items():
        psnr, ssim = bd["all"]["psnr_30_40"][codec], bd["all"]["msssim_db"][codec]
        speed = [statistics.median(p[k] for p in points) for k in ("encode_s_per_mp", "decode_s_per_mp")]
        lines.append(f"| {codec} | " + " | ".join(cell(psnr.get(p)) for p in ("webp", "jpeg", "avif", "jxl"))
                     + f" | {cell(ssim.get('webp'))} | {speed[0]:.3f} | {speed[1]:.3f} |")
    lines += ["", "| latentzip, photographs | BD-rate vs WebP | vs JPEG | vs AVIF | vs JPEG XL | PSNR range dB |",
              "|---" * 6 + "|"]
    for group, photos in result["photos"].items():
        ours = bd[group]["psnr_30_40"][OURS]
        span = ours["webp"] or ours["jpeg"]
        covered = "–" if span is None else f"{span['range'][0]:.1f}-{span['range'][1]:.1f}"
        lines.append(f"| {group} ({len(photos)}) | " + " | ".join(cell(ours[p]) for p in ("webp", "jpeg", "avif", "jxl"))
                     + f" | {covered} |")
    lines += ["", "| latentzip, each photograph | BD-rate vs WebP | vs JPEG | vs AVIF | vs JPEG XL |", "|---" * 5 + "|"]
    for name, ours in result["bd_rate_per_photo"].items():
        lines.append(f"| {name} | " + " | ".join(cell(ours[p]) for p in ("webp", "jpeg", "avif", "jxl")) + " |")
    near = result["near_lossless"]
    bounds = near["max_error"].values()
    lines += ["", "| bpp (PSNR) at --max-error | " + " | ".join(str(d) for d in near["max_error"])
              + " | PNG | JPEG XL lossless |", "|---" * (len(near["max_error"]) + 3) + "|",
              f"| {near['preset']} | " + " | ".join(f"{p['bpp']:.2f} ({p['psnr']:.2f} dB)" for p in bounds)
              + f" | {near['png_bpp']:.2f} | {near['jxl_lossless_bpp']:.2f} |",
              "| JPEG-LS (NEAR = the bound) | " + " | ".join(
                  f"{p['jpegls']['bpp']:.2f} ({p['jpegls']['psnr']:.2f} dB)" for p in bounds) + " | | |"]
    lines += ["", "| target | figure | met |", "|---|---|---|"]
    for goal, t in result["targets"].items():
        figure = "–" if t["figure"] is None else f"{t['figure']:.3g}"
        lines.append(f"| {goal} | {figure} | {'not measured' if t['met'] is None else 'yes' if t['met'] else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a model file to measure instead of the shipped photo presets")
    parser.add_argument("--out", type=Path, default=common.REPO / "bench" / "results" / "photos.json")
    parser.add_argument("--effort", type=int, default=None, help="encode at this effort (default: the codec's)")
    parser.add_argument("--no-large", dest="large", action="store_false", help="skip the 24-megapixel memory check")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 photographs a group, 3 qualities a peer")
    parser.add_argument("--near-lossless-only", action="store_true",
                        help="measure the near-lossless table again, into the --out JSON of an earlier run "
                             "(which keeps the rest, and says when each part was measured)")
    args = parser.parse_args(argv)
    started = common.now()
    load = os.getloadavg()  # timings are only as good as the machine was idle

    groups = photographs(args.quick)
    photos = {name: im for g in groups.values() for name, im in g.items()}
    if args.near_lossless_only:
        result = json.loads(args.out.read_text())
        result["near_lossless"] = {"measured": {"command": common.portable(common.command_line(
            SCRIPT, argv if argv is not None else sys.argv[1:])), "date": started, "commit": common.git_commit()},
            **near_lossless(args.model, photos)}
        common.write_json(args.out, result)
        print(markdown(result))
        return 0
    ours = presets(args.model, args.effort)
    peers = {c: [q for i, q in enumerate(qs) if not args.quick or i in (0, len(qs) // 2, len(qs) - 1)]
             for c, qs in PEERS.items()}
    coders = {OURS: ours, **{c: {f"{c}:{q}": peer(c, q) for q in qs} for c, qs in peers.items()}}
    measured = {c: {s: measure(coder, photos) for s, coder in tqdm(settings.items(), desc=c, file=sys.stderr)}
                for c, settings in coders.items()}

    curves = group_curves(measured, {**groups, "all": photos})
    singles = group_curves(measured, {name: {name: image} for name, image in photos.items()})
    result: dict[str, Any] = {
        "command": common.portable(common.command_line(SCRIPT, argv if argv is not None else sys.argv[1:])),
        "date": started, "machine": common.machine(("torch", "numpy", "pillow", "imagecodecs", "pytorch-msssim")),
        "load_average_at_start": [round(x, 2) for x in load],
        "model": common.portable(str(args.model.resolve())) if args.model else "shipped photo:* presets",
        "effort": (ImageCodec.load(args.model) if args.model else zoo.load(DEFAULT_PRESET)).effort_for(args.effort),
        "peer_qualities": peers,
        "photos": {g: {n: list(im.shape[:2]) for n, im in p.items()} for g, p in groups.items()},
        "groups": curves,
        "bd_rate": {g: compare(c) for g, c in curves.items()},
        "bd_rate_per_photo": {name: compare(c)["psnr_30_40"][OURS] for name, c in singles.items()},
        "default_preset": ({"photo": "kodim23", "preset": DEFAULT_PRESET, **time_default(ours[DEFAULT_PRESET],
                                                                                     photos["kodim23"])}
                           if DEFAULT_PRESET in ours and "kodim23" in photos else None),
        "per_photo": measured,
        "near_lossless": near_lossless(args.model, photos),
    }
    if args.large:
        result["large"] = large(args.model, args.effort)
    result["targets"] = targets(result)
    common.write_json(args.out, result)
    plot(curves, args.out.with_suffix(".png"))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
