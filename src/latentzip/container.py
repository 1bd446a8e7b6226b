"""The latentzip file container, shared by lossy image files and lossless byte files.

Every file starts with the same 6-byte preamble: a 4-byte magic number, a format
version and a kind byte. What follows depends on the kind; see docs/format.md.

An image file is small and read whole, so one CRC-32 at its end covers everything
before it:  preamble | varint(len(header)) | header | payload | crc32.

The helpers here never trust their input: every read is bounds-checked and every
failure raises FormatError with a one-line message a user can act on.
"""

from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass

from .errors import FormatError

MAGIC = b"\x89LTZ"
VERSION = 1
PREAMBLE_SIZE = len(MAGIC) + 2
CRC_SIZE = 4


class Kind(enum.IntEnum):
    """What a file holds; the byte after the version."""

    IMAGES = ord("I")
    BYTES = ord("B")


# The versions a reader takes, by kind: image files whose catalog has a second flags byte
# (some images coded directly) are version 2; encoders write 1 wherever that is enough.
VERSIONS = {Kind.IMAGES: (1, 2), Kind.BYTES: (1,)}


def preamble(kind: Kind, version: int = VERSION) -> bytes:
    """The first bytes of every file of `kind`."""
    return MAGIC + bytes([version, kind])


def check_preamble(blob: bytes, kind: Kind) -> None:
    """Raise FormatError unless `blob` starts like a file of `kind` of a version this
    build reads."""
    if len(blob) < len(MAGIC) or blob[: len(MAGIC)] != MAGIC:
        raise FormatError("not a latentzip file (bad magic number)")
    if len(blob) < PREAMBLE_SIZE:
        raise FormatError("truncated latentzip file (preamble cut short)")
    version, found = blob[4], blob[5]
    if found != kind:
        names = {k.value: k.name.lower() for k in Kind}
        what = names.get(found, f"unknown kind 0x{found:02x}")
        raise FormatError(f"this latentzip file holds {what}, not {kind.name.lower()}")
    if version not in VERSIONS[kind]:
        read = " or ".join(map(str, VERSIONS[kind]))
        raise FormatError(f"unsupported latentzip format version {version} (this build reads version {read})")


def crc32(data: bytes | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


# --- varints: unsigned LEB128, the compact integer form used in every header ----------


def put_varint(value: int) -> bytes:
    """Encode a non-negative integer in 7-bit groups, least significant first."""
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@dataclass
class Reader:
    """A bounds-checked cursor over bytes; every overrun is a FormatError."""

    data: bytes | memoryview
    pos: int = 0
    what: str = "file"

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError(f"truncated {self.what}")
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            if self.pos >= len(self.data):
                raise FormatError(f"truncated {self.what}")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise FormatError(f"corrupt {self.what} (integer field too long)")

    def rest(self) -> bytes:
        out = bytes(self.data[self.pos :])
        self.pos = len(self.data)
        return out

    def done(self) -> bool:
        return self.pos >= len(self.data)


# --- whole-file containers (image files) -----------------------------------------------


def pack(kind: Kind, header: bytes, payload: bytes, version: int = VERSION) -> bytes:
    """preamble | varint(len(header)) | header | payload | crc32 of all before it."""
    body = preamble(kind, version) + put_varint(len(header)) + header + payload
    return body + crc32(body).to_bytes(CRC_SIZE, "little")


def unpack(blob: bytes, kind: Kind) -> tuple[bytes, bytes]:
    """Check a packed file and return (header, payload); raise FormatError if damaged.
    The file's version is `blob[4]` (see `version_of`)."""
    check_preamble(blob, kind)
    if len(blob) < PREAMBLE_SIZE + 1 + CRC_SIZE:
        raise FormatError("truncated latentzip file")
    body, stored = blob[:-CRC_SIZE], int.from_bytes(blob[-CRC_SIZE:], "little")
    if crc32(body) != stored:
        raise FormatError("latentzip file is corrupt or truncated (checksum mismatch)")
    reader = Reader(body, PREAMBLE_SIZE, "header")
    header = reader.take(reader.varint())
    return header, reader.rest()


def version_of(blob: bytes) -> int:
    """The format version of a file that `unpack` accepted."""
    return blob[4]


# --- streamed byte files (lossless codec) ----------------------------------------------
#
# A byte file may be larger than memory, so it is written and read as a sequence of
# self-checking records rather than as one packed blob:
#
#   preamble | header record | block record ... | end record
#
#   header record = varint(len(fields)) | fields | crc32(fields)
#   block record  = varint(n > 0) | mode byte | varint(len(payload)) | payload
#                   | crc32(the n restored bytes) | crc32(the record up to here)
#   end record    = varint(0) | varint(total restored bytes) | crc32(all restored bytes)
#                   | crc32(the record up to here)
#
# A reader can check each block before it decodes it and each restored block before it
# emits it; the end record proves the stream was not cut short at a block boundary.
# The parsers below take a buffer that may hold only part of a record and return None
# until the whole record has arrived.

BLOCK_STORED = 0
BLOCK_CODED = 1


@dataclass
class BlockRecord:
    """One parsed block (n > 0) or the end record (n == 0, payload empty)."""

    n: int
    mode: int
    payload: bytes
    data_crc: int


def _varint_at(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """(value, next position) of the varint at pos, or None if the buffer ends first."""
    value, shift = 0, 0
    while pos < len(buf):
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise FormatError("corrupt latentzip file (integer field too long)")
    return None


def bytes_header(fields: bytes) -> bytes:
    """The preamble and header record of a byte file."""
    return preamble(Kind.BYTES) + put_varint(len(fields)) + fields + crc32(fields).to_bytes(CRC_SIZE, "little")


def parse_bytes_header(buf: bytes | bytearray, max_len: int = 256) -> tuple[bytes, int] | None:
    """(header fields, bytes consumed) once the preamble and header have arrived."""
    if len(buf) < PREAMBLE_SIZE:
        if bytes(buf[: len(MAGIC)]) != MAGIC[: len(buf)]:
            raise FormatError("not a latentzip file (bad magic number)")
        return None
    check_preamble(bytes(buf[:PREAMBLE_SIZE]), Kind.BYTES)
    got = _varint_at(buf, PREAMBLE_SIZE)
    if got is None:
        return None
    size, pos = got
    if size > max_len:
        raise FormatError("corrupt latentzip file (header too long)")
    if len(buf) < pos + size + CRC_SIZE:
        return None
    fields = bytes(buf[pos : pos + size])
    if crc32(fields) != int.from_bytes(buf[pos + size : pos + size + CRC_SIZE], "little"):
        raise FormatError("latentzip file is corrupt (header checksum mismatch)")
    return fields, pos + size + CRC_SIZE


def block_record(mode: int, payload: bytes, data: bytes) -> bytes:
    """A block record for the n = len(data) restored bytes coded as `payload`."""
    body = put_varint(len(data)) + bytes([mode]) + put_varint(len(payload)) + payload
    body += crc32(data).to_bytes(CRC_SIZE, "little")
    return body + crc32(body).to_bytes(CRC_SIZE, "little")


def end_record(total: int, data_crc: int) -> bytes:
    """The record that closes a byte file: total length and checksum of everything restored."""
    body = put_varint(0) + put_varint(total) + data_crc.to_bytes(CRC_SIZE, "little")
    return body + crc32(body).to_bytes(CRC_SIZE, "little")


def parse_record(buf: bytes | bytearray, pos: int, max_n: int, max_payload: int) -> tuple[BlockRecord, int] | None:
    """The block or end record at pos and the position after it, or None if incomplete.

    Lengths are bounded by the caller's limits before anything is allocated, and the
    record's own checksum is verified before its fields are trusted further.
    """
    got = _varint_at(buf, pos)
    if got is None:
        return None
    n, p = got
    if n == 0:
        got = _varint_at(buf, p)
        if got is None:
            return None
        total, p = got
        if len(buf) < p + 2 * CRC_SIZE:
            return None
        _check_record(buf, pos, p + CRC_SIZE)
        return BlockRecord(total, -1, b"", int.from_bytes(buf[p : p + CRC_SIZE], "little")), p + 2 * CRC_SIZE
    if n > max_n:
        raise FormatError("latentzip file is corrupt (block longer than the header allows)")
    if len(buf) < p + 1:
        return None
    mode = buf[p]
    if mode not in (BLOCK_STORED, BLOCK_CODED):
        raise FormatError(f"latentzip file is corrupt (unknown block mode {mode})")
    got = _varint_at(buf, p + 1)
    if got is None:
        return None
    size, p = got
    if size > max_payload:
        raise FormatError("latentzip file is corrupt (block payload too long)")
    end = p + size + CRC_SIZE
    if len(buf) < end + CRC_SIZE:
        return None
    _check_record(buf, pos, end)
    return BlockRecord(n, mode, bytes(buf[p : p + size]), int.from_bytes(buf[p + size : end], "little")), end + CRC_SIZE


def _check_record(buf: bytes | bytearray, start: int, end: int) -> None:
    stored = int.from_bytes(buf[end : end + CRC_SIZE], "little")
    if crc32(memoryview(buf)[start:end]) != stored:
        raise FormatError("latentzip file is corrupt (block checksum mismatch)")
