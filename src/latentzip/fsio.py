"""File input and output that a failure, a signal or another process cannot turn into
damage.

- Output is atomic: a reader never sees a half-written file, and a failure (or a signal
  that the CLI turns into an exception) leaves no temporary file behind.
- No-clobber is race-free: a finished temporary file is hard-linked to its name, which
  fails if the name exists, instead of checking first and renaming after.
- A tree of files (`write_tree`) is staged whole before anything is moved into place;
  moving never follows a symbolic link that is already under the output directory, and a
  failure while moving puts back what was replaced.
- Inputs are opened without blocking and must be regular files (or '-' for stdin), so
  a FIFO with no writer, a device or a directory is refused instead of hanging or
  reading forever.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import platformdirs

from .errors import LatentzipError, LimitError, printable

_NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP)  # link(2) on a file system without hard links
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def cache_dir() -> Path:
    """Where latentzip keeps downloads, parsed arrays and compiled kernels; $LATENTZIP_CACHE overrides it."""
    return Path(os.environ.get("LATENTZIP_CACHE") or platformdirs.user_cache_dir("latentzip"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def place(src: str, dst: str, overwrite: bool, src_dir: int | None = None, dst_dir: int | None = None) -> None:
    """Move the finished file `src` to `dst` in one step. Without `overwrite`, raise
    FileExistsError if `dst` exists, leaving it alone even if it appears meanwhile."""
    if overwrite:
        os.replace(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir)
        return
    try:
        os.link(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        # No hard links here (FAT, some network file systems): claim the name exclusively,
        # then move onto the claim, which is ours.
        os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dst_dir))
        try:
            os.replace(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir)
        except BaseException:
            os.unlink(dst, dir_fd=dst_dir)
            raise
    else:
        os.unlink(src, dir_fd=src_dir)


def _exists(path: str | os.PathLike[str]) -> LatentzipError:
    return LatentzipError(f"{printable(os.fspath(path))} already exists (use -f to overwrite)")


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], overwrite: bool = True) -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; put it in place of `path` only if the block
    succeeds. Without `overwrite`, an existing `path` is an error and stays as it was."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=directory)
    except OSError as exc:
        raise LatentzipError(f"cannot write {printable(str(target))}: {_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        place(tmp, str(target), overwrite)
    except FileExistsError:
        raise _exists(target) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike[str], data: bytes, overwrite: bool = True) -> None:
    """Write `data` to `path` atomically, or to stdout when `path` is '-'."""
    if str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        with atomic_writer(path, overwrite) as handle:
            handle.write(data)
    except OSError as exc:
        raise LatentzipError(f"cannot write {printable(str(path))}: {_reason(exc)}") from None


def remove(path: str | os.PathLike[str]) -> None:
    """Delete a file, or a directory and all in it, never following a link; what cannot
    be removed stays."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


@contextlib.contextmanager
def open_input(path: str | os.PathLike[str]) -> Iterator[tuple[BinaryIO, int | None]]:
    """The input stream (stdin for '-') and its size when known. Anything but a regular
    file is refused: opening does not block, so a FIFO with no writer cannot hang us."""
    if str(path) == "-":
        yield sys.stdin.buffer, None
        return
    shown = printable(os.fspath(path))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise LatentzipError(f"{shown}: no such file") from None
    except OSError as exc:
        raise LatentzipError(f"cannot read {shown}: {_reason(exc)}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # checked before fdopen, which refuses a directory with its own error
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise LatentzipError(f"{shown} is a directory, not a file")
        raise LatentzipError(f"{shown} is not a regular file (a pipe or device: pass it on stdin as -)")
    with os.fdopen(fd, "rb") as handle:
        os.set_blocking(fd, True)
        yield handle, info.st_size


def read_bytes(path: str | os.PathLike[str], limit: int) -> bytes:
    """Read a whole file, or stdin when `path` is '-', refusing more than `limit` bytes
    before reading them."""
    with open_input(path) as (handle, size):
        if size is not None and size > limit:
            raise LimitError(f"{printable(os.fspath(path))} has {size} bytes; latentzip reads at most {limit} here")
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise LatentzipError(f"cannot read {printable(os.fspath(path))}: {_reason(exc)}") from None
    if len(data) > limit:
        raise LimitError(f"{printable(os.fspath(path))} has more than {limit} bytes; latentzip reads at most that here")
    return data


# --- trees of files ----------------------------------------------------------------------


def _parts(name: str) -> list[str]:
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") or "\0" in part for part in parts):
        raise LatentzipError(f"refusing to write {printable(name, 80)}: not a plain relative path")
    return parts


def _check_layout(names: list[str]) -> None:
    """Refuse unsafe names, and a name that another needs as a directory."""
    split = [_parts(name) for name in names]
    directories = {"/".join(parts[:k]) for parts in split for k in range(1, len(parts))}
    clash = next((name for name in names if name in directories), None)
    if clash is not None:
        raise LatentzipError(f"{printable(clash, 80)} would be both a file and a directory")


class _Blocked(Exception):
    """A path on the way to a file is a symbolic link or not a directory."""

    def __init__(self, where: str, kind: str) -> None:
        super().__init__(where, kind)
        self.where, self.kind = where, kind

    def error(self, shown: str) -> LatentzipError:
        return LatentzipError(f"{printable(os.path.join(shown, self.where), 200)} is {self.kind}; latentzip "
                              "writes only into directories it can reach without following links")


def _subdir(parent: int, part: str, where: str, created: list[str] | None) -> int | None:
    """A descriptor of directory `part` of `parent` (`where`, relative to the root of a
    walk), never through a link. If it is absent: None, or with `created` given, a new
    directory, whose path is added to `created`."""
    try:
        return os.open(part, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if created is None:
            return None
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        kind = "a symbolic link" if stat.S_ISLNK(os.lstat(part, dir_fd=parent).st_mode) else "not a directory"
        raise _Blocked(where, kind) from None
    try:
        os.mkdir(part, 0o777, dir_fd=parent)
        created.append(where)
    except FileExistsError:  # made meanwhile by someone else: opened as any other
        pass
    return os.open(part, _DIR_FLAGS, dir_fd=parent)


def _walk(root: int, parts: list[str], created: list[str] | None = None) -> int | None:
    """A descriptor of the directory `parts` below `root`, or None if it is absent; with
    `created`, missing directories are made and their relative paths added to it."""
    fd: int | None = os.dup(root)
    for k, part in enumerate(parts):
        assert fd is not None
        try:
            fd_next = _subdir(fd, part, "/".join(parts[: k + 1]), created)
        finally:
            os.close(fd)
        fd = fd_next
        if fd is None:
            return None
    return fd


def _stage(root: int, files: Iterable[tuple[str, bytes]], shown: str) -> list[str]:
    """Write `files` under `root`, a fresh directory of ours: every file is new. Returns
    their names."""
    names: list[str] = []
    seen: set[str] = set()
    for name, data in files:
        if name in seen:
            raise LatentzipError(f"two files would both be written as {printable(os.path.join(shown, name), 200)}")
        seen.add(name)
        names.append(name)
        *parents, leaf = _parts(name)
        try:
            fd = _walk(root, parents, [])
            assert fd is not None
            try:
                out = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=fd)
                with os.fdopen(out, "wb") as handle:
                    handle.write(data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise LatentzipError(f"cannot write {printable(os.path.join(shown, name), 200)}: {_reason(exc)}") from None
    return names


def _make_staging(parent: int, prefix: str) -> str:
    while True:
        name = f".{prefix}.{secrets.token_hex(4)}.part"
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
            return name
        except FileExistsError:
            continue


def write_tree(directory: str | os.PathLike[str], files: Iterable[tuple[str, bytes]], overwrite: bool = False) -> None:
    """Write every file of `files` ((relative name, bytes) pairs, which may be made as
    they are asked for) under `directory`, or none.

    Everything is written to a staging directory first, one file at a time; only when
    all of it is on disk do the files move into place (a new `directory` appears in one
    rename). Nothing is written through a symbolic link found under an existing
    `directory`, and an error or a signal while files move into place puts back every
    file already replaced."""
    target = Path(directory)
    shown = printable(str(target), 200)
    if os.path.lexists(target) and not target.is_dir():
        raise LatentzipError(f"{shown} exists and is not a directory")
    fresh = not target.is_dir()
    base = (target.parent if str(target.parent) else Path(".")) if fresh else target
    try:
        root = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise LatentzipError(f"cannot write to {shown}: {_reason(exc)}") from None
    staging: str | None = None
    try:
        staging = _make_staging(root, target.name or "out")
        stage = os.open(staging, _DIR_FLAGS, dir_fd=root)
        try:
            os.mkdir("new", 0o777, dir_fd=stage)
            new = os.open("new", _DIR_FLAGS, dir_fd=stage)
            try:
                names = _stage(new, files, shown)
                _check_layout(names)
                if fresh:
                    os.rename(f"{staging}/new", target.name, src_dir_fd=root, dst_dir_fd=root)
                else:
                    _Commit(root, stage, new, shown, overwrite).run(names)
            finally:
                os.close(new)
        finally:
            os.close(stage)
    except OSError as exc:
        raise LatentzipError(f"cannot write to {shown}: {_reason(exc)}") from None
    except _Blocked as exc:
        raise exc.error(shown) from None
    finally:
        if staging is not None:
            shutil.rmtree(os.path.join(base, staging), ignore_errors=True)
        os.close(root)


class _Commit:
    """Moves staged files into an existing directory: all of them, or none."""

    def __init__(self, root: int, stage: int, new: int, shown: str, overwrite: bool) -> None:
        self.root, self.stage, self.new, self.shown, self.overwrite = root, stage, new, shown, overwrite
        self.done: list[tuple[list[str], str | None]] = []  # (parts, name of the replaced file kept)
        self.created: list[str] = []  # directories made under root

    def run(self, files: list[str]) -> None:
        for name in files:
            self._check(_parts(name))
        os.mkdir("old", 0o700, dir_fd=self.stage)
        try:
            for name in files:
                self._move(_parts(name))
        except BaseException:
            self._undo()
            raise

    def _where(self, parts: list[str]) -> str:
        return printable(os.path.join(self.shown, *parts), 200)

    def _check(self, parts: list[str]) -> None:
        """Refuse before anything moves: a link or a file on the way, a directory or
        (without -f) any file in the place of a new one."""
        fd = _walk(self.root, parts[:-1])
        if fd is None:
            return
        try:
            mode = os.lstat(parts[-1], dir_fd=fd).st_mode
        except FileNotFoundError:
            return
        finally:
            os.close(fd)
        if stat.S_ISDIR(mode):
            raise LatentzipError(f"{self._where(parts)} is a directory")
        if not self.overwrite:
            raise _exists(self._where(parts))

    def _move(self, parts: list[str]) -> None:
        src, dst = _walk(self.new, parts[:-1]), _walk(self.root, parts[:-1], self.created)
        assert src is not None and dst is not None
        kept = str(len(self.done)) if self.overwrite else None
        try:
            if kept is not None:
                try:
                    os.rename(parts[-1], f"old/{kept}", src_dir_fd=dst, dst_dir_fd=self.stage)
                except FileNotFoundError:
                    kept = None
            try:
                place(parts[-1], parts[-1], self.overwrite, src, dst)
            except BaseException as exc:
                if kept is not None:
                    os.rename(f"old/{kept}", parts[-1], src_dir_fd=self.stage, dst_dir_fd=dst)
                if isinstance(exc, FileExistsError):
                    raise _exists(self._where(parts)) from None
                if isinstance(exc, OSError):
                    raise LatentzipError(f"cannot write {self._where(parts)}: {_reason(exc)}") from None
                raise
            self.done.append((parts, kept))
        finally:
            os.close(src)
            os.close(dst)

    def _undo(self) -> None:
        """Put back what was replaced and remove what was added, last first."""
        for parts, kept in reversed(self.done):
            with contextlib.suppress(OSError, _Blocked):
                fd = _walk(self.root, parts[:-1])
                assert fd is not None
                try:
                    if kept is None:
                        os.unlink(parts[-1], dir_fd=fd)
                    else:
                        os.rename(f"old/{kept}", parts[-1], src_dir_fd=self.stage, dst_dir_fd=fd)
                finally:
                    os.close(fd)
        for where in reversed(self.created):
            with contextlib.suppress(OSError):
                os.rmdir(where, dir_fd=self.root)
