"""Train the models latentzip ships, from scratch, into src/latentzip/models.

    python scripts/train_zoo.py                      # every model (CPU: about an hour)
    python scripts/train_zoo.py fashion-mnist:q2     # just one
    python scripts/train_zoo.py --refit-refinement   # keep the weights, refit the refinement tables

Each model is trained on the dataset's training split, then measured on its test split
through real files; those measured figures become the model's description in
`latentzip models`. Seeds are fixed, so a re-run gives the same models on one machine.
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


POINTS = {
    "q0": Point(latent=10, gain=0.8, lmbda=0.0005, hidden=(256, 128)),
    "q1": Point(latent=32, gain=2.0, lmbda=0.003),
    "q2": Point(latent=64, gain=4.0, lmbda=0.01),
    "q3": Point(latent=128, gain=6.0, lmbda=0.03),
    "q4": Point(latent=192, gain=10.0, lmbda=0.1),
}
DATASETS = ("mnist", "fashion-mnist")
EPOCHS = 8


def config(point: Point, epochs: int) -> TrainConfig:
    return TrainConfig(
        arch="deep", hidden=point.hidden, latent=point.latent, pca_gain=point.gain, lmbda=point.lmbda,
        epochs=epochs, batch_size=128, seed=0, threads=1,
    )


def build(name: str, epochs: int, refit: bool) -> None:
    """Train `name` (or, with `refit`, load it and refit its refinement tables on the
    images `train` would use), measure it on the test split and write it."""
    dataset, _, level = name.partition(":")
    cfg = config(POINTS[level], epochs)
    started = time.time()
    images = data.load(f"{dataset}:train").images
    if refit:
        shipped = zoo.load(name)
        bare = ImageCodec(shipped.model, shipped.tables, {k: v for k, v in shipped.meta.items() if k in ("train", "history", "train_minutes")})
        codec = bare.with_refinement(split(images, TrainConfig(**shipped.meta["train"]))[1])
    else:
        codec = train(images, cfg).codec
    test = data.load(f"{dataset}:test")
    ev = evaluate(codec, list(test.images))
    codec.meta.update(
        description=(
            f"{dataset} test set: {ev.bytes_per_image:.1f} B/image in one file, {ev.psnr:.2f} dB PSNR, "
            f"SSIM {ev.ssim:.3f} (deep dense {'-'.join(map(str, cfg.hidden))}, {cfg.latent} latents)"
        ),
        fingerprint=codec.fingerprint.hex(),
        dataset=dataset,
        test=ev.as_dict(),
    )
    codec.meta.setdefault("train_minutes", round((time.time() - started) / 60, 1))
    zoo.MODEL_DIR.mkdir(parents=True, exist_ok=True)
    codec.save(zoo.path_of(name))
    print(f"{name}: {codec.meta['description']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    every = [f"{d}:{q}" for d in DATASETS for q in POINTS]
    parser.add_argument("names", nargs="*", default=every, metavar="NAME", help=f"models to train (default: all of {', '.join(every)})")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--refit-refinement", action="store_true", help="keep the shipped weights; refit the refinement tables only")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(every))
    if unknown:
        parser.error(f"unknown model name(s): {', '.join(unknown)}")
    for name in args.names:
        build(name, args.epochs, args.refit_refinement)
    return 0


if __name__ == "__main__":
    sys.exit(main())
