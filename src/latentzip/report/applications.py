"""The applications on the report's data: denoising, anomaly detection, embeddings,
colourisation, watermark removal.

Each runs through `latentzip.apps` (what `latentzip denoise / anomaly / embed / colorize`
call) and against its classical peers from `latentzip.baselines`, on the same images in
this run. Colourisation and watermark removal need colour images: on grey data they run
on the built-in photographs instead, and say so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from .. import baselines, data, metrics
from ..apps import (AnomalyDetector, UNetTrainConfig, add_noise, as_grey, colorize, denoise, embed, train_colorizer,
                    train_unmarker, watermark)
from ..apps.anomaly import against_peers
from . import figures
from .autoencoders import GRID_COLUMNS, VARIANTS, squeeze_grey
from .section import Context, Figure, Section, Table, num

VALIDATION_IMAGES = 200  # the classical denoisers' parameters are tuned on these training images
DENOISER = {"arch": "conv", "hidden": (32,), "lmbda": 1.0, "lr": 5e-3, "batch_size": 64}
DETECTOR = {"arch": "deep", "hidden": (512, 256)}
FPR = 0.05
KNN = 5
TRUST_SAMPLE = 1000
COLOUR_COLUMNS = 6  # examples in the colourisation figure (photographs make large PNGs)


def denoising(ctx: Context) -> Section:
    _, dense_settings = VARIANTS["denoising"]  # the variant: trained already, and its noise is the test's
    kind, level = dense_settings.get("noise_kind", "gaussian"), dense_settings["noise"]
    inputs, seed = ctx.inputs, ctx.budget.seed
    clean = squeeze_grey(inputs.test[: ctx.budget.codec_images])
    noisy = add_noise(clean, level, kind, seed=seed + 1)
    val_clean = squeeze_grey(inputs.train[-VALIDATION_IMAGES:])
    val_noisy = add_noise(val_clean, level, kind, seed=seed + 2)
    sigma = float(np.sqrt(np.mean((val_noisy / 255.0 - val_clean / 255.0) ** 2)))  # after clipping

    outputs: dict[str, np.ndarray] = {"noisy input": noisy}
    settings: dict[str, Any] = {}
    conv = ctx.bank.get(f"conv denoiser ({kind} {level:g})", inputs.train,
                        ctx.bank.config(latent=ctx.budget.code, noise=level, noise_kind=kind, **DENOISER))
    outputs["latentzip conv denoiser"] = np.stack(denoise(conv.codec, noisy))
    settings["latentzip conv denoiser"] = {**DENOISER, "train_seconds": conv.seconds}
    dense = ctx.bank.get(f"denoising (code {ctx.budget.code})", inputs.train,
                         ctx.bank.config(**dense_settings, latent=ctx.budget.code))
    outputs["latentzip dense denoiser"] = np.stack(denoise(dense.codec, noisy))
    settings["latentzip dense denoiser"] = {"arch": "dense", "train_seconds": dense.seconds}
    for name, method in baselines.DENOISERS.items():
        param, _ = method.tune(val_clean, val_noisy, sigma)
        outputs[name] = method(noisy, param, sigma)
        settings[name] = {"parameter": param}
    results = {
        name: {"psnr": metrics.mean_psnr(clean, out), "ssim": metrics.mean_ssim(clean, out), **settings.get(name, {})}
        for name, out in outputs.items()
    }
    best_classical = max(baselines.DENOISERS, key=lambda n: results[n]["psnr"])
    ours = max((n for n in results if n.startswith("latentzip")), key=lambda n: results[n]["psnr"])
    grid = figures.image_grid([("clean", list(clean[:GRID_COLUMNS]))]
                              + [(name, list(out[:GRID_COLUMNS])) for name, out in outputs.items()])
    return Section(
        "denoise",
        "Denoising",
        f"{len(clean):,} test images with {kind} noise (sigma {level:g} of full scale), cleaned by codecs "
        "trained on noisy copies of the training images (latentzip train --noise), and by classical "
        f"denoisers whose parameter was tuned on {VALIDATION_IMAGES} noisy training images and which are "
        "told the true noise level.",
        {"noise": {"kind": kind, "level": level, "sigma_after_clipping": sigma}, "images": len(clean),
         "methods": results, "best_classical": best_classical, "best_latentzip": ours},
        [Table(["method", "PSNR dB", "SSIM", "setting"],
               [[n, num(r["psnr"]), num(r["ssim"], 3), _setting(r)] for n, r in results.items()])],
        [Figure("denoise-grid.png", grid, "Clean and noisy test images, and what each method makes of them.")],
        [
            f"{ours}: {results[ours]['psnr']:.2f} dB, against {results[best_classical]['psnr']:.2f} dB for the best "
            f"classical denoiser ({best_classical}) and {results['noisy input']['psnr']:.2f} dB for the noisy input."
        ],
    )


def _setting(result: dict[str, Any]) -> str:
    if "parameter" in result:
        return f"parameter {result['parameter']:g}"
    if "train_seconds" in result:
        return f"{result['arch']}, trained {result['train_seconds']:.0f} s"
    return ""


def anomaly(ctx: Context) -> Section:
    inputs = ctx.inputs
    intro = (
        "One class at a time is held out: a codec is trained on the other classes, and the test set is "
        "scored with the held-out class as the anomalies, by reconstruction error, by the bits an image "
        "costs under the learned prior, and by both; against PCA reconstruction error (as many "
        "components as the code) and scikit-learn's IsolationForest fitted on the same images."
    )
    if inputs.train_labels is None or inputs.test_labels is None or inputs.classes is None:
        return Section("anomaly", "Anomaly detection", intro, {"skipped": "the data has no class labels"},
                       findings=["Skipped: the data has no class labels."])
    present = [c for c in range(len(inputs.classes)) if np.any(inputs.test_labels == c)]
    per_class, curves = [], []
    for held in present[: ctx.budget.anomaly_classes]:
        result, curve = _held_out(ctx, held)
        per_class.append(result)
        curves.append(curve)
    methods = list(per_class[0]["auc"])
    mean = {m: float(np.mean([c["auc"][m] for c in per_class])) for m in methods}
    first = inputs.classes[present[0]]
    plot = figures.plot([figures.Axes(
        [figures.Series(f"{m} (AUC {per_class[0]['auc'][m]:.3f})", fpr, tpr, {"marker": None})
         for m, (fpr, tpr) in curves[0].items()],
        "false-positive rate", "true-positive rate", f"ROC, '{first}' held out",
    )])
    rows = [[c["held_out"], *[num(c["auc"][m], 3) for m in methods], f"{c['threshold']['false_positive_rate']:.1%}",
             f"{c['threshold']['detection_rate']:.1%}"] for c in per_class]
    rows.append(["mean", *[num(mean[m], 3) for m in methods], "", ""])
    best_peer = max(("pca-error", "isolation-forest"), key=lambda m: mean[m])
    ours = max((m for m in methods if m.startswith("latentzip")), key=lambda m: mean[m])
    return Section(
        "anomaly", "Anomaly detection", intro,
        {"target_fpr": FPR, "per_class": per_class, "mean_auc": mean},
        [Table(["held-out class", *methods, f"FPR at {FPR:.0%} threshold", "detected"], rows,
               f"ROC AUC per held-out class. The threshold of the combined score is set at a {FPR:.0%} false-positive "
               "rate on normal training images the codec did not train on; the last columns are what it gives on "
               "the test set.")],
        [Figure("anomaly-roc.png", plot, f"ROC curves with '{first}' as the anomaly.")],
        [f"Mean AUC over {len(per_class)} held-out class(es): {ours} {mean[ours]:.3f}, {best_peer} "
         f"{mean[best_peer]:.3f}."],
    )


def _held_out(ctx: Context, held: int) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]]:
    inputs = ctx.inputs
    normal = inputs.train[inputs.train_labels != held]
    cut = max(1, int(len(normal) * 0.8))
    fit, calibrate = normal[:cut], normal[cut:]
    name = inputs.classes[held]
    trained = ctx.bank.get(f"deep (code {ctx.budget.code}) without '{name}'", fit,
                           ctx.bank.config(latent=ctx.budget.code, **DETECTOR))
    detector = AnomalyDetector(trained.codec, fpr=FPR).fit(calibrate)
    result, by_method = against_peers(detector, fit, inputs.test, inputs.test_labels == held, ctx.budget.code,
                                      ctx.budget.seed)
    curves = {m: roc_curve(inputs.test_labels == held, s)[:2] for m, s in by_method.items()}
    return {"held_out": name, **result}, curves


def embeddings(ctx: Context) -> Section:
    inputs, code = ctx.inputs, ctx.budget.code
    trained = ctx.bank.get(f"dense (code {code})", inputs.train, ctx.bank.config(**VARIANTS["dense"][1], latent=code))
    sample = np.random.default_rng(ctx.budget.seed).permutation(len(inputs.test))[:TRUST_SAMPLE]
    codes = {
        f"latentzip dense {code}": (embed(trained.codec, inputs.train), embed(trained.codec, inputs.test)),
    }
    pca_train = baselines.PCACodec.fit(inputs.train[:10_000], code, seed=ctx.budget.seed).pca
    rows_train = inputs.train.reshape(len(inputs.train), -1) / 255.0
    rows_test = inputs.test.reshape(len(inputs.test), -1) / 255.0
    codes[f"pca {pca_train.n_components_}"] = (pca_train.transform(rows_train), pca_train.transform(rows_test))
    results: dict[str, dict[str, Any]] = {}
    for name, (train_codes, test_codes) in codes.items():
        results[name] = {
            "dimensions": int(test_codes.shape[1]),
            "trustworthiness": metrics.trustworthiness(inputs.test[sample], test_codes[sample], KNN),
        }
        if inputs.train_labels is not None and inputs.test_labels is not None:
            results[name]["knn_accuracy"] = metrics.knn_accuracy(
                train_codes, inputs.train_labels, test_codes, inputs.test_labels, KNN
            )
    rows = [[n, str(r["dimensions"]), num(r.get("knn_accuracy"), 3), num(r["trustworthiness"], 3)]
            for n, r in results.items()]
    return Section(
        "embed",
        "Dimensionality reduction",
        f"The integer codes latentzip stores (what latentzip embed writes) against PCA with as many dimensions: "
        f"{KNN}-NN classification accuracy (training codes as the reference, test codes as queries) and "
        f"scikit-learn's trustworthiness on {len(sample):,} test images.",
        {"neighbours": KNN, "models": results},
        [Table(["codes", "dimensions", f"{KNN}-NN accuracy", "trustworthiness"], rows)],
    )


def _colour_images(ctx: Context) -> tuple[np.ndarray, np.ndarray, str]:
    """(training, test images, where they come from) for the U-Net applications, which
    need colour: the report's data when it is in colour, else the built-in photographs."""
    inputs, budget = ctx.inputs, ctx.budget
    if inputs.shape[-1] in (3, 4):
        return inputs.train, inputs.test, "the report's training images, tested on its test images"
    return (data.load("photos:train").images[: budget.train_images], data.load("photos:test").images[: budget.test_images],
            "96x96 patches of scikit-image's photographs (the report's data is grey): photos:train, tested on "
            "photos:test, whose photographs are not in training")


def colorization(ctx: Context) -> Section:
    budget = ctx.budget
    train, test, where = _colour_images(ctx)
    truth = [im[..., :3] for im in test]
    grey = [as_grey(im) for im in truth]
    cfg = UNetTrainConfig(steps=budget.unet_steps, minutes=budget.minutes_per_model, seed=budget.seed)
    trained = train_colorizer(train, cfg, progress=ctx.progress)
    outputs = {
        "grey input": baselines.grey_as_colour(grey),
        "mean-chroma table": baselines.ChromaTable.fit(train).colorize(grey),
        "latentzip": colorize(trained.model, grey),
    }
    results = {name: {"psnr": metrics.mean_psnr(truth, out), "ciede2000": metrics.mean_ciede2000(truth, out)}
               for name, out in outputs.items()}
    network = {"steps": trained.steps, "train_seconds": trained.seconds, "crop": trained.config.crop,
               "stopped_early": trained.stopped_early}
    grid = figures.image_grid([(name, out[:COLOUR_COLUMNS]) for name, out in outputs.items()]
                              + [("true colour", truth[:COLOUR_COLUMNS])])
    best_peer = min(("grey input", "mean-chroma table"), key=lambda n: results[n]["ciede2000"])
    return Section(
        "colorize",
        "Colourisation",
        f"Grey versions (same CIELAB lightness) of {len(truth):,} colour test images, coloured by a network trained "
        f"for {trained.steps:,} steps ({trained.seconds:.0f} s) with latentzip train --task colorize on {where}; "
        "against the grey image itself and a table of the mean chroma of each grey level in the same training images.",
        {"images": len(truth), "training_images": len(train), "network": network, "methods": results},
        [Table(["method", "PSNR dB", "mean CIEDE2000"],
               [[n, num(r["psnr"]), num(r["ciede2000"])] for n, r in results.items()],
               "PSNR on RGB and mean CIEDE2000 colour difference (about 1 is just noticeable) against the true colour "
               "images; every output keeps the grey image's lightness, so both measure colour alone.")],
        [Figure("colorize-grid.png", grid, "Test images: the grey input, each method's colours, the true colours.")],
        [f"latentzip: mean CIEDE2000 {results['latentzip']['ciede2000']:.2f} and {results['latentzip']['psnr']:.2f} dB, "
         f"against {results[best_peer]['ciede2000']:.2f} and {results[best_peer]['psnr']:.2f} dB for the better peer "
         f"by CIEDE2000 ({best_peer})."],
    )


def watermark_removal(ctx: Context) -> Section:
    budget = ctx.budget
    train, test, where = _colour_images(ctx)
    truth = [im[..., :3] for im in test]
    marked, covers = watermark(truth, seed=budget.seed + 3)
    cfg = UNetTrainConfig(steps=budget.unet_steps, minutes=budget.minutes_per_model, seed=budget.seed)
    trained = train_unmarker(train, cfg, progress=ctx.progress)
    outputs = {
        "watermarked input": marked,
        "median 3x3": baselines.median_filtered(marked, 3),
        "inpainting, true mask": baselines.inpainted(marked, [c > 0 for c in covers]),
        "latentzip": denoise(trained.model, marked),
    }
    results = {name: {"psnr": metrics.mean_psnr(truth, out), "psnr_of_mean_mse": metrics.psnr_of_mean_mse(truth, out)}
               for name, out in outputs.items()}
    network = {"steps": trained.steps, "train_seconds": trained.seconds, "crop": trained.config.crop,
               "stopped_early": trained.stopped_early, "marks": trained.model.meta["train"]["marks"]}
    grid = figures.image_grid([(name, out[:COLOUR_COLUMNS]) for name, out in outputs.items()]
                              + [("clean", truth[:COLOUR_COLUMNS])])
    ours, peer = results["latentzip"], results["inpainting, true mask"]
    return Section(
        "watermark",
        "Watermark removal",
        f"{len(truth):,} test images marked with text and logos at random position, size, angle and opacity "
        f"(latentzip.apps.watermark, default marks), cleaned by a network trained for {trained.steps:,} steps "
        f"({trained.seconds:.0f} s) with latentzip train --noise-kind watermark on {where}; against a 3x3 median "
        "filter and scikit-image's biharmonic inpainting told the true mask. Training and test marks come from the "
        "same fonts and drawn logos here; bench/watermark.py tests with fonts and logos training never saw.",
        {"images": len(truth), "training_images": len(train), "network": network, "methods": results},
        [Table(["method", "mean PSNR dB", "PSNR of mean MSE dB"],
               [[n, num(r["psnr"]), num(r["psnr_of_mean_mse"])] for n, r in results.items()],
               "PSNR against the clean images; the second column scores all images as one signal, so that a few "
               "unmarked or barely marked images cannot lift it.")],
        [Figure("watermark-grid.png", grid, "Test images: marked, each method's output, clean.")],
        [f"latentzip: {ours['psnr']:.2f} dB against {peer['psnr']:.2f} dB for inpainting told the true mask."],
    )
