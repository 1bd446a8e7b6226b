"""latentzip: neural data compression with real bitstreams.

    codec = latentzip.load_model("fashion-mnist:q2")
    blob = codec.encode(images)          # uint8 arrays -> bytes of one .ltz file
    images2 = codec.decode(blob)

    blob = latentzip.compress(data)      # any bytes, lossless
    data = latentzip.decompress(blob)

Heavy modules (torch) load on first use, so the lossless path and `--help` start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": ".image.codec",
    "ImageCodec": ".image.codec",
    "train": ".image.train",
    "TrainConfig": ".image.train",
    "compress": ".lossless",
    "decompress": ".lossless",
    "LatentzipError": ".errors",
    "FormatError": ".errors",
    "DataError": ".errors",
    "ModelError": ".errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'latentzip' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
