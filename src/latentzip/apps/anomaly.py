"""Anomaly detection: an image unlike the codec's training data is badly reconstructed and
expensive to code, because the learned prior gives its latents little probability.

Three scores per image: the reconstruction error, the bits, and their combination in the
codec's own terms, the rate-distortion loss it was trained to keep low on normal images:
bits + lmbda x 255^2 x MSE x pixels (MSE on [0, 1] pixels), i.e. the training loss of that
image in bits. The detector is fitted on normal images: each score's threshold is the
(1 - fpr) quantile of that score over them, so about a fraction `fpr` of normal images is
flagged. Fit on normal images the model was not trained on, or the rate on new normal
images comes out higher than asked.

Which model scores well: one whose code is a narrow bottleneck fitted to the normal images,
as PCA is. The default detector (`train_detector`) is a deep dense model with 32 latents,
started from PCA: it keeps what normal images share and loses the rest, so an unseen kind of
image reconstructs badly. A convolutional codec keeps a latent for every block of pixels and
reconstructs nearly any image well, normal or not, so its scores separate poorly.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import baselines, metrics
from ..errors import LatentzipError
from ..image.codec import ImageCodec, ImagesLike
from ..image.train import DENSE_MAX_PIXELS, TrainConfig, train
from .progress import chunks

SCORES = ("error", "bits", "combined")
THUMBNAIL_SIDE = int(np.sqrt(DENSE_MAX_PIXELS))  # the default detector's images when they are larger or mixed
CALIBRATE_SHARE = 0.2  # of the normal images: set aside from training to set the thresholds
MIN_NORMAL = 10


@dataclass
class AnomalyScores:
    """Per-image scores; higher means more anomalous."""

    error: np.ndarray  # MSE of the codec's reconstruction, in squared 8-bit levels
    bits: np.ndarray  # exact code length under the frozen prior
    combined: np.ndarray  # the codec's rate-distortion loss for the image, in bits
    flagged: np.ndarray  # bool: the detector's score is above its threshold

    def by(self, name: str) -> np.ndarray:
        return getattr(self, name)


class AnomalyDetector:
    """Fit on normal images, then score new ones by reconstruction error, bits or both.

    `lmbda` weighs error against bits in the combined score; by default it is the one
    the codec was trained with."""

    def __init__(self, codec: ImageCodec, fpr: float = 0.05, score: str = "combined", lmbda: float | None = None):
        if not 0 < fpr < 1:
            raise LatentzipError(f"the target false-positive rate must be between 0 and 1, got {fpr}")
        if score not in SCORES:
            raise LatentzipError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")
        if lmbda is None:
            lmbda = codec.trained_lmbda
            if lmbda is None:
                raise LatentzipError(f"{codec.label} does not record the lmbda it was trained with; pass lmbda")
        # The scores are the network's own rate and distortion, of its analysis's latents:
        # fitting them to each image (effort) would take several times as long.
        self.codec = codec.bounded(None).at_effort(0)
        cfg = codec.cfg  # a detector that learned from thumbnails scores thumbnails
        self.thumbnails = (cfg.height, cfg.width) if codec.meta.get("anomaly", {}).get("thumbnails") else None
        self.fpr = fpr
        self.score_name = score
        self.lmbda = float(lmbda)
        self.thresholds: dict[str, float] = {}

    def fit(self, images: ImagesLike, progress: bool = False) -> "AnomalyDetector":
        """Set each score's threshold from normal images."""
        if len(images) < 2:
            raise LatentzipError("fitting an anomaly detector needs at least 2 normal images")
        scores = self._scores(images, progress)
        self.thresholds = {name: float(np.quantile(scores.by(name), 1 - self.fpr)) for name in SCORES}
        return self

    def score(self, images: ImagesLike, progress: bool = False) -> AnomalyScores:
        """Scores of `images`, flagged where the chosen score is above its threshold."""
        if not self.thresholds:
            raise LatentzipError("fit the anomaly detector on normal images before scoring")
        scores = self._scores(images, progress)
        scores.flagged = scores.by(self.score_name) > self.threshold
        return scores

    @property
    def threshold(self) -> float:
        return self.thresholds[self.score_name]

    def _scores(self, images: ImagesLike, progress: bool) -> AnomalyScores:
        error, bits, pixels = [], [], []
        for chunk in chunks(images, "score", progress):
            if self.thumbnails:
                chunk = [thumbnail(im, self.thumbnails) for im in chunk]
            restored, cost = self.codec.reconstruct_with_bits(chunk)
            error.extend(metrics.mse(np.reshape(im, out.shape), out) for im, out in zip(chunk, restored))
            pixels.extend(out.shape[0] * out.shape[1] for out in restored)
            bits.append(cost)
        mse, cost = np.asarray(error), np.concatenate(bits)
        combined = cost + self.lmbda * mse * np.asarray(pixels)
        return AnomalyScores(mse, cost, combined, np.zeros(len(mse), dtype=bool))


def scoring_note(codec: ImageCodec) -> str | None:
    """Why `codec` is known to score poorly, or None."""
    if codec.cfg.arch == "conv":
        return (f"{codec.label} is a convolutional codec: it reconstructs unseen kinds of images nearly as well as "
                "normal ones, so its scores separate them poorly (leave out -m to train a detector)")
    return None


def thumbnail(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`image` (H, W, C) or (H, W) resized to `shape` by area averaging."""
    from PIL import Image

    if image.shape[:2] == shape:
        return image
    channels = image.shape[2:]
    planes = image.reshape(*image.shape[:2], -1)
    out = [np.asarray(Image.fromarray(planes[..., c]).resize(shape[::-1], Image.Resampling.BOX))
           for c in range(planes.shape[2])]
    return np.stack(out, axis=-1).reshape(*shape, *channels)


def train_detector(
    normal: ImagesLike,
    fpr: float = 0.05,
    score: str = "combined",
    epochs: int | None = None,
    seed: int = 0,
    progress: bool = False,
    on_start: Callable[[TrainConfig, int, str], None] | None = None,
) -> AnomalyDetector:
    """A detector with a model suited to scoring, trained on `normal` images alone.

    A share CALIBRATE_SHARE of them (at random) is kept out of training to set the
    thresholds. The model is the default dense one ("deep", 32 latents, started from PCA)
    at the images' size when they share one of at most DENSE_MAX_PIXELS pixels; other images
    are scored as THUMBNAIL_SIDE-pixel square thumbnails, which the model file records."""
    images = [np.asarray(im) for im in normal]
    if len(images) < MIN_NORMAL:
        raise LatentzipError(f"training an anomaly detector needs at least {MIN_NORMAL} normal images, "
                             f"got {len(images)}")
    shapes = {im.shape[:2] for im in images}
    side = THUMBNAIL_SIDE
    small = len(shapes) == 1 and np.prod(next(iter(shapes))) <= DENSE_MAX_PIXELS
    if not small:
        images = [thumbnail(im, (side, side)) for im in images]
    order = np.random.default_rng(seed).permutation(len(images))
    held = max(2, round(CALIBRATE_SHARE * len(images)))
    fit = [images[k] for k in order[held:]]
    codec = train(fit, TrainConfig(arch="deep", epochs=epochs, seed=seed), progress=progress,
                  on_start=on_start).codec
    codec.meta["anomaly"] = {"thumbnails": not small, "trained_images": len(fit)}
    return AnomalyDetector(codec, fpr, score).fit([images[k] for k in order[:held]], progress)


def against_peers(
    detector: AnomalyDetector,
    normal: np.ndarray,
    test: np.ndarray,
    is_anomaly: np.ndarray,
    k: int,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """ROC AUC of each of a fitted detector's scores and of its classical peers on `test`,
    and what the detector's threshold gives there; also every method's scores, for ROC curves.

    The peers (PCA reconstruction error with `k` components, IsolationForest) are fitted
    on `normal`, the normal images the detector learned from."""
    from sklearn.metrics import roc_auc_score

    scores = detector.score(test)
    by_method = {f"latentzip-{name}": scores.by(name) for name in SCORES}
    by_method["pca-error"] = baselines.pca_anomaly_scores(normal, test, k, seed)
    by_method["isolation-forest"] = baselines.isolation_forest_scores(normal, test, seed)
    return {
        "auc": {method: float(roc_auc_score(is_anomaly, s)) for method, s in by_method.items()},
        "threshold": {
            "score": detector.score_name,
            "false_positive_rate": float(scores.flagged[~is_anomaly].mean()),
            "detection_rate": float(scores.flagged[is_anomaly].mean()),
        },
    }, by_method
