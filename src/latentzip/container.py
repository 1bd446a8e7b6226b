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


def preamble(kind: Kind) -> bytes:
    """The first bytes of every file of `kind`."""
    return MAGIC + bytes([VERSION, kind])


def check_preamble(blob: bytes, kind: Kind) -> None:
    """Raise FormatError unless `blob` starts like a current-version file of `kind`."""
    if len(blob) < len(MAGIC) or blob[: len(MAGIC)] != MAGIC:
        raise FormatError("not a latentzip file (bad magic number)")
    if len(blob) < PREAMBLE_SIZE:
        raise FormatError("truncated latentzip file (preamble cut short)")
    version, found = blob[4], blob[5]
    if version != VERSION:
        raise FormatError(f"unsupported latentzip format version {version} (this build reads version {VERSION})")
    if found != kind:
        names = {k.value: k.name.lower() for k in Kind}
        what = names.get(found, f"unknown kind 0x{found:02x}")
        raise FormatError(f"this latentzip file holds {what}, not {kind.name.lower()}")


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


def pack(kind: Kind, header: bytes, payload: bytes) -> bytes:
    """preamble | varint(len(header)) | header | payload | crc32 of all before it."""
    body = preamble(kind) + put_varint(len(header)) + header + payload
    return body + crc32(body).to_bytes(CRC_SIZE, "little")


def unpack(blob: bytes, kind: Kind) -> tuple[bytes, bytes]:
    """Check a packed file and return (header, payload); raise FormatError if damaged."""
    check_preamble(blob, kind)
    if len(blob) < PREAMBLE_SIZE + 1 + CRC_SIZE:
        raise FormatError("truncated latentzip file")
    body, stored = blob[:-CRC_SIZE], int.from_bytes(blob[-CRC_SIZE:], "little")
    if crc32(body) != stored:
        raise FormatError("latentzip file is corrupt or truncated (checksum mismatch)")
    reader = Reader(body, PREAMBLE_SIZE, "header")
    header = reader.take(reader.varint())
    return header, reader.rest()
