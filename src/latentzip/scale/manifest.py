"""The Parquet manifest of a bulk job: one row per input, in input order.

Columns: `name` (the input's path under SRC), `shard` and `index` (where it is stored),
`bytes` (what it costs in its shard: the exact coded bits over 8 for images, the
compressed file's size for lossless), `checksum` (SHA-256 of the input file), and
`psnr` (dB, when asked; lossy only) or `source_bytes` (lossless).
"""

from __future__ import annotations

import io
from typing import Any

from ..errors import FormatError, LatentzipError
from .store import Store

NAME = "manifest.parquet"


def _arrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise LatentzipError("bulk manifests are Parquet: pip install 'latentzip[dask]'") from None
    return pyarrow


def _schema(kind: str) -> Any:
    pa = _arrow()
    last = ("psnr", pa.float64()) if kind == "images" else ("source_bytes", pa.int64())
    return pa.schema([("name", pa.string()), ("shard", pa.int32()), ("index", pa.int32()),
                      ("bytes", pa.float64()), ("checksum", pa.string()), last],
                     metadata={"latentzip.kind": kind})


def write(store: Store, kind: str, rows: list[dict[str, Any]]) -> None:
    pa = _arrow()
    table = pa.Table.from_pylist(rows, schema=_schema(kind))
    buffer = io.BytesIO()
    pa.parquet.write_table(table, buffer)
    store.write(NAME, buffer.getvalue())


def read(store: Store) -> tuple[str, list[dict[str, Any]]]:
    """(kind, rows) of the manifest under `store`."""
    pa = _arrow()
    if not store.exists(NAME):
        raise FormatError(f"{store.url} holds no {NAME}: not the output of latentzip bulk")
    try:
        table = pa.parquet.read_table(io.BytesIO(store.read(NAME)))
        kind = (table.schema.metadata or {}).get(b"latentzip.kind", b"").decode()
        if kind not in ("images", "files") or not table.schema.equals(_schema(kind), check_metadata=False):
            raise ValueError("unexpected columns")
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise FormatError(f"{store.url}/{NAME} is not a latentzip manifest ({exc})") from None
    return kind, table.to_pylist()
