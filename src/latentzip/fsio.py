"""Atomic file output: a reader never sees a half-written file, and a failure leaves none."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import LatentzipError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
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


def write_tree(directory: str | os.PathLike[str], files: dict[str, bytes], overwrite: bool = False) -> None:
    """Write every file of `files` (relative name -> bytes) under `directory`, or none.

    Everything is written to a temporary directory first; only when all of it is on
    disk do the files move into place, so a failure leaves no partial output."""
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise LatentzipError(f"{target} exists and is not a directory")
    if target.exists() and not overwrite:
        clash = next((name for name in files if (target / name).exists()), None)
        if clash is not None:
            raise LatentzipError(f"{target / clash} already exists (use -f to overwrite)")
    staging_parent = target if target.exists() else (target.parent if str(target.parent) else Path("."))
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=staging_parent))
    except OSError as exc:
        raise LatentzipError(f"cannot write to {target}: {exc.strerror or exc}") from None
    try:
        for name, data in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)  # a plain new file: umask applies
        if not target.exists():
            os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700
            os.replace(staging, target)
            return
        for name in files:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, target / name)
    except OSError as exc:
        raise LatentzipError(f"cannot write to {target}: {exc.strerror or exc}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
