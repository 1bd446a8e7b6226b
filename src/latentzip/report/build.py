"""Run every experiment and write the report: index.html, results.json and figures/.

Nothing is written until every experiment has finished; then all files land at once
(`fsio.write_tree`), so an interrupted or failed run leaves no half-made report.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from ..data import load as load_dataset
from ..errors import DataError, LatentzipError
from ..fsio import write_tree
from . import applications, autoencoders, embedding, page, rates
from .bank import ModelBank
from .budget import Budget
from .inputs import prepare
from .section import Context, Section, Table

EXPERIMENTS: tuple[tuple[str, Callable[[Context], Section]], ...] = (
    ("autoencoder variants", autoencoders.variants),
    ("code sizes", autoencoders.code_size_sweep),
    ("compression levels", autoencoders.compression_levels),
    ("error per class", autoencoders.per_class),
    ("t-SNE", embedding.tsne),
    ("rate-distortion against classical codecs", rates.rate_distortion),
    ("speed", rates.speed),
    ("denoising", applications.denoising),
    ("anomaly detection", applications.anomaly),
    ("dimensionality reduction", applications.embeddings),
    ("colourisation", applications.colorization),
    ("watermark removal", applications.watermark_removal),
)


DEMO_DATA, DEMO_FALLBACK = "fashion-mnist", "mnist"


@dataclass
class Report:
    directory: Path
    results: dict[str, Any]
    summary: Table
    seconds: float

    @property
    def index(self) -> Path:
        return self.directory / "index.html"


def _jsonable(value: Any) -> Any:
    """Plain JSON: NumPy numbers as Python ones, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _summary(variants: Section) -> Table:
    models = variants.results["models"]
    rows = [
        [name, f"{r['bytes_per_image']:,.1f}", f"{r['psnr']:.2f}", f"{r['ssim']:.3f}",
         "–" if r.get("train_seconds") is None else f"{r['train_seconds']:.0f}"]
        for name, r in models.items()
    ]
    return Table(["model", "bytes/image", "PSNR dB", "SSIM", "training s"], rows,
                 f"Code size {variants.results['code_size']}, test set, real files.")


def build_report(
    data: str,
    out: str | os.PathLike[str],
    budget: Budget | None = None,
    force: bool = False,
    progress: bool = True,
) -> Report:
    """Run the experiments on `data` (a dataset spec) and write the report under `out`.

    `budget` defaults to `Budget.quick()`; `force` lets the files replace those of an
    earlier report in the same directory."""
    budget = budget or Budget.quick()
    began = time.monotonic()
    if not force and (Path(out) / "index.html").exists():
        raise LatentzipError(f"{Path(out) / 'index.html'} already exists (use -f to overwrite)")
    inputs = prepare(data, budget)
    ctx = Context(inputs, budget, ModelBank(budget, progress), progress)
    sections: list[Section] = []
    timings: dict[str, float] = {}
    for i, (title, run) in enumerate(EXPERIMENTS, 1):
        if progress:
            tqdm.write(f"[{i}/{len(EXPERIMENTS)}] {title}")
        start = time.monotonic()
        sections.append(run(ctx))
        timings[sections[-1].key] = time.monotonic() - start
    seconds = time.monotonic() - began
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    flags = budget.flags()
    command = (
        "a budget made in Python" if flags is None
        else " ".join(["latentzip report --data", shlex.quote(data), "-o", shlex.quote(Path(out).name), flags]).strip()
    )
    results = _jsonable({
        "latentzip_version": __version__,
        "created": created,
        "seconds": seconds,
        "command": command,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "budget": budget.as_dict(),
        "inputs": inputs.describe(),
        **{s.key: {"title": s.title, **s.results, "findings": s.findings, "seconds": timings[s.key],
                   "figures": [f"figures/{f.file}" for f in s.figures]} for s in sections},
    })
    summary = _summary(sections[0])
    h, w, c = inputs.shape
    meta = [
        f"Data: {data}: {len(inputs.train):,} training and {len(inputs.test):,} test images of {h}x{w}x{c}.",
        *inputs.notes,
        f"Budget: {budget.name} ({budget.describe()}, seed {budget.seed}).",
        f"Made {created} by latentzip {__version__} in {seconds / 60:.1f} min on {os.cpu_count()} CPUs "
        f"(torch {torch.__version__}). Reproduce: {command}",
    ]
    files = {
        "index.html": page.render(f"latentzip report: {data}", meta, summary, sections).encode(),
        "results.json": json.dumps(results, indent=1).encode(),
        **{f"figures/{f.file}": f.png for s in sections for f in s.figures},
    }
    write_tree(out, files.items(), overwrite=force)
    return Report(Path(out), results, summary, seconds)


def demo(out: str | os.PathLike[str], progress: bool = True) -> Report:
    """The quick report on Fashion-MNIST, or on MNIST where Fashion-MNIST cannot be had.

    An earlier report in `out` is replaced: the demo is meant to be run again and again."""
    name = DEMO_DATA
    try:
        load_dataset(f"{DEMO_DATA}:test[:1]")
    except DataError as exc:
        if progress:
            tqdm.write(f"demo: {exc}; using {DEMO_FALLBACK} instead")
        name = DEMO_FALLBACK
    return build_report(name, out, Budget.quick(), force=True, progress=progress)
