"""The names and shapes of the images in a file, in a few bytes per file.

Shapes shared by all images are stored once. Names are coded against the previous
name: when they differ only in their numbers ("scan_0041.png" after "scan_0040.png"),
only the differences are kept; otherwise the common prefix is skipped. The result is
deflated, so a file of 1,000 sequentially named images spends well under a byte per
name. A decoder never trusts a name: see `safe_name`.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from ..container import Reader, put_varint
from ..errors import FormatError

_NAMES = 1  # names are stored (otherwise they are 000000.png, 000001.png, ...)
_UNIFORM = 2  # every image has the same shape, stored once
_DEFLATED = 4  # the variable part is raw-deflated
_REFINED = 8  # a refinement layer follows the latents; its max error is stored
_QUALITY = 16  # the model codes at several qualities; the one used is stored
_ALPHA = 32  # an alpha refinement layer bounds the alpha channel; its max error is stored
_DIGITS = re.compile(r"(\d+)")
_MAX_DIGITS = 18
MAX_IMAGES = 1 << 24  # bounds what a hostile header can make a decoder allocate


@dataclass
class Catalog:
    names: list[str]
    shapes: list[tuple[int, int, int]]  # (height, width, channels)
    max_error: int | None = None  # the refinement layer's bound on every pixel's error, if any
    quality: int | None = None  # which of the model's qualities (0-based) coded the latents
    alpha_error: int | None = None  # the bound on every alpha value's error, for models with alpha


def default_names(count: int) -> list[str]:
    return [f"{i:06d}.png" for i in range(count)]


def pack(catalog: Catalog) -> bytes:
    flags = 0
    fixed = put_varint(len(catalog.shapes))
    for flag, value in ((_REFINED, catalog.max_error), (_QUALITY, catalog.quality), (_ALPHA, catalog.alpha_error)):
        if value is not None:
            flags |= flag
            fixed += put_varint(value)
    body = bytearray()
    if catalog.shapes and all(s == catalog.shapes[0] for s in catalog.shapes):
        flags |= _UNIFORM
        fixed += b"".join(put_varint(v) for v in catalog.shapes[0])
    else:
        for shape in catalog.shapes:
            body += b"".join(put_varint(v) for v in shape)
    if catalog.names != default_names(len(catalog.shapes)):
        flags |= _NAMES
        previous = ""
        for name in catalog.names:
            body += _pack_name(name, previous)
            previous = name
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    squeezed = deflater.compress(bytes(body)) + deflater.flush()
    if len(squeezed) < len(body):
        flags |= _DEFLATED
        body = bytearray(squeezed)
    return bytes([flags]) + fixed + bytes(body)


def unpack(data: bytes) -> Catalog:
    reader = Reader(data, what="image catalog")
    flags = reader.take(1)[0]
    if flags & ~(_NAMES | _UNIFORM | _DEFLATED | _REFINED | _QUALITY | _ALPHA):
        raise FormatError("corrupt image catalog (unknown flags)")
    count = reader.varint()
    if count > MAX_IMAGES:
        raise FormatError(f"corrupt image catalog ({count} images is more than latentzip accepts)")
    max_error, quality, alpha_error = (reader.varint() if flags & flag else None for flag in (_REFINED, _QUALITY, _ALPHA))
    uniform = tuple(reader.varint() for _ in range(3)) if flags & _UNIFORM else None
    body = reader.rest()
    if flags & _DEFLATED:
        try:
            body = zlib.decompressobj(-15).decompress(body, 1 << 26)
        except zlib.error:
            raise FormatError("corrupt image catalog") from None
    inner = Reader(body, what="image catalog")
    shapes = [uniform] * count if uniform else [tuple(inner.varint() for _ in range(3)) for _ in range(count)]
    for h, w, c in shapes:  # type: ignore[misc]
        if not (h and w and 1 <= c <= 4):
            raise FormatError(f"corrupt image catalog (impossible shape {h}x{w}x{c})")
    if flags & _NAMES:
        names, previous = [], ""
        for _ in range(count):
            previous = _unpack_name(inner, previous)
            names.append(previous)
    else:
        names = default_names(count)
    if not inner.done():
        raise FormatError("corrupt image catalog (trailing bytes)")
    return Catalog(names, shapes, max_error, quality, alpha_error)  # type: ignore[arg-type]


def safe_name(name: str) -> str:
    """Refuse names that would escape the output directory or hide as dotfiles."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in name:
        raise FormatError(f"unsafe image name {name!r} in file")
    return name


def _renumber(previous: str, deltas: list[int]) -> str | None:
    """`previous` with each number moved by its delta, keeping zero padding."""
    tokens = _DIGITS.split(previous)
    numbers = tokens[1::2]
    if len(numbers) != len(deltas) or any(len(t) > _MAX_DIGITS for t in numbers):
        return None
    for i, (token, delta) in enumerate(zip(numbers, deltas)):
        value = int(token) + delta
        if value < 0:
            return None
        natural = str(int(token)) == token
        tokens[2 * i + 1] = str(value) if natural else str(value).zfill(len(token))
    return "".join(tokens)


def _zigzag(v: int) -> int:
    return v * 2 if v >= 0 else -v * 2 - 1


def _unzigzag(v: int) -> int:
    return v // 2 if v % 2 == 0 else -(v + 1) // 2


def _pack_name(name: str, previous: str) -> bytes:
    """Opcode 1 + number deltas when that reproduces `name`; else opcode 0 + prefix-coded."""
    new, old = _DIGITS.split(name), _DIGITS.split(previous)
    if len(new) == len(old) and new[0::2] == old[0::2] and all(len(t) <= _MAX_DIGITS for t in new[1::2]):
        deltas = [int(a) - int(b) for a, b in zip(new[1::2], old[1::2])]
        if _renumber(previous, deltas) == name:
            return b"\1" + b"".join(put_varint(_zigzag(d)) for d in deltas)
    raw, before = name.encode(), previous.encode()
    common = 0
    while common < min(len(raw), len(before)) and raw[common] == before[common]:
        common += 1
    suffix = raw[common:]
    return b"\0" + put_varint(common) + put_varint(len(suffix)) + suffix


def _unpack_name(reader: Reader, previous: str) -> str:
    op = reader.take(1)[0]
    if op == 1:
        count = len(_DIGITS.split(previous)[1::2])
        name = _renumber(previous, [_unzigzag(reader.varint()) for _ in range(count)])
        if name is None:
            raise FormatError("corrupt image catalog (bad name delta)")
        return name
    if op != 0:
        raise FormatError("corrupt image catalog (bad name code)")
    before = previous.encode()
    common = reader.varint()
    if common > len(before):
        raise FormatError("corrupt image catalog (bad name prefix)")
    try:
        return (before[:common] + reader.take(reader.varint())).decode()
    except UnicodeDecodeError:
        raise FormatError("corrupt image catalog (name is not UTF-8)") from None
