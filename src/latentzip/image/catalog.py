"""The names and shapes of the images in a file, in a few bytes per file.

Shapes shared by all images are stored once. Names are coded against the previous
name: when they differ only in their numbers ("scan_0041.png" after "scan_0040.png"),
only the differences are kept; otherwise the common prefix is skipped. The result is
deflated, so a file of 1,000 sequentially named images spends well under a byte per
name.

A decoder never trusts a catalog. Everything it declares (images, pixels, name bytes,
the inflated size) is held to a budget that grows with the size of the file that
declares it (`Budget`, the resource policy of docs/format.md), and is checked while it
is read, before anything sized by it is allocated. Names that could escape the output
directory, hide, or reach a file system's limits are refused (`name_problem`); the
encoder applies the same rules, so it never writes a file its decoder refuses.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

import numpy as np

from ..container import Reader, put_varint
from ..errors import FormatError, LatentzipError, LimitError, shown

_NAMES = 1  # names are stored (otherwise they are 000000.png, 000001.png, ...)
_UNIFORM = 2  # every image has the same shape, stored once
_DEFLATED = 4  # the variable part is raw-deflated
_REFINED = 8  # a refinement layer follows the latents; its max error is stored
_QUALITY = 16  # the model codes at several qualities; the one used is stored
_ALPHA = 32  # the model codes alpha; the bound on every alpha value's error is stored
_TILED = 64  # images larger than a tile side are coded in tiles (tiling.py); the side is stored
_ALPHA_CODED = 128  # alpha is coded by the alpha coder (alpha.py), in a stream of its own whose length is stored
# Of the second flags byte (version 2): some images are coded directly (direct.py); the
# length of their stream and which images they are follow the other fields.
_DIRECT = 1
PER_IMAGE = 128  # alpha_error of a file whose images' alpha bounds differ: past every single bound (0-127)
_DIGITS = re.compile(r"(\d+)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MAX_DIGITS = 18

# The resource policy (docs/format.md): absolute limits, then what a file may declare
# per byte of its own size on top of a fixed allowance (see `Budget`).
MAX_FILE = 1 << 30  # bytes of a whole image file, which is read whole
MAX_IMAGES = 1 << 24
MAX_IMAGE_PIXELS = 1 << 26  # height x width of one image (8192 x 8192)
MAX_NAME = 1024  # UTF-8 bytes of one name
MAX_PART = 251  # UTF-8 bytes of one path part: with ".png" added, the 255 of common file systems
MAX_DEPTH = 32  # path parts of one name


@dataclass
class Catalog:
    names: list[str]
    shapes: list[tuple[int, int, int]]  # (height, width, channels)
    max_error: int | None = None  # the refinement layer's bound on every pixel's error, if any
    quality: int | None = None  # which of the model's qualities (0-based) coded the latents
    # The bound on every alpha value's error, in files that code alpha; PER_IMAGE where the
    # images' bounds differ and open each chunk's part of the alpha stream (alpha.py).
    alpha_error: int | None = None
    tile: int | None = None  # images larger than this side are coded in tiles of it (None: none is)
    # Bytes of the alpha coder's stream, which opens the payload; None in files whose alpha
    # is a refinement layer in the range-coded stream (written before the alpha coder).
    alpha_bytes: int | None = None
    # Which images are coded directly (direct.py), in a stream of `direct_bytes` bytes after
    # the alpha coder's; None in files that code every image with the model (version 1).
    direct: list[bool] | None = None
    direct_bytes: int | None = None

    @property
    def version(self) -> int:
        """The container version a file of this catalog is written with: 2 where it has
        a second flags byte (some images coded directly), else 1, as before it existed."""
        return 1 if self.direct is None else 2


@dataclass(frozen=True)
class Budget:
    """What an image file of `size` bytes may declare: a fixed allowance, so small files
    are never refused, plus a multiple of its size tens of times above what real files
    need (docs/format.md says which files were measured)."""

    size: int
    images: int
    values: int  # pixel values (height x width x channels) of all images together
    name_bytes: int  # UTF-8 bytes of all names together
    catalog_bytes: int  # the catalog's body once inflated

    @classmethod
    def of(cls, size: int) -> "Budget":
        if size > MAX_FILE:
            raise LimitError(f"image file of {size} bytes is larger than latentzip reads ({MAX_FILE} bytes)")
        return cls(size, min(MAX_IMAGES, (1 << 12) + (size << 4)), (1 << 24) + (size << 14),
                   (1 << 20) + (size << 8), (1 << 20) + (size << 9))

    def charge(self, field: str, used: int) -> None:
        """Raise LimitError if `used` exceeds this budget's `field`."""
        allowed = getattr(self, field)
        if used > allowed:
            what = field.replace("_", " ").replace("values", "pixel values")
            raise LimitError(f"image file declares {used} {what}; a file of {self.size} bytes may declare "
                             f"at most {allowed} (latentzip's resource policy)")


def default_names(count: int) -> list[str]:
    return [f"{i:06d}.png" for i in range(count)]


def pack(catalog: Catalog) -> bytes:
    for name in catalog.names:
        problem = name_problem(name)
        if problem:
            raise LatentzipError(f"cannot store image name {shown(name)}: {problem}")
    flags, fixed, body = _layout(catalog)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    squeezed = deflater.compress(body) + deflater.flush()
    if len(squeezed) < len(body):
        flags |= _DEFLATED
        body = squeezed
    return bytes([flags]) + fixed + body


def check(catalog: Catalog, file_size: int) -> None:
    """Raise LimitError unless a file of `file_size` bytes may declare `catalog`: an
    encoder's check that its decoder will not refuse the file it writes."""
    budget = Budget.of(file_size)
    budget.charge("images", len(catalog.shapes))
    budget.charge("values", sum(math.prod(shape) for shape in catalog.shapes))
    budget.charge("name_bytes", sum(len(name.encode()) for name in catalog.names))
    budget.charge("catalog_bytes", len(_layout(catalog)[2]))


def unpack(data: bytes, file_size: int, version: int = 1) -> Catalog:
    """Parse a catalog from a file of `file_size` bytes and container `version`, holding
    it to that file's budget."""
    budget = Budget.of(file_size)
    reader = Reader(data, what="image catalog")
    flags = reader.take(1)[0]
    more = reader.take(1)[0] if version >= 2 else 0
    known = _NAMES | _UNIFORM | _DEFLATED | _REFINED | _QUALITY | _ALPHA | _TILED | _ALPHA_CODED
    if flags & ~known or more & ~_DIRECT:
        raise FormatError("corrupt image catalog (unknown flags)")
    count = reader.varint()
    budget.charge("images", count)
    max_error, quality, alpha_error, tile, alpha_bytes = (
        reader.varint() if flags & flag else None for flag in (_REFINED, _QUALITY, _ALPHA, _TILED, _ALPHA_CODED))
    if alpha_bytes is not None and alpha_error is None:
        raise FormatError("corrupt image catalog (an alpha stream without alpha)")
    direct, direct_bytes = None, None
    if more & _DIRECT:
        direct_bytes = reader.varint()
        direct = _unpack_bits(reader.take(-(-count // 8)), count)
    uniform = _shape(reader) if flags & _UNIFORM else None
    body = _inflate(reader.rest(), budget) if flags & _DEFLATED else reader.rest()
    budget.charge("catalog_bytes", len(body))
    inner = Reader(body, what="image catalog")
    shapes = [uniform] * count if uniform else [_shape(inner) for _ in range(count)]
    budget.charge("values", sum(h * w * c for h, w, c in shapes))
    names = _unpack_names(inner, count, budget) if flags & _NAMES else default_names(count)
    if not inner.done():
        raise FormatError("corrupt image catalog (trailing bytes)")
    return Catalog(names, shapes, max_error, quality, alpha_error, tile, alpha_bytes, direct, direct_bytes)


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an image in a file, or None. Refused: names that would
    leave the output directory (absolute, `..`) or hide in it (a part starting with
    '.'), empty parts, control characters, and what file systems cannot hold."""
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        return "it is not valid UTF-8"
    parts = name.replace("\\", "/").split("/")
    if not name:
        return "it is empty"
    if size > MAX_NAME:
        return f"it is longer than {MAX_NAME} bytes"
    if _CONTROL.search(name):
        return "it holds a control character"
    if name.startswith(("/", "\\")):
        return "it is an absolute path"
    if len(parts) > MAX_DEPTH:
        return f"it is nested more than {MAX_DEPTH} directories deep"
    if any(not part for part in parts):
        return "it has an empty path part"
    if any(part.startswith(".") for part in parts):
        return "a part of it starts with '.' (it would leave the output directory or hide in it)"
    if any(len(part.encode()) > MAX_PART for part in parts):
        return f"a part of it is longer than {MAX_PART} bytes"
    return None


def _layout(catalog: Catalog) -> tuple[int, bytes, bytes]:
    """(flags, the fixed fields, the body before deflating) of a catalog."""
    flags = 0
    fixed = (b"" if catalog.direct is None else bytes([_DIRECT])) + put_varint(len(catalog.shapes))
    for flag, value in ((_REFINED, catalog.max_error), (_QUALITY, catalog.quality), (_ALPHA, catalog.alpha_error),
                        (_TILED, catalog.tile), (_ALPHA_CODED, catalog.alpha_bytes)):
        if value is not None:
            flags |= flag
            fixed += put_varint(value)
    if catalog.direct is not None:
        bitmap = np.packbits(np.array(catalog.direct, dtype=bool), bitorder="little").tobytes()
        fixed += put_varint(catalog.direct_bytes or 0) + bitmap
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
    return flags, fixed, bytes(body)


def _inflate(data: bytes, budget: Budget) -> bytes:
    """The raw-deflated body, inflated no further than the budget allows."""
    inflater = zlib.decompressobj(-15)
    try:
        body = inflater.decompress(data, budget.catalog_bytes + 1)
    except zlib.error:
        raise FormatError("corrupt image catalog (bad deflate stream)") from None
    budget.charge("catalog_bytes", len(body))
    if not inflater.eof or inflater.unused_data:
        raise FormatError("corrupt image catalog (deflate stream cut short or followed by other bytes)")
    return body


def _unpack_bits(data: bytes, count: int) -> list[bool]:
    """`count` flags packed eight to a byte, least significant bit first; the bits past
    them must be 0."""
    bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
    if bits[count:].any():
        raise FormatError("corrupt image catalog (bits set past the last image)")
    return bits[:count].astype(bool).tolist()


def _shape(reader: Reader) -> tuple[int, int, int]:
    h, w, c = reader.varint(), reader.varint(), reader.varint()
    if not (h and w and 1 <= c <= 4):
        raise FormatError(f"corrupt image catalog (impossible shape {h}x{w}x{c})")
    if h * w > MAX_IMAGE_PIXELS:
        raise LimitError(f"image file declares an image of {h}x{w} pixels; latentzip decodes at most "
                         f"{MAX_IMAGE_PIXELS} pixels per image")
    return h, w, c


def _unpack_names(reader: Reader, count: int, budget: Budget) -> list[str]:
    names, previous, total = [], "", 0
    for _ in range(count):
        previous = _unpack_name(reader, previous)
        problem = name_problem(previous)
        if problem:
            raise FormatError(f"unsafe image name {shown(previous)} in file: {problem}")
        total += len(previous.encode())
        budget.charge("name_bytes", total)
        names.append(previous)
    return names


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
    common, size = reader.varint(), reader.varint()
    if common > len(before):
        raise FormatError("corrupt image catalog (bad name prefix)")
    if common + size > MAX_NAME:
        raise FormatError(f"corrupt image catalog (a name longer than {MAX_NAME} bytes)")
    try:
        return (before[:common] + reader.take(size)).decode()
    except UnicodeDecodeError:
        raise FormatError("corrupt image catalog (name is not UTF-8)") from None
