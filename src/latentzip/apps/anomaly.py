"""Anomaly detection: an image unlike the codec's training data is badly reconstructed and
expensive to code, because the learned prior gives its latents little probability.

Three scores per image: the reconstruction error, the bits, and their combination in the
codec's own terms, the rate-distortion loss it was trained to keep low on normal images:
bits + lmbda x 255^2 x MSE x pixels (MSE on [0, 1] pixels), i.e. the training loss of that
image in bits. The detector is fitted on normal images: each score's threshold is the
(1 - fpr) quantile of that score over them, so about a fraction `fpr` of normal images is
flagged. Fit on normal images the model was not trained on, or the rate on new normal
images comes out higher than asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import baselines, metrics
from ..errors import LatentzipError
from ..image.codec import ImageCodec, ImagesLike
from .progress import chunks

SCORES = ("error", "bits", "combined")


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
            lmbda = codec.meta.get("train", {}).get("lmbda")
            if lmbda is None:
                raise LatentzipError(f"{codec.label} does not record the lmbda it was trained with; pass lmbda")
        self.codec = codec.bounded(None)  # the scores are the network's own rate and distortion
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
            restored, cost = self.codec.reconstruct_with_bits(chunk)
            error.extend(metrics.mse(np.reshape(im, out.shape), out) for im, out in zip(chunk, restored))
            pixels.extend(out.shape[0] * out.shape[1] for out in restored)
            bits.append(cost)
        mse, cost = np.asarray(error), np.concatenate(bits)
        combined = cost + self.lmbda * mse * np.asarray(pixels)
        return AnomalyScores(mse, cost, combined, np.zeros(len(mse), dtype=bool))


def against_peers(
    codec: ImageCodec,
    fit: np.ndarray,
    calibrate: np.ndarray,
    test: np.ndarray,
    is_anomaly: np.ndarray,
    k: int,
    fpr: float = 0.05,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """ROC AUC of each latentzip score and of its classical peers on `test`, and what the
    detector's threshold gives there; also every method's scores, for ROC curves.

    The peers (PCA reconstruction error with `k` components, IsolationForest) are fitted
    on `fit`, the normal images the codec was trained on; the detector's thresholds are
    set on `calibrate`, other normal images."""
    from sklearn.metrics import roc_auc_score

    detector = AnomalyDetector(codec, fpr=fpr).fit(calibrate)
    scores = detector.score(test)
    by_method = {f"latentzip-{name}": scores.by(name) for name in SCORES}
    by_method["pca-error"] = baselines.pca_anomaly_scores(fit, test, k, seed)
    by_method["isolation-forest"] = baselines.isolation_forest_scores(fit, test, seed)
    return {
        "auc": {method: float(roc_auc_score(is_anomaly, s)) for method, s in by_method.items()},
        "threshold": {
            "score": detector.score_name,
            "false_positive_rate": float(scores.flagged[~is_anomaly].mean()),
            "detection_rate": float(scores.flagged[is_anomaly].mean()),
        },
    }, by_method
