"""The classic autoencoder experiments, on real bitstreams: variants, code sizes,
compression levels and per-class error.

Each model is trained through `latentzip.train` and measured through real files
(`evaluate`), so every byte count below is the size of a file a user could keep.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from .. import data, metrics
from ..baselines import PCACodec
from ..image.codec import ImageCodec
from ..image.evaluate import evaluate
from . import figures
from .bank import Trained
from .section import Context, Figure, Section, Table, num

GRID_COLUMNS = 10
REFINED_VARIANT = "deep"  # the variant the rate-distortion section also measures with its refinement layer
CODE_SIZES = (128, 32, 8)
LEVELS = (0.50, 0.90, 0.95, 0.99)
PER_CLASS_LEVELS = (0.95, 0.99)
KNEE_GROWTH = 1.5  # the error "starts to climb" where one step multiplies it by more than this

# Each variant at the same code size: (description, training settings).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "dense": ("one hidden layer of 64 and a linear path started from PCA", {"arch": "dense"}),
    "deep": ("hidden layers of 512 and 256 and the linear path", {"arch": "deep"}),
    "conv": ("strided convolutions (32 channels) with GDN; the code is a small grid of channels",
             {"arch": "conv", "hidden": (32,)}),
    "sparse": ("dense, with an L1 penalty on the code", {"arch": "dense", "reg": "sparse"}),
    "denoising": ("dense, trained to undo Gaussian noise of sigma 0.2", {"arch": "dense", "noise": 0.2}),
    "contractive": ("dense, with a penalty on the encoder's Jacobian", {"arch": "dense", "reg": "contractive"}),
    "variational": ("deep, with a Gaussian posterior and a KL term", {"arch": "vae"}),
}


def squeeze_grey(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 1) to (N, H, W): the layout decoders return grey images in."""
    return images[..., 0] if images.shape[-1] == 1 else images


def measure(
    codec: ImageCodec, images: np.ndarray, trained: Trained | None = None, max_error: int | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """A model's figures on real files (with its refinement layer at `max_error`, if
    given), and the decoded images."""
    ev = evaluate(codec, images, singles=min(100, len(images)), keep_decoded=True, max_error=max_error)
    decoded = np.stack(ev.decoded)
    values = int(codec.latents(images[:1])[0].size)
    result: dict[str, Any] = {
        **ev.as_dict(),
        "mse": float(metrics.per_image_mse(squeeze_grey(images), decoded).mean()),
        "code_values": values,
        "parameters": sum(p.numel() for p in codec.model.parameters()),
    }
    if trained is not None:
        result.update(train_seconds=trained.seconds, epochs=trained.epochs, stopped_early=trained.stopped_early)
    return result, decoded


def measure_pca(ctx: Context, k: int) -> tuple[dict[str, Any], np.ndarray]:
    """PCA with k float16 coefficients per image, fitted on (up to 10,000) training images."""
    train, test = ctx.inputs.train, ctx.inputs.test
    k = min(k, len(train), ctx.inputs.dims)
    start = time.monotonic()
    codec = PCACodec.fit(train[:10_000], k, seed=ctx.budget.seed)
    fitted = time.monotonic() - start
    blobs = codec.encode(test)
    coded = time.monotonic()
    decoded = squeeze_grey(codec.decode(blobs))
    done = time.monotonic()
    n, pixels = len(test), len(test) * test.shape[1] * test.shape[2]
    return {
        "images": n,
        "bytes_per_image": float(codec.bytes_per_image),
        "payload_bytes_per_image": float(codec.bytes_per_image),
        "bpp": metrics.bpp(codec.bytes_per_image * n, pixels),
        "psnr": metrics.mean_psnr(squeeze_grey(test), decoded),
        "ssim": metrics.mean_ssim(squeeze_grey(test), decoded),
        "mse": float(metrics.per_image_mse(squeeze_grey(test), decoded).mean()),
        "encode_seconds": coded - fitted - start,
        "decode_seconds": done - coded,
        "code_values": k,
        "train_seconds": fitted,
    }, decoded


def conv_shape(shape: tuple[int, int, int], code: int) -> dict[str, Any]:
    """Downsampling levels and latent channels that give a conv code of about `code` values."""
    h, w, _ = shape
    for levels in range(1, 5):
        grid = math.ceil(h / 2**levels) * math.ceil(w / 2**levels)
        if grid <= code or levels == 4:
            return {"levels": levels, "latent": max(1, code // grid)}
    raise AssertionError("unreachable")


def _model_rows(results: dict[str, dict[str, Any]], raw_bytes: int) -> list[list[str]]:
    return [
        [
            name,
            f"{r['code_values']:,}",
            num(r["bytes_per_image"], 1),
            num(raw_bytes / r["bytes_per_image"], 1) + "x",
            num(r["mse"], 1),
            num(r["psnr"]),
            num(r["ssim"], 3),
            num(r.get("train_seconds"), 1) + _capped(r),
        ]
        for name, r in results.items()
    ]


def _capped(result: dict[str, Any]) -> str:
    return f" (time cap hit in epoch {result['epochs']})" if result.get("stopped_early") else ""


MODEL_COLUMNS = ["model", "code values", "bytes/image", "smaller than raw", "MSE", "PSNR dB", "SSIM", "training s"]


def _grid(test: np.ndarray, decoded: dict[str, np.ndarray]) -> bytes:
    rows = [("original", list(squeeze_grey(test[:GRID_COLUMNS])))]
    rows += [(name, list(images[:GRID_COLUMNS])) for name, images in decoded.items()]
    return figures.image_grid(rows)


def _remember(ctx: Context, name: str, codec: ImageCodec, refined: bool = False) -> None:
    """Models the rate-distortion and speed sections measure again, on their images (the
    `refined` one also with its refinement layer)."""
    ctx.shared.setdefault("models", {}).setdefault(name, codec)
    if refined:
        ctx.shared.setdefault("refined", name)


# --- 1. variants -------------------------------------------------------------------------


def variants(ctx: Context) -> Section:
    code, inputs = ctx.budget.code, ctx.inputs
    results: dict[str, dict[str, Any]] = {}
    decoded: dict[str, np.ndarray] = {}
    for name, (_, settings) in VARIANTS.items():
        extra = conv_shape(inputs.shape, code) if settings["arch"] == "conv" else {"latent": code}
        trained = ctx.bank.get(f"{name} (code {code})", inputs.train, ctx.bank.config(**settings, **extra))
        results[name], decoded[name] = measure(trained.codec, inputs.test, trained)
        results[name]["settings"] = {**settings, **extra}
        _remember(ctx, f"{name} (code {code})", trained.codec, refined=name == REFINED_VARIANT)
    results["pca"], decoded["pca"] = measure_pca(ctx, code)
    best = max(results, key=lambda n: results[n]["psnr"])
    smallest = min(results, key=lambda n: results[n]["bytes_per_image"])
    return Section(
        "variants",
        f"Autoencoder variants at code size {code}",
        f"Seven kinds of autoencoder and PCA, each with a code of about {code} numbers per image and "
        f"the same training budget ({ctx.budget.describe()}). Autoencoder codes are quantized and "
        f"entropy-coded into one real file for all "
        f"{len(inputs.test):,} test images; PCA keeps {code} float16 coefficients (2 bytes each, no header).",
        {"code_size": code, "models": results, "descriptions": {n: d for n, (d, _) in VARIANTS.items()}},
        [Table(MODEL_COLUMNS, _model_rows(results, inputs.dims), "Test-set figures; bytes are real file bytes.")],
        [Figure("variants-grid.png", _grid(inputs.test, decoded),
                "The first test images (top) and what each model's decoder returns from the file.")],
        [
            f"Highest PSNR: {best} ({results[best]['psnr']:.2f} dB). Fewest bytes: {smallest} "
            f"({results[smallest]['bytes_per_image']:.1f} bytes/image)."
        ],
    )


# --- 2. code sizes ------------------------------------------------------------------------


def code_size_sweep(ctx: Context) -> Section:
    inputs = ctx.inputs
    results: dict[str, dict[str, Any]] = {}
    decoded: dict[str, np.ndarray] = {}
    for code in CODE_SIZES:
        trained = ctx.bank.get(f"dense (code {code})", inputs.train, ctx.bank.config(arch="dense", latent=code))
        results[f"dense {code}"], decoded[f"code {code}"] = measure(trained.codec, inputs.test, trained)
        _remember(ctx, f"dense (code {code})", trained.codec)
    photo, photo_grid = _photo_network(ctx)
    return Section(
        "code_size_sweep",
        "Code size",
        f"The classic dense experiment: codes of {', '.join(map(str, CODE_SIZES))} numbers per image. "
        "Below it, the convolutional network of the STL-10 example (96x96x3 to a 12x12x32 code), "
        "trained on 96x96 patches of photographs.",
        {"dense": results, "photo_conv": photo},
        [
            Table(MODEL_COLUMNS, _model_rows(results, inputs.dims)),
            Table(MODEL_COLUMNS, _model_rows({"conv 96x96x3 -> 12x12x32": photo}, 96 * 96 * 3),
                  f"Photo patches: {photo['images']} test patches from photographs not used in training."),
        ],
        [
            Figure("code-size-grid.png", _grid(inputs.test, decoded),
                   "Originals and reconstructions at each code size."),
            Figure("photo-conv-grid.png", photo_grid, "96x96 photo patches and the conv network's reconstructions."),
        ],
        [
            f"The 12x12x32 code has {photo['code_values']:,} numbers for {96 * 96 * 3:,} input numbers "
            f"({96 * 96 * 3 / photo['code_values']:.0f}x fewer), but the real file takes "
            f"{photo['bytes_per_image']:,.0f} bytes per patch ({96 * 96 * 3 / photo['bytes_per_image']:.0f}x "
            "smaller than raw), because the entropy coder spends few bits on predictable code values."
        ],
    )


def _photo_network(ctx: Context) -> tuple[dict[str, Any], bytes]:
    train = data.load("photos:train").images[: ctx.budget.train_images]
    test = data.load("photos:test").images[: ctx.budget.test_images]
    cfg = ctx.bank.config(arch="conv", latent=32, levels=3, hidden=(64,), epochs=ctx.budget.photo_epochs, batch_size=32)
    trained = ctx.bank.get("conv 96x96x3 -> 12x12x32", train, cfg)
    result, decoded = measure(trained.codec, test, trained)
    rows = [("original", list(test[:6])), ("decoded", list(decoded[:6]))]
    return result, figures.image_grid(rows)


# --- 3. compression levels -------------------------------------------------------------


def _knee(levels: list[dict[str, Any]]) -> float:
    """The last level before the error grows by more than KNEE_GROWTH in one step."""
    for before, after in zip(levels, levels[1:]):
        if after["mse"] > KNEE_GROWTH * before["mse"]:
            return before["level"]
    return levels[-1]["level"]


def compression_levels(ctx: Context) -> Section:
    inputs = ctx.inputs
    dims = inputs.dims
    levels, decoded = [], {}
    for level in LEVELS:
        latent = max(1, round(dims * (1 - level)))
        trained = ctx.bank.get(f"dense (code {latent})", inputs.train, ctx.bank.config(arch="dense", latent=latent))
        result, decoded[level] = measure(trained.codec, inputs.test, trained)
        _remember(ctx, f"dense (code {latent})", trained.codec)
        levels.append({
            "level": level,
            "latent": latent,
            "tutorial_ratio": latent / dims,
            "file_ratio": result["bytes_per_image"] / dims,
            "single_file_ratio": result["single_file_bytes"] / dims,
            **result,
        })
    ctx.shared["levels"] = {lv["level"]: (lv, decoded[lv["level"]]) for lv in levels}
    knee = _knee(levels)
    marked = next(lv for lv in levels if lv["level"] == knee)
    plot = figures.plot([
        figures.Axes(
            [
                figures.Series("tutorial ratio (input / latent dimensions)",
                               [1 / lv["tutorial_ratio"] for lv in levels], [lv["mse"] for lv in levels]),
                figures.Series("real files (raw bytes / file bytes)", [1 / lv["file_ratio"] for lv in levels],
                               [lv["mse"] for lv in levels]),
            ],
            "times smaller than the raw image (log scale)",
            "MSE (8-bit levels squared)",
            "error against compression",
            xlog=True,
            marks=[(1 / marked["tutorial_ratio"], marked["mse"], f"error climbs after {knee:.0%}")],
        )
    ])
    rows = [
        [
            f"{lv['level']:.0%}", f"{lv['latent']:,}", f"{lv['tutorial_ratio']:.1%}", f"{lv['file_ratio']:.2%}",
            num(lv["bytes_per_image"], 1), num(lv["single_file_bytes"], 1), num(lv["mse"], 1), num(lv["psnr"]),
        ]
        for lv in levels
    ]
    return Section(
        "compression_levels",
        "Compression levels",
        "Latent sizes that the tutorials call 50%, 90%, 95% and 99% compression (latent dimensions "
        "divided by input dimensions), set against what the files really take.",
        {"levels": levels, "knee_level": knee, "knee_growth": KNEE_GROWTH, "input_dimensions": dims},
        [Table(
            ["compression (tutorial)", "latent", "latent / input dims", "file / raw bytes", "bytes/image (one file)",
             "bytes/image (file per image)", "MSE", "PSNR dB"],
            rows,
            f"Raw image: {dims:,} bytes.",
        )],
        [
            Figure("compression-levels.png", plot,
                   "MSE against compression, by the tutorials' count and by real file size."),
            Figure("compression-levels-grid.png",
                   _grid(inputs.test, {f"{lv:.0%}": d for lv, d in decoded.items()}),
                   "Originals and reconstructions at each level."),
        ],
        [_knee_finding(levels, knee), _ratio_finding(levels, dims)],
    )


def _knee_finding(levels: list[dict[str, Any]], knee: float) -> str:
    after = next((lv for lv in levels if lv["level"] > knee), None)
    if after is None:
        return f"The error grows by less than {KNEE_GROWTH}x from one level to the next all the way to {knee:.0%}."
    before = next(lv for lv in levels if lv["level"] == knee)
    return (
        f"The error starts to climb after {knee:.0%}: MSE {before['mse']:,.0f} there, {after['mse']:,.0f} at "
        f"{after['level']:.0%} ({after['mse'] / before['mse']:.1f}x for one step)."
    )


def _ratio_finding(levels: list[dict[str, Any]], dims: int) -> str:
    smaller = [lv for lv in levels if lv["file_ratio"] < lv["tutorial_ratio"]]
    text = (
        f"Real files (all test images in one file) take {levels[0]['bytes_per_image']:,.0f} to "
        f"{levels[-1]['bytes_per_image']:,.0f} bytes per image against {dims:,} raw. "
    )
    if len(smaller) == len(levels):
        return text + "At every level the file is smaller than the latent count suggests: the entropy coder " \
                      "spends few bits on predictable code values, so the tutorial ratio understates real compression."
    if not smaller:
        return text + "At every level the file is larger than the latent count suggests, so the tutorial ratio " \
                      "overstates real compression."
    return text + "The file is smaller than the latent count suggests at " + ", ".join(
        f"{lv['level']:.0%}" for lv in smaller) + " and larger at the other levels."


# --- 4. per class ----------------------------------------------------------------------


def per_class(ctx: Context) -> Section:
    inputs = ctx.inputs
    intro = (
        "Reconstruction error per class at 95% and 99% compression, raw and divided by the class's "
        "ink (its mean pixel value as a share of white), since classes with more ink have more to get wrong."
    )
    if inputs.test_labels is None or inputs.classes is None:
        return Section("per_class", "Error per class", intro,
                       {"skipped": "the data has no class labels"},
                       findings=["Skipped: the data has no class labels."])
    labels = inputs.test_labels
    present = [c for c in range(len(inputs.classes)) if np.any(labels == c)]
    originals = squeeze_grey(inputs.test)
    ink = {c: float(originals[labels == c].mean() / 255.0) for c in present}
    by_level: dict[str, Any] = {}
    for level in PER_CLASS_LEVELS:
        _, decoded = ctx.shared["levels"][level]
        errors = metrics.per_image_mse(originals, decoded)
        raw = {c: float(errors[labels == c].mean()) for c in present}
        by_level[f"{level:.0%}"] = {
            inputs.classes[c]: {
                "mse": raw[c], "mse_per_ink": raw[c] / max(ink[c], 1e-6), "images": int(np.sum(labels == c))
            }
            for c in present
        }
    names = [inputs.classes[c] for c in present]
    rows = [[name, f"{ink[c]:.3f}"] + [
        num(by_level[key][name][field], 1) for key in by_level for field in ("mse", "mse_per_ink")
    ] for name, c in zip(names, present)]
    findings = [_normalisation_finding(by_level[f"{PER_CLASS_LEVELS[0]:.0%}"], f"{PER_CLASS_LEVELS[0]:.0%}")]
    plots = [
        Figure(f"per-class-{key.rstrip('%')}.png",
               figures.bars(names, {
                   "MSE": [by_level[key][n]["mse"] for n in names],
                   "MSE per unit of ink": [by_level[key][n]["mse_per_ink"] for n in names],
               }, "MSE (8-bit levels squared)", f"error per class at {key} compression"),
               f"Raw and ink-normalised error per class at {key} compression.")
        for key in by_level
    ]
    columns = ["class", "ink"] + [f"{label} at {key}" for key in by_level for label in ("MSE", "MSE / ink")]
    return Section(
        "per_class", "Error per class", intro,
        {"levels": by_level, "ink": {inputs.classes[c]: ink[c] for c in present}},
        [Table(columns, rows)], plots, findings,
    )


def _normalisation_finding(classes: dict[str, dict[str, float]], level: str) -> str:
    """What dividing by ink changes: the hardest and easiest class, and the rank correlation."""
    raw = sorted(classes, key=lambda n: classes[n]["mse"])
    norm = sorted(classes, key=lambda n: classes[n]["mse_per_ink"])
    rho = spearmanr([classes[n]["mse"] for n in classes], [classes[n]["mse_per_ink"] for n in classes])[0]
    return (
        f"At {level}, raw error ranks {raw[-1]} hardest and {raw[0]} easiest; per unit of ink, "
        f"{norm[-1]} is hardest and {norm[0]} easiest (Spearman rank correlation of the two orders: "
        f"{rho:.2f}). Classes with little ink look easy by raw error because most of their pixels are "
        "plain background; normalising shows how well the ink itself is kept."
    )
