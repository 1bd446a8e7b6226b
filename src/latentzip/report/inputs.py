"""The images a report runs on: a training set, a held-out test set, and their labels.

A built-in set named without a split uses its own train and test splits. Anything else (a
directory, an array, a split of a built-in set) is shuffled once and split 80/20 by
image, so no test image is seen in training. Dense autoencoders need one input size, so
images that differ in size or are larger than `MAX_SIDE` are cut into `MAX_SIDE` square
patches (patches of one image stay on one side of the split); the report says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import data
from ..errors import DataError
from .budget import Budget

MAX_SIDE = 32


@dataclass
class Inputs:
    spec: str
    train: np.ndarray  # (N, H, W, C) uint8
    test: np.ndarray
    train_labels: np.ndarray | None
    test_labels: np.ndarray | None
    classes: list[str] | None
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.test.shape[1:])  # type: ignore[return-value]

    @property
    def dims(self) -> int:
        """Numbers per image: what 'latent / input dimensions' divides by."""
        return int(np.prod(self.shape))

    def describe(self) -> dict[str, object]:
        h, w, c = self.shape
        return {
            "spec": self.spec,
            "train_images": len(self.train),
            "test_images": len(self.test),
            "height": h,
            "width": w,
            "channels": c,
            "classes": self.classes,
            "notes": self.notes,
        }


def prepare(spec: str, budget: Budget) -> Inputs:
    """Load `spec` and cut it into the train and test arrays every experiment shares."""
    rng = np.random.default_rng(budget.seed)
    if spec in data.dataset_names():
        train, test = data.load(f"{spec}:train"), data.load(f"{spec}:test")
        n_train, n_test = min(len(train), budget.train_images), min(len(test), budget.test_images)
        parts = (
            (list(train.images[:n_train]), train.labels[:n_train]),
            (list(test.images[:n_test]), test.labels[:n_test]),
        )
        classes = test.classes
        notes = [f"{spec}: the first {n_train:,} training and {n_test:,} test images of its own splits"]
    else:
        loaded = data.load(spec)
        if len(loaded) < 2:
            raise DataError(f"{spec}: a report needs at least 2 images (some to train on, some to test)")
        order = rng.permutation(len(loaded))
        n_test = max(1, len(loaded) // 5)
        labels = loaded.labels
        images = list(loaded.images)

        def pick(idx: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None]:
            return [images[i] for i in idx], None if labels is None else labels[idx]

        parts = pick(order[n_test:]), pick(order[:n_test])
        classes = loaded.classes
        notes = [f"{spec}: {len(loaded)} images, shuffled and split 80/20 by image"]
    (train_images, train_labels), (test_images, test_labels) = parts
    shapes = {im.shape for im in train_images + test_images}
    channels = {s[-1] for s in shapes}
    if len(channels) > 1:
        raise DataError(f"{spec} mixes grey and colour images; a report needs one kind")
    if len(shapes) > 1 or max(max(s[0], s[1]) for s in shapes) > MAX_SIDE:
        smallest = min(min(s[0], s[1]) for s in shapes)
        side = min(MAX_SIDE, smallest)
        train_x, train_labels = _patches(train_images, train_labels, side, budget.train_images, rng)
        test_x, test_labels = _patches(test_images, test_labels, side, budget.test_images, rng)
        notes.append(
            f"images cut into {side}x{side} patches at random places (dense autoencoders need one "
            f"input size): {len(train_x)} for training, {len(test_x)} for testing"
        )
    else:
        train_x = np.stack(train_images)[: budget.train_images]
        test_x = np.stack(test_images)[: budget.test_images]
        train_labels = None if train_labels is None else train_labels[: budget.train_images]
        test_labels = None if test_labels is None else test_labels[: budget.test_images]
    return Inputs(spec, train_x, test_x, train_labels, test_labels, classes, notes)


def _patches(
    images: list[np.ndarray], labels: np.ndarray | None, side: int, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """About `count` side x side patches, spread evenly over the images."""
    per_image = max(1, math.ceil(count / len(images)))
    patches, patch_labels = [], []
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        for _ in range(per_image):
            top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            patches.append(image[top : top + side, left : left + side])
            if labels is not None:
                patch_labels.append(labels[i])
    keep = rng.permutation(len(patches))[:count]
    stacked = np.stack(patches)[keep]
    return stacked, None if labels is None else np.asarray(patch_labels)[keep]
