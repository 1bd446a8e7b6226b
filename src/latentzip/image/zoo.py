"""The models latentzip ships, by name ("fashion-mnist:q2").

Each is a model file in latentzip/models named like the model with ':' as '-'. Its
description and fingerprint sit in the file's metadata, so listing models and finding
the one a file needs reads a few hundred bytes per model, not the weights.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from safetensors import safe_open

from ..errors import ModelError
from .codec import ImageCodec

MODEL_DIR = Path(__file__).resolve().parent.parent / "models"
SUFFIX = ".safetensors"


def path_of(name: str) -> Path:
    return MODEL_DIR / (name.replace(":", "-", 1) + SUFFIX)


def names() -> list[str]:
    return sorted(_catalog())


def describe(name: str) -> str:
    return _catalog()[name].get("description", "")


def find(fingerprint: bytes) -> str | None:
    """The shipped model with this fingerprint, if any."""
    for name, meta in _catalog().items():
        if meta.get("fingerprint") == fingerprint.hex():
            return name
    return None


def load(name: str) -> ImageCodec:
    if name not in _catalog():
        raise ModelError(f"no shipped model named {name!r} (shipped: {', '.join(names()) or 'none'})")
    return ImageCodec.load(path_of(name)).named(name)


@lru_cache(maxsize=1)
def _catalog() -> dict[str, dict]:
    found = {}
    for path in sorted(MODEL_DIR.glob(f"*{SUFFIX}")):
        stem = path.name[: -len(SUFFIX)]
        dataset, _, point = stem.rpartition("-")
        with safe_open(str(path), "pt") as handle:
            meta = json.loads((handle.metadata() or {}).get("meta", "{}"))
        found[f"{dataset}:{point}"] = meta
    return found
