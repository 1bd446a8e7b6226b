"""How much data and training the report spends: `quick`, `full`, or your own.

Every experiment trains its models on the same budget (epochs, and a time cap per
model), so the variants are compared at equal cost, as the report says they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import LatentzipError


@dataclass(frozen=True)
class Budget:
    name: str
    train_images: int  # at most, for the autoencoders and PCA
    test_images: int  # at most, for errors, per-class figures and t-SNE
    codec_images: int  # at most, for the rate-distortion sweeps and speeds (AVIF is slow)
    epochs: int
    minutes_per_model: float | None  # a model stops early (and says so) past this
    tsne_points: int  # originals; as many reconstructions join them
    photo_epochs: int  # the STL-10-style conv network on 96x96 photo patches
    anomaly_classes: int  # classes held out in turn as the anomalies (one model each)
    code: int = 32  # code size of the variants
    seed: int = 0
    unet_steps: int = 150  # training steps of the colourisation and watermark-removal networks (within minutes_per_model)

    @classmethod
    def quick(cls, seed: int = 0) -> Budget:
        """Minutes on a laptop CPU: a few epochs on a subset; the shapes of the curves show."""
        return cls("quick", 5000, 1000, 300, 3, 1.0, 500, 2, 1, seed=seed)

    @classmethod
    def full(cls, seed: int = 0) -> Budget:
        """The whole data set and real training: hours on a CPU."""
        return cls("full", 60000, 10000, 2000, 20, 15.0, 2000, 40, 10, seed=seed, unet_steps=3000)

    def limited(
        self, epochs: int | None = None, train_images: int | None = None, test_images: int | None = None
    ) -> Budget:
        """This budget with other epochs or image counts (None keeps a value)."""
        for label, value in (("epochs", epochs), ("images", train_images), ("test images", test_images)):
            if value is not None and value < 1:
                raise LatentzipError(f"{label} must be at least 1, got {value}")
        if epochs is None and train_images is None and test_images is None:
            return self
        test = test_images or self.test_images
        return replace(
            self,
            name=f"{self.name}, limited",
            epochs=epochs or self.epochs,
            photo_epochs=min(self.photo_epochs, epochs or self.photo_epochs),
            # the same share of the U-Nets' steps as of the epochs, never more
            unet_steps=max(1, round(self.unet_steps * min(1.0, (epochs or self.epochs) / self.epochs))),
            train_images=train_images or self.train_images,
            test_images=test,
            codec_images=min(self.codec_images, test),
            tsne_points=min(self.tsne_points, test),
        )

    def flags(self) -> str | None:
        """The `latentzip report` options that give this budget; None for one made in Python."""
        if not self.name.startswith(("quick", "full")):
            return None
        base = Budget.quick(self.seed) if self.name.startswith("quick") else Budget.full(self.seed)
        parts = ["--quick"] if base.name == "quick" else []
        for flag, name in (("--epochs", "epochs"), ("--images", "train_images"), ("--test-images", "test_images")):
            if getattr(self, name) != getattr(base, name):
                parts.append(f"{flag} {getattr(self, name)}")
        if self.seed:
            parts.append(f"--seed {self.seed}")
        return " ".join(parts)

    def describe(self) -> str:
        cap = "" if self.minutes_per_model is None else f", at most {self.minutes_per_model:g} min per model"
        return f"{self.epochs} epochs{cap}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
