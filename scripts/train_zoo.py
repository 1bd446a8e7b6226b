"""Train the networks latentzip ships, from scratch, into src/latentzip/models.

    python scripts/train_zoo.py                          # every network (2 CPU cores: about 15 minutes)
    python scripts/train_zoo.py fashion-mnist:dense32    # just one
    python scripts/train_zoo.py --refit-refinement       # keep the weights, refit the refinement tables
    python scripts/train_zoo.py --measure-only           # keep the models; measure their presets again
                                                         # (after a change to how files are coded)

Each network is trained on the dataset's training split; then each of its quality presets
(`PRESETS`: the names `latentzip models` lists) is measured on the test split through
real files, and those figures become the preset's description. Seeds are fixed, so a
re-run gives the same models on one machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from latentzip import data
from latentzip.image import zoo
from latentzip.image.evaluate import evaluate
from latentzip.image.codec import ImageCodec
from latentzip.image.train import TrainConfig, split, train


@dataclass(frozen=True)
class Point:
    """One rate point. Training starts from PCA quantized with step 1/gain, so the gain
    and the code size set the rate; lmbda keeps the trade-off consistent with them."""

    latent: int
    gain: float
    lmbda: float
    hidden: tuple[int, ...] = (512, 256)


NETWORKS = {
    "dense10": Point(latent=10, gain=0.8, lmbda=0.0005, hidden=(256, 128)),
    "dense32": Point(latent=32, gain=2.0, lmbda=0.003),
}
# The shipped names: a network and the refinement bound it codes with, 2 to 5 dB apart.
# Bigger networks were tried (64-192 latents): with refinement, dense32 beats them at
# every quality above its own, so they are not worth their bytes.
PRESETS = {
    "q0": ("dense10", None),
    "q1": ("dense32", None),
    "q2": ("dense32", 56),
    "q3": ("dense32", 40),
    "q4": ("dense32", 24),
    "q5": ("dense32", 16),
    "q6": ("dense32", 10),
    "q7": ("dense32", 6),
    "q8": ("dense32", 3),
}
DATASETS = ("mnist", "fashion-mnist")
EPOCHS = 8


def config(point: Point, epochs: int) -> TrainConfig:
    return TrainConfig(
        arch="deep", hidden=point.hidden, latent=point.latent, pca_gain=point.gain, lmbda=point.lmbda,
        epochs=epochs, batch_size=128, seed=0, threads=1,
    )


def build(dataset: str, network: str, epochs: int, refit: bool, measure_only: bool = False) -> None:
    """Train a network (or, with `refit`, load it and refit its refinement tables on the
    images `train` would use; with `measure_only`, load it as it is), measure each of its
    presets on the test split and write it."""
    point = NETWORKS[network]
    cfg = config(point, epochs)
    started = time.time()
    images = data.load(f"{dataset}:train").images
    path = zoo.network_path(dataset, network)
    if measure_only:
        codec = ImageCodec.load(path)
    elif refit:
        shipped = ImageCodec.load(path)
        codec = shipped.with_refinement(split(images, TrainConfig(**shipped.meta["train"]))[1])
        for key in [k for k in codec.meta if k not in ("train", "history", "train_minutes")]:
            del codec.meta[key]
    else:
        codec = train(images, cfg).codec
    test = list(data.load(f"{dataset}:test").images)
    presets = {}
    for name, (net, bound) in PRESETS.items():
        if net != network:
            continue
        ev = evaluate(codec, test, max_error=bound)
        within = "" if bound is None else f", every pixel within {bound} grey levels"
        presets[f"{dataset}:{name}"] = {
            "max_error": bound,
            "description": (
                f"{dataset} test set: {ev.bytes_per_image:.1f} B/image in one file, {ev.psnr:.2f} dB PSNR, "
                f"SSIM {ev.ssim:.3f} (deep dense {'-'.join(map(str, point.hidden))}, {point.latent} latents{within})"
            ),
            "test": ev.as_dict(),
        }
        print(f"{dataset}:{name}: {presets[f'{dataset}:{name}']['description']}", flush=True)
    codec.meta.update(presets=presets, fingerprint=codec.fingerprint.hex(), dataset=dataset)
    codec.meta.setdefault("train_minutes", round((time.time() - started) / 60, 1))
    zoo.MODEL_DIR.mkdir(parents=True, exist_ok=True)
    codec.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    every = [f"{d}:{n}" for d in DATASETS for n in NETWORKS]
    parser.add_argument("networks", nargs="*", default=every, metavar="NETWORK", help=f"networks to train (default: all of {', '.join(every)})")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--refit-refinement", action="store_true", help="keep the shipped weights; refit the refinement tables only")
    parser.add_argument("--measure-only", action="store_true",
                        help="keep the shipped models as they are; measure their presets again")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.networks) - set(every))
    if unknown:
        parser.error(f"unknown network(s): {', '.join(unknown)}")
    for name in args.networks:
        dataset, _, network = name.partition(":")
        build(dataset, network, args.epochs, args.refit_refinement, args.measure_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
