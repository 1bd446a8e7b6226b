"""The models latentzip ships, by name ("fashion-mnist:q3").

A shipped name is a quality preset: one of the model files in latentzip/models (a
trained network), the quality it codes at (for networks with several) and the
refinement bound it codes with (none for the network alone).
Each file lists its presets, with their descriptions measured on the test set, in its
metadata, so listing models and finding the one a file needs reads a few hundred bytes
per file, not the weights. Presets of one network share its fingerprint: a file made
with any of them decodes with any other.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from safetensors import safe_open

from ..errors import ModelError
from .codec import ImageCodec

MODEL_DIR = Path(__file__).resolve().parent.parent / "models"
SUFFIX = ".safetensors"


@dataclass(frozen=True)
class Preset:
    path: Path  # the network's model file
    max_error: int | None  # the refinement bound it codes with
    description: str
    fingerprint: str  # hex, of the network
    quality: int | None = None  # the network's quality it codes at (None: its default)


def network_path(dataset: str, network: str) -> Path:
    """Where the model file of a shipped network ("fashion-mnist", "dense32") lives."""
    return MODEL_DIR / f"{dataset}-{network}{SUFFIX}"


def names() -> list[str]:
    """Shipped names by dataset, then quality (q2 before q10)."""
    def order(name: str) -> tuple[str, int, str]:
        dataset, _, point = name.partition(":")
        return dataset, len(point), point

    return sorted(_catalog(), key=order)


def networks(dataset: str) -> list[str]:
    """One shipped name per network of `dataset`: the one that codes with no bound (the
    others are that network at a bound, with the same latents)."""
    return [n for n in names() if n.partition(":")[0] == dataset and _catalog()[n].max_error is None]


def preset(name: str) -> Preset:
    if name not in _catalog():
        raise ModelError(f"no shipped model named {name!r} (shipped: {', '.join(names()) or 'none'})")
    return _catalog()[name]


def describe(name: str) -> str:
    return preset(name).description


def find(fingerprint: bytes) -> str | None:
    """A shipped model whose network has this fingerprint (the one without a bound first)."""
    found = [n for n in names() if _catalog()[n].fingerprint == fingerprint.hex()]
    return min(found, key=lambda n: _catalog()[n].max_error is not None, default=None)


def load(name: str) -> ImageCodec:
    chosen = preset(name)
    return ImageCodec.load(chosen.path).named(name).bounded(chosen.max_error, chosen.quality)


def load_model(model: str | os.PathLike[str]) -> ImageCodec:
    """A shipped model by name (see `latentzip models`), a model file by path, or a
    model file's preset (`my.model:q3`)."""
    if isinstance(model, str) and model in names():
        return load(model)
    path = Path(model)
    if path.exists():
        return ImageCodec.load(path)
    base, _, preset = str(model).rpartition(":")
    if base and Path(base).is_file():
        return ImageCodec.load(base).preset(preset)
    shipped = ", ".join(names()) or "none"
    raise ModelError(f"no model named {str(model)!r} and no such file (shipped models: {shipped})")


@lru_cache(maxsize=1)
def _catalog() -> dict[str, Preset]:
    found = {}
    for path in sorted(MODEL_DIR.glob(f"*{SUFFIX}")):
        with safe_open(str(path), "pt") as handle:
            meta = json.loads((handle.metadata() or {}).get("meta", "{}"))
        for name, entry in meta.get("presets", {}).items():
            found[name] = Preset(path, entry["max_error"], entry.get("description", ""), meta.get("fingerprint", ""),
                                 entry.get("quality"))
    return found
