"""Dimensionality reduction: the integer latents a codec stores are a compact description
of each image, ready for clustering, retrieval or a classifier downstream."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import LatentzipError
from ..fsio import write_bytes
from ..image.codec import ImageCodec, ImagesLike
from .progress import chunks

FORMATS = (".npy", ".csv", ".parquet")


def embed(codec: ImageCodec, images: ImagesLike, progress: bool = False) -> np.ndarray:
    """Codes (N, D) as float32: each image's latents flattened, D = the code size of a
    dense model, or latent channels x grid cells of a convolutional one."""
    latents: list[np.ndarray] = []
    for chunk in chunks(images, "embed", progress):
        latents.extend(codec.latents(chunk))
    if len({lat.shape for lat in latents}) > 1:
        raise LatentzipError("embedding needs images of one size, so that every code has the same length")
    return np.stack([lat.ravel() for lat in latents]).astype(np.float32)


def codes_format(path: str | os.PathLike[str]) -> str:
    """The file format `path` asks for, by suffix; checked before any work is done."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise LatentzipError(f"cannot tell the format of {path}: name it {', '.join('*' + f for f in FORMATS)}")
    if suffix == ".parquet":
        _pyarrow()
    return suffix


def write_codes(path: str | os.PathLike[str], codes: np.ndarray, names: Sequence[str] | None = None,
                overwrite: bool = True) -> None:
    """Write codes atomically as .npy (the array alone), .csv or .parquet (a `name`
    column when names are given, then z0, z1, ...); without `overwrite`, an existing
    file is an error."""
    codes = np.asarray(codes, dtype=np.float32)
    if codes.ndim != 2:
        raise LatentzipError(f"codes must be a 2-d array (images, dimensions), got shape {codes.shape}")
    if names is not None and len(names) != len(codes):
        raise LatentzipError(f"got {len(names)} names for {len(codes)} codes")
    writer = {".npy": _npy, ".csv": _csv, ".parquet": _parquet}[codes_format(path)]
    write_bytes(path, writer(codes, names), overwrite)


def _columns(codes: np.ndarray) -> list[str]:
    return [f"z{i}" for i in range(codes.shape[1])]


def _npy(codes: np.ndarray, names: Sequence[str] | None) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, codes, allow_pickle=False)
    return buffer.getvalue()


def _csv(codes: np.ndarray, names: Sequence[str] | None) -> bytes:
    text = io.StringIO()
    out = csv.writer(text, lineterminator="\n")
    out.writerow((["name"] if names is not None else []) + _columns(codes))
    for i, row in enumerate(codes):
        values = [f"{v:.9g}" for v in row]  # 9 significant digits give back every float32
        out.writerow(([names[i]] if names is not None else []) + values)
    return text.getvalue().encode()


def _parquet(codes: np.ndarray, names: Sequence[str] | None) -> bytes:
    pa, pq = _pyarrow()
    columns = {"name": pa.array(list(names), pa.string())} if names is not None else {}
    columns.update({column: pa.array(codes[:, i]) for i, column in enumerate(_columns(codes))})
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue().to_pybytes()


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise LatentzipError("writing .parquet needs pyarrow: pip install 'latentzip[parquet]'") from None
    return pyarrow, pyarrow.parquet
