"""latentzip: neural data compression with real bitstreams.

    codec = latentzip.load_model("fashion-mnist:q2")
    blob = codec.encode(images)          # uint8 arrays -> bytes of one .ltz file
    images2 = codec.decode(blob)
    figures = latentzip.evaluate(codec, images)   # bytes, bpp, PSNR, SSIM of real files

    latentzip.build_report("fashion-mnist", "report/")   # every experiment, as HTML + JSON

    blob = latentzip.compress(data)      # any bytes, lossless
    data = latentzip.decompress(blob)

Heavy modules (torch) load on first use, so the lossless path and `--help` start fast.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# PyTorch's OpenMP threads spin while they wait for each other by default. When another
# process holds a core, that spinning made small training steps ~20x slower (measured:
# 1.24 s instead of 0.06 s per step of a dense model on 2 busy cores). Sleeping waits cost
# nothing measurable when the cores are free. Set before torch loads; the user's choice wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_LAZY = {
    "load_model": ".image.zoo",
    "ImageCodec": ".image.codec",
    "train": ".image.train",
    "TrainConfig": ".image.train",
    "evaluate": ".image.evaluate",
    "build_report": ".report",
    "compress": ".lossless",
    "decompress": ".lossless",
    "LatentzipError": ".errors",
    "FormatError": ".errors",
    "LimitError": ".errors",
    "DataError": ".errors",
    "ModelError": ".errors",
    "denoise": ".apps",
    "AnomalyDetector": ".apps",
    "embed": ".apps",
    "write_codes": ".apps",
    "colorize": ".apps",
    "Colorizer": ".apps",
    "UNetTrainConfig": ".apps",
    "train_colorizer": ".apps",
    "MarkRemover": ".apps",
    "Marks": ".apps",
    "watermark": ".apps",
    "train_unmarker": ".apps",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'latentzip' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
