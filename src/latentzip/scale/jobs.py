"""Bulk jobs: the inputs cut into shards, one Dask task per shard.

Every input is done exactly once. The plan (sorted names, K to a shard, fewer where images
would hold more than SHARD_PIXELS, as their headers say) depends on the inputs alone, so
a task can run twice without harm: it rewrites the same shard in one step. Dask reruns
the tasks of a worker that died and retries a task that failed; the manifest is made
from the plan, one row per input. A shard is finished when its record (written after
the shard, under `.done/`) matches the plan and the job's settings, so a re-run skips
finished shards: a stopped job resumes where it was.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from tqdm.auto import tqdm

from .. import data, metrics
from ..errors import DataError, FormatError, LatentzipError
from . import cluster
from .store import Store

SHARD_SIZE = 1000
# Pixels of one image shard, at most: a worker holds a shard's images decoded (3 bytes a
# pixel for colour), and a file's latents are bounded (2^30: 358 megapixels at 3 latents
# a pixel, as the photo models have; 4 for a model with alpha).
SHARD_PIXELS = 1 << 26
HEADERS_PER_TASK = 1000
RETRIES = 2  # per task, for failures that are not a worker's death (Dask reruns those)
DONE = ".done"

Row = dict[str, Any]


@dataclass(frozen=True)
class Shard:
    number: int
    names: tuple[str, ...]

    @property
    def file(self) -> str:
        return f"shard-{self.number:06d}.ltz"

    @property
    def record(self) -> str:
        return f"{DONE}/{self.number:06d}.json"


@dataclass
class Job:
    """What a bulk job did: one row per input (see manifest.py) and its counts."""

    rows: list[Row]
    shards: int
    skipped: int  # shards found finished by an earlier run
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


def plan(names: list[str], size: int, pixels: list[int] | None = None) -> list[Shard]:
    """Shards of at most `size` names, in order; with `pixels` (each image's), also of at
    most SHARD_PIXELS pixels, an image larger than that in a shard of its own."""
    if size < 1:
        raise DataError("the shard size must be at least 1")
    shards: list[Shard] = []
    start, held = 0, 0
    for k in range(len(names) + 1):
        more = 0 if pixels is None or k == len(names) else pixels[k]
        if k > start and (k == len(names) or k - start == size or held + more > SHARD_PIXELS):
            shards.append(Shard(len(shards), tuple(names[start:k])))
            start, held = k, 0
        held += more
    return shards


def image_pixels(client: Any, src: Store, names: list[str]) -> list[int]:
    """Each image's pixels from its file's header, read on the workers, HEADERS_PER_TASK names a task."""
    batches = [names[k : k + HEADERS_PER_TASK] for k in range(0, len(names), HEADERS_PER_TASK)]
    pixels: list[int] = []
    for result in client.gather(client.map(_guarded, batches, task=_headers, src=src, retries=RETRIES, pure=False)):
        if isinstance(result, LatentzipError):
            raise result
        pixels += result
    return pixels


def _headers(names: list[str], src: Store) -> list[int]:
    pixels = []
    for name in names:
        with src.open(name) as file:
            height, width = data.header_size(file, f"{src.url}/{name}")
        pixels.append(height * width)
    return pixels


def run(client: Any, task: Callable[..., list[Row]], shards: list[Shard], done: Store | None,
        settings: dict[str, Any], progress: bool, **shared: Any) -> tuple[list[Row], int]:
    """Run `task(shard, **shared)` for each shard not finished under `done`; return every
    shard's rows in plan order and how many were skipped."""
    rows: dict[int, list[Row]] = {}
    if done is not None:
        for shard in shards:
            found = _finished(done, shard, settings)
            if found is not None:
                rows[shard.number] = found
    todo = [s for s in shards if s.number not in rows]
    # Bytes (a model) go to the workers once per run, under a key of this run's own. Passed
    # inline, Dask names them by their content, so a second run with the same model could
    # name the key the first run's release was dropping: "lost dependencies", seen under load.
    shared = {k: client.scatter(v, hash=False, broadcast=True) if isinstance(v, bytes) else v
              for k, v in shared.items()}
    futures = client.map(_guarded, todo, task=task, retries=RETRIES, pure=False, **shared)
    position = {future.key: k for k, future in enumerate(futures)}
    with tqdm(total=len(todo), unit="shard", disable=None if progress else True, leave=False) as bar:
        for future in cluster.as_completed(futures):
            shard, result = todo[position[future.key]], future.result()
            if isinstance(result, LatentzipError):
                raise result
            if done is not None:  # the shard is in place: now it counts as finished
                done.write(shard.record, json.dumps({"settings": settings, "names": shard.names, "rows": result}).encode())
            rows[shard.number] = result
            bar.update()
    return [row for shard in shards for row in rows[shard.number]], len(shards) - len(todo)


def _guarded(work: Any, task: Callable[..., Any], **shared: Any) -> Any:
    """The task's result (rows), or the error it met in the user's files or models,
    returned, not raised: Dask retries what raises, and retrying cannot mend a corrupt image."""
    try:
        return task(work, **shared)
    except LatentzipError as exc:
        return exc


def _finished(done: Store, shard: Shard, settings: dict[str, Any]) -> list[Row] | None:
    if not done.exists(shard.record):
        return None
    try:
        record = json.loads(done.read(shard.record))
        if record["settings"] == settings and tuple(record["names"]) == shard.names:
            return list(record["rows"])
    except (ValueError, KeyError, TypeError, DataError):
        pass
    return None


# --- tasks (these run on the workers) -----------------------------------------------


@functools.lru_cache(maxsize=4)
def _codec(model: bytes) -> Any:
    """The codec of a model file's bytes, built once per worker process. One thread per
    task: the worker's own threads (or processes) are the parallelism."""
    import torch

    from ..image.codec import ImageCodec

    torch.set_num_threads(1)
    return ImageCodec.from_bytes(model)


def _checksum(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def code_shard(shard: Shard, src: Store, model: bytes, quality: int, max_error: int | None, effort: int,
               psnr: bool) -> tuple[bytes, list[Row]]:
    """The shard's file and its rows."""
    codec = _codec(model)
    raws = [src.read(name) for name in shard.names]
    images = [data.decode_image(raw, f"{src.url}/{name}") for name, raw in zip(shard.names, raws)]
    blob, bits = codec.encode_with_bits(images, list(shard.names), max_error=max_error, quality=quality, effort=effort)
    decoded = codec.decode(blob) if psnr else []
    return blob, [{"name": name, "shard": shard.number, "index": k, "bytes": float(bits[k]) / 8,
                   "checksum": _checksum(raw), "psnr": _psnr(image, decoded[k]) if psnr else None,
                   "pixels": image.shape[0] * image.shape[1]}
                  for k, (name, raw, image) in enumerate(zip(shard.names, raws, images))]


def _psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    return min(metrics.psnr(original.reshape(decoded.shape), decoded), metrics.PSNR_CAP)


def encode_shard(shard: Shard, src: Store, dst: Store, **coding: Any) -> list[Row]:
    blob, rows = code_shard(shard, src, **coding)
    dst.write(shard.file, blob)
    return rows


def eval_shard(shard: Shard, src: Store, **coding: Any) -> list[Row]:
    """The rows, each with the size of the shard file that would hold it."""
    blob, rows = code_shard(shard, src, **coding)
    return [{**row, "file_bytes": len(blob)} for row in rows]


def decode_shard(shard: Shard, src: Store, out: Store, model: bytes, renamed: dict[str, str]) -> list[Row]:
    """Write a shard's images as PNG files, each under its name with .png for its suffix
    or, where `renamed` says, under another (see `data.png_names`)."""
    codec = _codec(model)
    blob = src.read(shard.file)
    named = codec.decode_named(blob)
    if [name for name, _ in named] != list(shard.names):
        raise FormatError(f"{src.url}/{shard.file} does not hold the images its manifest lists")
    out.write_tree((renamed.get(name) or data.png_name(name), data.to_png_bytes(image)) for name, image in named)
    return [{"name": name} for name, _ in named]


def compress_shard(shard: Shard, src: Store, dst: Store, level: int) -> list[Row]:
    from ..lossless import compress

    rows = []
    for k, name in enumerate(shard.names):
        raw = src.read(name)
        blob = compress(raw, level=level)
        dst.write(f"{name}.lzc", blob)
        rows.append({"name": name, "shard": shard.number, "index": k, "bytes": float(len(blob)),
                     "checksum": _checksum(raw), "source_bytes": len(raw)})
    return rows
