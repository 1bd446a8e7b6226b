"""Benchmark of the applications: denoising, anomaly detection, dimensionality reduction.

    python bench/apps.py [--only denoise anomaly embed] [--limit N] [--out bench/results/apps.json]

Every peer runs in the same run on the same images.

- Denoising: for each dataset and corruption, a convolutional codec is trained with that
  corruption (`TrainConfig(noise=..., noise_kind=...)`) on the first --train-images of the
  train split and cleans the test split. The classical denoisers (median filter, scikit-image's
  non-local means and total-variation) are told the true noise level where they take one,
  and each gets the parameter that is best on --val-images corrupted images from the end of
  the train split, never on the test set.
- Anomalies: on Fashion-MNIST and MNIST, for each class in turn, the detector is made as
  `latentzip anomaly --fit NORMAL` makes it with its defaults (`train_detector`): it trains on
  most of --normal-images images of the other nine classes and sets its threshold (5% false
  positives) on the rest. The whole test set is scored with the held-out class as the
  anomalies. PCA reconstruction error (as many components as the detector has latents) and
  IsolationForest are fitted on the same normal images.
- Embeddings: the shipped models' codes against PCA with as many dimensions, by 5-NN
  accuracy (codes of training images as the reference set, test images as queries) and by
  scikit-learn's trustworthiness on a test subsample.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from tqdm import tqdm

import latentzip
from latentzip import baselines, data, metrics
from latentzip.apps import add_noise, denoise, embed
from latentzip.apps.anomaly import SCORES, against_peers, train_detector
from latentzip.image import zoo
from latentzip.image.train import TrainConfig, train

import common

SCRIPT = "bench/apps.py"
SECTIONS = ("denoise", "anomaly", "embed")
CORRUPTIONS = (("gaussian", 0.1), ("gaussian", 0.3), ("salt-pepper", 0.1), ("salt-pepper", 0.3))
DENOISER = dict(arch="conv", latent=32, hidden=(32,), lmbda=1.0, lr=5e-3, batch_size=64)
FPR = 0.05
KNN_K = 5


# --- denoising ---------------------------------------------------------------------------


def denoise_condition(name: str, kind: str, level: float, args: argparse.Namespace, bar: tqdm) -> dict[str, Any]:
    """One dataset and corruption: the trained denoiser against each tuned classical one."""
    train_images = data.load(f"{name}:train").images
    fit, val = train_images[: args.train_images], train_images[-args.val_images :][..., 0]
    test = data.load(f"{name}:test").images[: args.limit][..., 0]
    noisy_test = add_noise(test, level, kind, seed=1)
    noisy_val = add_noise(val, level, kind, seed=2)
    sigma = float(np.sqrt(np.mean((noisy_val / 255.0 - val / 255.0) ** 2)))

    bar.set_postfix_str(f"{name} {kind} {level:g}: training")
    cfg = TrainConfig(noise=level, noise_kind=kind, epochs=args.epochs, seed=0, threads=1, **DENOISER)
    started = time.perf_counter()
    codec = train(fit, cfg, progress=False).codec
    trained = time.perf_counter() - started
    ours = metrics.mean_psnr(test, denoise(codec, noisy_test))

    classical = {}
    for method, denoiser in baselines.DENOISERS.items():
        bar.set_postfix_str(f"{name} {kind} {level:g}: {method}")
        param, val_psnr = denoiser.tune(val, noisy_val, sigma)
        psnr = metrics.mean_psnr(test, denoiser(noisy_test, param, sigma))
        classical[method] = {"param": param, "val_psnr": val_psnr, "psnr": psnr}
    best = max(classical, key=lambda m: classical[m]["psnr"])
    return {
        "test_images": len(test),
        "kind": kind,
        "level": level,
        "noise_sigma": sigma,
        "noisy_psnr": metrics.mean_psnr(test, noisy_test),
        "latentzip": {"psnr": ours, "train_seconds": trained},
        "classical": classical,
        "best_classical": best,
        "met": ours > classical[best]["psnr"],
    }


def bench_denoise(args: argparse.Namespace) -> dict[str, Any]:
    conditions = [(name, kind, level) for name in args.data for kind, level in CORRUPTIONS]
    result: dict[str, Any] = {
        "model": {**DENOISER, "epochs": args.epochs, "train_images": args.train_images},
        "classical_params": {name: list(d.parameters) for name, d in baselines.DENOISERS.items()},
        "conditions": {name: [] for name in args.data},
    }
    with tqdm(conditions, desc="denoise", unit="condition", file=sys.stderr) as bar:
        for name, kind, level in bar:
            result["conditions"][name].append(denoise_condition(name, kind, level, args, bar))
    result["target_met"] = all(c["met"] for runs in result["conditions"].values() for c in runs)
    return result


# --- anomaly detection -------------------------------------------------------------------


def anomaly_class(held: int, train_set: data.Dataset, test_set: data.Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """AUCs with class `held` as the anomalies, for latentzip's default detector and the peers."""
    normal = train_set.images[train_set.labels != held][: args.normal_images]
    test, is_anomaly = test_set.images[: args.limit], test_set.labels[: args.limit] == held
    started = time.perf_counter()
    detector = train_detector(normal, fpr=FPR)
    seconds = time.perf_counter() - started
    result, _ = against_peers(detector, normal, test, is_anomaly, detector.codec.cfg.latent)
    return {"held_out": test_set.classes[held], "train_seconds": seconds, **result}


def anomaly_set(name: str, args: argparse.Namespace) -> dict[str, Any]:
    train_set, test_set = data.load(f"{name}:train"), data.load(f"{name}:test")
    per_class = [anomaly_class(held, train_set, test_set, args)
                 for held in tqdm(range(10), desc=f"anomaly {name}", unit="class", file=sys.stderr)]
    methods = list(per_class[0]["auc"])
    mean = {m: float(np.mean([c["auc"][m] for c in per_class])) for m in methods}
    peers = max(mean["pca-error"], mean["isolation-forest"])
    worst = {f"latentzip-{n}": min(c["auc"][f"latentzip-{n}"] - c["auc"]["pca-error"] for c in per_class)
             for n in SCORES}
    return {
        "test_images": len(test_set.images[: args.limit]),
        "per_class": per_class,
        "mean_auc": mean,
        "worst_class_margin_over_pca": worst,
        "target_met": {m: mean[m] > peers and worst[m] >= -0.05 for m in worst},
    }


def bench_anomaly(args: argparse.Namespace) -> dict[str, Any]:
    sets = {name: anomaly_set(name, args) for name in args.data}
    return {
        "detector": "train_detector defaults (what `latentzip anomaly` trains without -m)",
        "normal_images": args.normal_images,
        "target_fpr": FPR,
        "sets": sets,
        "target_met": {m: all(r["target_met"][m] for r in sets.values()) for m in next(iter(sets.values()))["target_met"]},
    }


# --- embeddings --------------------------------------------------------------------------


def embedding_quality(train_codes: np.ndarray, train_labels: np.ndarray, test_codes: np.ndarray,
                      test_labels: np.ndarray, test_pixels: np.ndarray, sample: np.ndarray) -> dict[str, float]:
    return {
        "knn_accuracy": metrics.knn_accuracy(train_codes, train_labels, test_codes, test_labels, KNN_K),
        "trustworthiness": metrics.trustworthiness(test_pixels[sample], test_codes[sample], KNN_K),
    }


def bench_embed(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    runs = [(name, model) for name in args.data for model in zoo.networks(name)]
    rng = np.random.default_rng(0)
    for name, model in tqdm(runs, desc="embed", unit="model", file=sys.stderr):
        train_set, test_set = data.load(f"{name}:train"), data.load(f"{name}:test")
        reference = train_set.images[: args.knn_train]
        test = test_set.images[: args.limit]
        labels, test_labels = train_set.labels[: args.knn_train], test_set.labels[: args.limit]
        pixels = test.reshape(len(test), -1) / 255.0
        sample = rng.choice(len(test), size=min(args.trust_sample, len(test)), replace=False)
        codec = latentzip.load_model(model)
        dims = codec.cfg.latent
        pca = PCA(n_components=dims, random_state=0).fit(reference.reshape(len(reference), -1) / 255.0)
        rows = result.setdefault(name, {"knn_train": len(reference), "test_images": len(test), "models": []})
        rows["models"].append({
            "model": model,
            "dims": dims,
            "latentzip": embedding_quality(embed(codec, reference), labels, embed(codec, test), test_labels, pixels, sample),
            "pca": embedding_quality(pca.transform(reference.reshape(len(reference), -1) / 255.0), labels,
                                     pca.transform(pixels), test_labels, pixels, sample),
        })
    return result


# --- reporting ---------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    """The README's tables."""
    lines: list[str] = []
    if "denoise" in result:
        methods = list(baselines.DENOISERS)
        lines += ["| data | noise | noisy | **latentzip** | " + " | ".join(methods) + " | better than all |",
                  "|---" * (len(methods) + 5) + "|"]
        for name, runs in result["denoise"]["conditions"].items():
            for c in runs:
                cells = " | ".join(f"{c['classical'][m]['psnr']:.2f}" for m in methods)
                lines.append(f"| {name} | {c['kind']} {c['level']:g} | {c['noisy_psnr']:.2f} | "
                             f"**{c['latentzip']['psnr']:.2f}** | {cells} | {'yes' if c['met'] else 'no'} |")
        lines.append("")
    if "anomaly" in result:
        an = result["anomaly"]
        for name, run in an["sets"].items():
            methods = list(run["mean_auc"])
            lines += [f"| {name}: held-out class | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
            for c in run["per_class"]:
                lines.append(f"| {c['held_out']} | " + " | ".join(f"{c['auc'][m]:.3f}" for m in methods) + " |")
            lines.append("| **mean** | " + " | ".join(f"**{run['mean_auc'][m]:.3f}**" for m in methods) + " |")
            rates = [c["threshold"]["false_positive_rate"] for c in run["per_class"]]
            lines += ["", f"{name}: threshold set for {an['target_fpr']:.0%} false positives; "
                      f"{min(rates):.1%}-{max(rates):.1%} of the normal test images flagged.", ""]
    if "embed" in result:
        lines += ["| model | dims | 5-NN acc. latentzip | 5-NN acc. PCA | trustworthiness latentzip | trustworthiness PCA |",
                  "|---" * 6 + "|"]
        for ds in result["embed"].values():
            for m in ds["models"]:
                lines.append(f"| {m['model']} | {m['dims']} | {m['latentzip']['knn_accuracy']:.4f} | "
                             f"{m['pca']['knn_accuracy']:.4f} | {m['latentzip']['trustworthiness']:.4f} | "
                             f"{m['pca']['trustworthiness']:.4f} |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--data", nargs="+", default=["fashion-mnist", "mnist"], choices=["fashion-mnist", "mnist"],
                        help="datasets of the denoising, anomaly and embedding benchmarks")
    parser.add_argument("--limit", type=int, default=None, help="use the first N test images")
    parser.add_argument("--train-images", type=int, default=12000, help="training images per model")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per model")
    parser.add_argument("--val-images", type=int, default=200, help="denoising: images that pick classical parameters")
    parser.add_argument("--normal-images", type=int, default=6000, help="anomaly: normal images given to the detector")
    parser.add_argument("--knn-train", type=int, default=20000, help="embedding: reference images of the kNN")
    parser.add_argument("--trust-sample", type=int, default=2000, help="embedding: test images for trustworthiness")
    parser.add_argument("--out", default="bench/results/apps.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(1)  # faster than 2 on a shared 2-core machine, and what the timings assume
    result: dict[str, Any] = {
        "benchmark": "apps",
        "command": common.command_line(SCRIPT, argv),
        "date": common.now(),
        "machine": common.machine(("torch", "numpy", "scikit-learn", "scikit-image", "scipy")),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "notes": [
            f"denoising models are trained on {args.train_images} images for {args.epochs} epochs each; the "
            "anomaly detectors with train_detector's defaults",
            "wavelet denoising is not among the peers: scikit-image needs PyWavelets for it, which latentzip "
            "does not depend on; non-local means and total variation are",
            "anomaly: false_positive_rate and detection_rate are measured on the test set at the threshold "
            f"the detector set on its held-back normal images for a {FPR:.0%} false-positive rate",
        ],
        "seconds": {},
    }
    benches = {"denoise": bench_denoise, "anomaly": bench_anomaly, "embed": bench_embed}
    for section in args.only:
        started = time.perf_counter()
        result[section] = benches[section](args)
        result["seconds"][section] = time.perf_counter() - started
    result["peak_rss_bytes"] = common.peak_rss_bytes()
    common.write_json(args.out, result)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
