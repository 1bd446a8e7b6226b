"""Atomic file output: a reader never sees a half-written file, and a failure leaves none."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import LatentzipError


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; rename it over `path` only if the block succeeds."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=directory)
    except OSError as exc:
        raise LatentzipError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically, or to stdout when `path` is '-'."""
    if str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        with atomic_writer(path) as handle:
            handle.write(data)
    except OSError as exc:
        raise LatentzipError(f"cannot write {path}: {exc.strerror or exc}") from None


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a whole file, or stdin when `path` is '-', with a one-line error if it fails."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise LatentzipError(f"{path} is a directory, not a file") from None
    except FileNotFoundError:
        raise LatentzipError(f"{path}: no such file") from None
    except OSError as exc:
        raise LatentzipError(f"cannot read {path}: {exc.strerror or exc}") from None
