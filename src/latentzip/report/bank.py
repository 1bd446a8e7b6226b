"""Models trained for the report, each once: experiments that need the same model share it.

The dense code-32 autoencoder is a variant, a point of the code-size sweep and a point of
the rate-distortion plot; it is trained one time and reused by all three.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
from tqdm.auto import tqdm

from ..image.codec import ImageCodec
from ..image.train import TrainConfig, train
from .budget import Budget


@dataclass
class Trained:
    codec: ImageCodec
    seconds: float
    epochs: int  # finished epochs; fewer than asked when the time cap stopped it
    stopped_early: bool


class ModelBank:
    def __init__(self, budget: Budget, progress: bool = True):
        self.budget = budget
        self.progress = progress
        self._trained: dict[str, Trained] = {}

    def config(self, **settings: object) -> TrainConfig:
        """A training configuration on this report's budget."""
        defaults = {"epochs": self.budget.epochs, "minutes": self.budget.minutes_per_model, "seed": self.budget.seed}
        return TrainConfig(**{**defaults, **settings})

    def get(self, label: str, images: np.ndarray, cfg: TrainConfig) -> Trained:
        """The model `cfg` trained on `images`, trained now unless an experiment already did."""
        key = json.dumps([asdict(replace(cfg, threads=None)), hashlib.sha256(images.tobytes()).hexdigest()])
        if key not in self._trained:
            if self.progress:
                tqdm.write(f"  training {label} ({cfg.epochs} epochs on {len(images):,} images)")
            start = time.monotonic()
            result = train(images, cfg, progress=self.progress)
            self._trained[key] = Trained(
                result.codec.named(label), time.monotonic() - start, len(result.history), result.stopped_early
            )
        return self._trained[key]
