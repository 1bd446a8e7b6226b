"""Bulk jobs on Dask: encode, decode, evaluate or losslessly compress many files.

    from latentzip.scale import bulk_encode, bulk_decode
    job = bulk_encode("fashion-mnist:q3", "s3://bucket/pngs", "s3://bucket/coded", workers=8)
    bulk_decode("s3://bucket/coded", "restored/", scheduler="tcp://10.0.0.5:8786")

SRC and DST are paths or fsspec URLs. Encoding writes shards of K images, fewer where they
would hold more than 2^26 pixels (`shard-NNNNNN.ltz`, each an ordinary .ltz file), and
`manifest.parquet`; see jobs.py for why every input is done exactly once even when
workers die, and how a re-run resumes.
Each call runs on `client` when given, else joins `scheduler`, else starts a local
cluster of `workers` processes (default: one per core). Needs `pip install 'latentzip[dask]'`.
"""

from __future__ import annotations

import os
import posixpath
import time
from typing import Any

import numpy as np

from .. import data, metrics
from ..errors import DataError, FormatError, ModelError
from . import cluster, jobs, manifest
from .jobs import SHARD_SIZE, Job, Shard
from .store import Store

__all__ = ["bulk_encode", "bulk_decode", "bulk_eval", "bulk_compress", "Job", "SHARD_SIZE"]

Where = str | os.PathLike[str]


def _images(src: Store) -> list[str]:
    names = src.files(data.readable_extensions())
    if not names:
        raise DataError(f"{src.url} holds no image files")
    return names


def _codec(model: Any) -> Any:
    """An ImageCodec as it is, else what `load_model` makes of a name or path."""
    from ..image.codec import ImageCodec
    from ..image.zoo import load_model

    return model if isinstance(model, ImageCodec) else load_model(model)


def _coding(model: Any, quality: int | None, max_error: int | None, effort: int | None) -> tuple[Any, dict[str, Any]]:
    codec = _codec(model)
    return codec, {"quality": codec.quality_for(quality), "max_error": codec.bound_for(max_error),
                   "effort": codec.effort_for(effort)}


def bulk_encode(model: Any, src: Where, dst: Where, shard_size: int = SHARD_SIZE, quality: int | None = None,
                max_error: int | None = None, effort: int | None = None, psnr: bool = False, force: bool = False,
                client: Any = None, workers: int | None = None, scheduler: str | None = None, progress: bool = True) -> Job:
    """Encode every image under `src` into shards under `dst`, with a manifest. `model`
    is an ImageCodec or what `load_model` takes; `psnr` adds each image's PSNR. `dst`
    must be empty, hold an earlier run to resume, or be written into with `force`."""
    started = time.perf_counter()
    source, target = Store(src), Store(dst)
    codec, coding = _coding(model, quality, max_error, effort)
    names = _images(source)
    settings = {"kind": "images", "model": codec.fingerprint.hex(), **coding, "psnr": psnr}
    target.make_root(force, resumable=jobs.DONE)
    with cluster.connect(client, workers, scheduler) as running:
        shards = jobs.plan(names, shard_size, jobs.image_pixels(running, source, names))
        rows, skipped = jobs.run(running, jobs.encode_shard, shards, target, settings, progress,
                                 src=source, dst=target, model=codec.to_bytes(), psnr=psnr, **coding)
    manifest.write(target, "images", rows)
    for directory in ("", jobs.DONE):
        target.sweep(directory)
    return Job(rows, len(shards), skipped, time.perf_counter() - started)


def bulk_decode(src: Where, out: Where, model: Any = None, force: bool = False, client: Any = None,
                workers: int | None = None, scheduler: str | None = None, progress: bool = True) -> Job:
    """Restore the images of a `bulk_encode` output as PNG files under `out`, under their
    names. `model` is needed only when the shards were not made by a shipped model.
    `out` must be empty, or be written into (its files replaced) with `force`."""
    from ..image import zoo
    from ..image.codec import file_fingerprint

    started = time.perf_counter()
    source, target = Store(src), Store(out)
    kind, rows = manifest.read(source)
    if kind != "images":
        raise FormatError(f"{source.url} holds losslessly compressed files, not images")
    shards = _shards(rows)
    if model is None:
        need = file_fingerprint(source.read(shards[0].file)) if shards else b""
        name = zoo.find(need)
        if name is None:
            raise ModelError(f"{source.url} was made with a model that is not shipped ({need.hex()}); pass the model")
        model = name
    codec = _codec(model)
    names = [row["name"] for row in rows]
    # Names that differ only in suffix keep it (data.png_names): a few, usually none, so
    # only those go to the workers.
    renamed = {n: png for n, png in zip(names, data.png_names(names)) if png != data.png_name(n)}
    target.make_root(force)
    with cluster.connect(client, workers, scheduler) as running:
        written, _ = jobs.run(running, jobs.decode_shard, shards, None, {}, progress, src=source, out=target,
                              model=codec.to_bytes(), renamed=renamed)
    target.sweep()
    return Job(written, len(shards), 0, time.perf_counter() - started)


def _shards(rows: list[dict[str, Any]]) -> list[Shard]:
    grouped: dict[int, list[str]] = {}
    for row in rows:
        grouped.setdefault(row["shard"], []).append(row["name"])
    return [Shard(number, tuple(names)) for number, names in sorted(grouped.items())]


def bulk_eval(model: Any, src: Where, shard_size: int = SHARD_SIZE, quality: int | None = None,
              max_error: int | None = None, effort: int | None = None, client: Any = None, workers: int | None = None,
              scheduler: str | None = None, progress: bool = True) -> Job:
    """Code every image under `src` in shards as `bulk_encode` would, writing nothing:
    per-image bytes and PSNR, and a summary (bytes of the shard files, bpp, mean PSNR)."""
    started = time.perf_counter()
    source = Store(src)
    codec, coding = _coding(model, quality, max_error, effort)
    names = _images(source)
    with cluster.connect(client, workers, scheduler) as running:
        shards = jobs.plan(names, shard_size, jobs.image_pixels(running, source, names))
        rows, _ = jobs.run(running, jobs.eval_shard, shards, None, {}, progress, src=source, model=codec.to_bytes(),
                           psnr=True, **coding)
    pixels = sum(row["pixels"] for row in rows)
    file_bytes = sum(row["file_bytes"] for row in rows if row["index"] == 0)  # once per shard
    summary = {"images": len(rows), "pixels": pixels, "file_bytes": file_bytes, "bpp": metrics.bpp(file_bytes, pixels),
               "bytes_per_image": file_bytes / len(rows), "psnr": float(np.mean([row["psnr"] for row in rows]))}
    return Job(rows, len(shards), 0, time.perf_counter() - started, summary)


def bulk_compress(src: Where, dst: Where, level: int | None = None, shard_size: int = SHARD_SIZE,
                  force: bool = False, client: Any = None, workers: int | None = None, scheduler: str | None = None,
                  progress: bool = True) -> Job:
    """Compress every file under `src` losslessly to `dst`/NAME.lzc, `shard_size` files
    to a task, with a manifest; `dst` as for `bulk_encode`."""
    from ..lossless import DEFAULT_LEVEL

    started = time.perf_counter()
    source, target = Store(src), Store(dst)
    names = source.files()
    if not names:
        raise DataError(f"{source.url} holds no files")
    shards = jobs.plan(names, shard_size)
    level = DEFAULT_LEVEL if level is None else level
    settings = {"kind": "files", "level": level}
    target.make_root(force, resumable=jobs.DONE)
    with cluster.connect(client, workers, scheduler) as running:
        rows, skipped = jobs.run(running, jobs.compress_shard, shards, target, settings, progress,
                                 src=source, dst=target, level=level)
    manifest.write(target, "files", rows)
    for directory in {jobs.DONE, *(posixpath.dirname(name) for name in names)}:
        target.sweep(directory)
    return Job(rows, len(shards), skipped, time.perf_counter() - started)
