"""Where bulk jobs read and write: a local path or any fsspec URL (s3://, gs://, ...,
with the user's filesystem package installed).

Every write is atomic. Locally that is latentzip's own race-free writer; elsewhere a
file goes up under a temporary name and is moved into place (an object store's single
PUT is atomic anyway), so a killed worker never leaves a half-written shard under a
real name.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import secrets
from typing import IO, Callable, Iterable, TypeVar

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

from .. import fsio
from ..errors import DataError, LatentzipError, printable

T = TypeVar("T")

# What an interrupted local write leaves: fsio's temporary files and staging directories.
_LEFTOVER = re.compile(r"^\..+\.part$")


class Store:
    """One root (a directory or a bucket prefix) and the relative names under it."""

    def __init__(self, url: str | os.PathLike[str]) -> None:
        self.url = os.fspath(url)
        try:
            self.fs, self.root = url_to_fs(self.url)
        except (ImportError, ValueError) as exc:  # an unknown protocol, or its package missing
            raise LatentzipError(f"cannot open {printable(self.url)}: {exc}") from None
        self.root = self.root.rstrip("/") or "/"
        self.local = isinstance(self.fs, LocalFileSystem)

    def __reduce__(self) -> tuple[type, tuple[str]]:  # sent to workers by its URL alone
        return Store, (self.url,)

    def path(self, name: str) -> str:
        return posixpath.join(self.root, name)

    def files(self, extensions: set[str] | None = None) -> list[str]:
        """Names of the files under the root (recursively, hidden ones skipped), sorted;
        only those with one of `extensions` when given. A root that is a file is itself."""
        try:
            if self.fs.isfile(self.root):
                return [posixpath.basename(self.root)] if _wanted(self.root, extensions) else []
            if not self.fs.isdir(self.root):
                raise DataError(f"{printable(self.url)}: no such file or directory")
            found = self.fs.find(self.root)
        except OSError as exc:
            raise DataError(f"cannot list {printable(self.url)}: {exc}") from None
        names = (posixpath.relpath(_plain(self.fs, p), _plain(self.fs, self.root)) for p in found)
        return sorted(n for n in names if _wanted(n, extensions) and not any(p.startswith(".") for p in n.split("/")))

    @functools.cached_property
    def _single_file(self) -> bool:
        """Whether the root is one file (asked once: on an object store each question is a request)."""
        return bool(self.fs.isfile(self.root))

    def read(self, name: str) -> bytes:
        return self._reading(name, self.fs.cat_file)

    def open(self, name: str) -> IO[bytes]:
        """A file to read in small blocks (a header's worth is one request on an object store)."""
        return self._reading(name, lambda where: self.fs.open(where, "rb", block_size=1 << 16))

    def _reading(self, name: str, how: Callable[[str], T]) -> T:
        """`how` applied to where `name` is (the root itself if it is one file), its
        OSError made a one-line DataError."""
        where = self.root if self._single_file else self.path(name)
        try:
            return how(where)
        except OSError as exc:
            raise DataError(f"cannot read {printable(where)}: {exc}") from None

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self.path(name)))

    def make_root(self, force: bool, resumable: str | None = None) -> None:
        """Make the root a directory to write into. One that holds anything already is
        refused (its files could be overwritten) unless `force`, or unless it holds
        `resumable`, the mark an earlier run of the same job left there."""
        try:
            if self.fs.isfile(self.root):
                raise LatentzipError(f"{printable(self.url)} is a file, not a directory")
            if self.fs.isdir(self.root) and self.fs.ls(self.root) and not force and not (
                    resumable is not None and self.exists(resumable)):
                raise LatentzipError(f"{printable(self.url)} is not empty (use -f to write into it)")
            self.fs.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise LatentzipError(f"cannot write to {printable(self.url)}: {exc}") from None

    def write(self, name: str, data: bytes) -> None:
        """Put `data` at `name`, replacing what was there, in one step."""
        target = self.path(name)
        if self.local:
            os.makedirs(posixpath.dirname(target), exist_ok=True)
            fsio.write_bytes(target, data, overwrite=True)
            return
        temporary = f"{target}.{secrets.token_hex(4)}.part"
        try:
            self.fs.pipe_file(temporary, data)
            self.fs.mv(temporary, target)
        except OSError as exc:
            raise LatentzipError(f"cannot write {printable(target)}: {exc}") from None

    def write_tree(self, files: Iterable[tuple[str, bytes]]) -> None:
        """Write several files under the root: all of them or none where the root is local."""
        if self.local:
            fsio.write_tree(self.root, files, overwrite=True)
            return
        for name, data in files:
            self.write(name, data)

    def sweep(self, directory: str = "") -> None:
        """Remove what interrupted local writes left in `directory` (temporary files and
        staging directories, all hidden and ending in .part): a worker killed mid-write
        cannot clean up after itself."""
        if not self.local:
            return
        where = self.path(directory)
        try:
            entries = os.listdir(where)
        except OSError:
            return
        for entry in entries:
            if _LEFTOVER.match(entry):
                fsio.remove(os.path.join(where, entry))


def _wanted(name: str, extensions: set[str] | None) -> bool:
    return extensions is None or posixpath.splitext(name)[1].lower() in extensions


def _plain(fs: AbstractFileSystem, path: str) -> str:
    return fs._strip_protocol(path).rstrip("/")
