"""Verbs of the lossless codec: compress, decompress.

They follow xz and zstd: `-o OUT`, `-c` for stdout, `-f` to overwrite, `-` for
stdin/stdout, levels `-1`..`-9`. Like zstd (and unlike xz), the input is kept unless
`--rm` is given; `-k` is accepted for fingers trained on xz. Output files are written
atomically, so a failure never leaves a partial file behind.
"""

from __future__ import annotations

import argparse
import contextlib
import lzma
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterator

from ..errors import LatentzipError, printable
from ..fsio import atomic_writer, open_input

if TYPE_CHECKING:
    from ..lossless import Compressor

SUFFIX = ".lzc"
_PROGRESS_MIN = 1 << 20  # inputs smaller than this finish before a bar would help
_VALUE_OPTIONS = ("--block-size", "--level", "-T", "--threads", "--memory")  # options that take a number
_NEGATIVE = re.compile(r"-\d+")


def attach_values(argv: list[str]) -> list[str]:
    """`--block-size -5` as `--block-size=-5`. With the level flags -1..-9 defined,
    argparse reads any negative number as an option, so a negative value would be taken
    for a level flag instead of being refused as a value."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in _VALUE_OPTIONS and _NEGATIVE.fullmatch(arg):
            out[-1] += f"={arg}"
        else:
            out.append(arg)
    return out


def _whole(least: int, noun: str, floor: str) -> Callable[[str], int]:
    """A parser of whole numbers of `noun` from `least` on; `floor` names that bound."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number{noun}: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be {floor}, not {value}")
        return value

    return parse


_block_size = _whole(1, " of bytes", "at least 1 byte")  # the level sets the most
_threads = _whole(0, "", "0 (one per core) or more")


_SIZE = re.compile(r"(\d+)\s*([KMG]i?B?|%)?", re.IGNORECASE)


def _memory(text: str) -> int:
    """A --memory value: bytes, with K, M or G (powers of 1024), or a percentage of RAM."""
    from ..lossless.parallel import total_memory

    found = _SIZE.fullmatch(text.strip())
    if not found or int(found[1]) == 0:
        raise argparse.ArgumentTypeError(f"not a memory size such as 512M, 4G or 50%: {text!r}")
    value, unit = int(found[1]), (found[2] or "").upper()[:1]
    if unit == "%":
        if not total_memory():
            raise argparse.ArgumentTypeError("this system does not tell its memory size: give bytes, not %")
        return total_memory() * min(value, 100) // 100
    return value << {"": 0, "K": 10, "M": 20, "G": 30}[unit]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the compress and decompress sub-commands."""
    from ..lossless import DEFAULT_LEVEL, LEVELS

    p = sub.add_parser("compress", help="compress any file losslessly (neural context mixing)",
                       description="Compress a file losslessly. Writes IN.lzc and keeps IN (like zstd).")
    _common(p)
    for level in sorted(LEVELS):
        p.add_argument(f"-{level}", dest="level", action="store_const", const=level,
                       help=argparse.SUPPRESS if level not in (1, DEFAULT_LEVEL, 9) else
                       {1: "fastest (levels 1-3: a small model, over 10x the speed of the default)", DEFAULT_LEVEL: "default",
                        9: "64 MiB window for repeats (more memory)"}[level])
    p.add_argument("--level", type=int, choices=sorted(LEVELS), dest="level", help="level as a number")
    p.add_argument("--block-size", type=_block_size, default=None, metavar="BYTES",
                   help="bytes per independently checked block (default 1 MiB, or less to cut a file of several "
                        "segments evenly); the model carries over the blocks of a segment (4 MiB, or the file's "
                        "length shared evenly)")
    p.add_argument("--primer", action=argparse.BooleanOptionalAction, default=None,
                   help="first learn the built-in primer text, levels 6-9 (default: for inputs of 64 KiB and more); "
                        "costs a few seconds at both ends, pays most on text")
    p.add_argument("--stats", action="store_true",
                   help="print bits per byte, ratio, speed and what xz -9e gives on the same input")
    p.set_defaults(func=_compress, level=DEFAULT_LEVEL)

    p = sub.add_parser("decompress", help="restore a file made by `latentzip compress`",
                       description="Restore a .lzc file. Writes IN without .lzc and keeps IN.")
    _common(p)
    p.set_defaults(func=_decompress)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="input file, or - for stdin")
    p.add_argument("-o", "--output", metavar="OUT", help="output file, or - for stdout")
    p.add_argument("-c", "--stdout", action="store_true", help="write to stdout")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("-k", "--keep", action="store_true", help="keep the input file (the default)")
    p.add_argument("--rm", action="store_true", help="remove the input file after success")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar on stderr (default: when stderr is a terminal)")
    p.add_argument("-T", "--threads", type=_threads, default=0, metavar="N",
                   help="code segments of up to 4 MiB on N threads (default 0: one per core); the output is the same "
                        "for any N")
    p.add_argument("--memory", type=_memory, default=None, metavar="SIZE",
                   help="use fewer threads if their models would need more than SIZE (512M, 4G, 50%%; "
                        "default: a quarter of RAM)")


def _output_path(args: argparse.Namespace, compressing: bool) -> str:
    if args.stdout or args.output == "-":
        return "-"
    if args.output:
        return args.output
    if args.input == "-":
        return "-"
    if compressing:
        return args.input + SUFFIX
    if not args.input.endswith(SUFFIX):
        raise LatentzipError(f"{args.input}: unknown suffix (expected {SUFFIX}); name the output with -o")
    return args.input[: -len(SUFFIX)]


@contextlib.contextmanager
def _open_output(path: str, force: bool, source: str) -> Iterator[BinaryIO]:
    """The output stream. An existing output is refused here, before any work, and again
    race-free when the finished file takes its name (see fsio.place)."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if source != "-" and target.exists() and os.path.samefile(target, source):
        raise LatentzipError(f"{printable(path)}: output would overwrite the input")
    if target.exists() and not force:
        raise LatentzipError(f"{printable(path)} already exists (use -f to overwrite)")
    try:
        with atomic_writer(target, overwrite=force) as handle:
            yield handle
    except OSError as exc:
        raise LatentzipError(f"cannot write {printable(path)}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _progress(args: argparse.Namespace, total: int | None, what: str) -> Iterator[Callable[[int], None] | None]:
    wanted = args.progress if args.progress is not None else (sys.stderr.isatty() and (total or 0) >= _PROGRESS_MIN)
    if not wanted:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, desc=what, file=sys.stderr, leave=False) as bar:
        yield bar.update


class _Counting:
    """A pass-through reader that counts bytes and, if asked, feeds them to xz for --stats."""

    def __init__(self, raw: BinaryIO, compare: bool) -> None:
        self.raw = raw
        self.size = 0
        self.xz = lzma.LZMACompressor(preset=9 | lzma.PRESET_EXTREME) if compare else None
        self.xz_size = 0

    def read(self, n: int) -> bytes:
        chunk = self.raw.read(n)
        self.size += len(chunk)
        if self.xz is not None and chunk:
            self.xz_size += len(self.xz.compress(chunk))
        return chunk

    def xz_total(self) -> int:
        assert self.xz is not None
        return self.xz_size + len(self.xz.flush())


class _CountingWriter:
    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return self.raw.write(data)


def _compress(args: argparse.Namespace) -> int:
    from ..lossless import LEVELS, compress_stream

    limit = (1 << LEVELS[args.level].history_bits) // 2
    if args.block_size is not None and not 0 < args.block_size <= limit:
        raise LatentzipError(f"--block-size must be between 1 and {limit} at level {args.level}")
    out_path = _output_path(args, compressing=True)
    if out_path == "-" and sys.stdout.isatty():
        raise LatentzipError("refusing to write compressed data to a terminal; use -o FILE or redirect")
    started = time.perf_counter()
    with open_input(args.input) as (src, size), _progress(args, size, "compress") as progress:
        reader = _Counting(src, args.stats)
        with _open_output(out_path, args.force, args.input) as raw:
            writer = _CountingWriter(raw)
            result = compress_stream(reader, writer, args.level, progress, args.block_size,  # type: ignore[arg-type]
                                     args.primer, args.threads, args.memory, size)
    seconds = time.perf_counter() - started
    if result.stored_blocks:
        print(f"latentzip: {result.stored_blocks} of {result.blocks} block(s) did not compress and were stored as is",
              file=sys.stderr)
    if args.stats:
        _print_stats(reader, writer.size, seconds, result)
    _remove_input(args)
    return 0


def _print_stats(reader: _Counting, out_size: int, seconds: float, result: Compressor) -> None:
    n = reader.size
    xz = reader.xz_total()
    bpb = 8 * out_size / n if n else 0.0
    xz_bpb = 8 * xz / n if n else 0.0
    lines = [
        f"level      {result.level}" + (" (primed)" if result.primed else ""),
        f"threads    {result.threads}",
        f"input      {n} bytes",
        f"output     {out_size} bytes",
        f"bpb        {bpb:.3f}  (xz -9e: {xz_bpb:.3f}, {out_size / xz:.2f}x its size)" if xz else f"bpb {bpb:.3f}",
        f"ratio      {n / out_size:.2f}",
        f"speed      {n / 1e3 / seconds:.2f} KB/s",
    ]
    print("\n".join(lines), file=sys.stderr)


def _decompress(args: argparse.Namespace) -> int:
    from ..lossless import decompress_stream

    out_path = _output_path(args, compressing=False)
    with open_input(args.input) as (src, size), _progress(args, None, "decompress") as progress:
        with _open_output(out_path, args.force, args.input) as dst:
            decompress_stream(src, dst, progress, args.threads, args.memory)
    _remove_input(args)
    return 0


def _remove_input(args: argparse.Namespace) -> None:
    if args.rm and args.input != "-":
        try:
            os.unlink(args.input)
        except OSError as exc:
            raise LatentzipError(f"cannot remove {args.input}: {exc.strerror or exc}") from None
