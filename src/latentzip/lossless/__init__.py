"""Lossless neural compression of any bytes, shaped like Python's lzma and zlib.

    blob = compress(data, level=6)
    data = decompress(blob)

    c = Compressor(level=6)                       # streaming, for data larger than memory
    out = c.compress(chunk) + ... + c.flush()
    d = Decompressor(max_length=1 << 30)          # LimitError rather than restore more
    data = d.decompress(out)                      # d.eof once the end record is read

    compress_stream(src, dst, level)              # file objects
    decompress_stream(src, dst)

A context-mixing predictor learns the data while it codes it; the decoder replays it
exactly. Nothing is stored but the bitstream: no weights. Levels 1-3 use a small model
compiled together with its arithmetic coder (fast.py); levels 4-9 a large one
(predict.py, coded by coder.py). From level 6 up the model first learns a built-in
primer text (primer.py), on inputs large enough to earn that back or when asked
(`primer=True`). A block the model cannot shrink is stored as is, so output never grows
by more than a few bytes per block.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO, Callable, Protocol

from .. import container
from ..errors import FormatError, LimitError
from . import primer as _primer
from .coder import MixingCoder
from .fast import FAST_LEVELS, FastLevel, FastModel
from .predict import DEFAULT_LEVEL, LEVELS as MIXING_LEVELS, REVISION as MIXING_REVISION, Level

__all__ = ["compress", "decompress", "Compressor", "Decompressor", "compress_stream", "decompress_stream",
           "DEFAULT_LEVEL", "LEVELS", "BLOCK_SIZE"]

BLOCK_SIZE = 1 << 20
# The header's predictor revision, bumped whenever a level's predictor changes what it
# predicts, so that old files fail loudly. 5: levels 1-3 became the fast model. Files of
# revision 4 still decode at levels 4-9, whose predictor (predict.REVISION) is unchanged.
PREDICTOR_REVISION = 5
_STILL_READ = {4: set(MIXING_LEVELS)}
LEVELS: dict[int, FastLevel | Level] = {**FAST_LEVELS, **MIXING_LEVELS}
_CHUNK = 1 << 16
# Restored bytes a coded block may declare per byte of its payload (plus 16 bytes, the
# coder's final state). The predictors' probabilities stop at 4095/4096, so every binary
# decision costs at least log2(4096/4095) bits: n bytes need at least n / 2841 bytes of
# payload at 8 decisions a byte, n / 22,728 at the fast levels, where a byte in a long
# repeat is one decision. The bound keeps the time a tiny crafted block can make a
# decoder spend to a few seconds, and no real stream reaches it.
_CODED_RATIO = {**{level: 1 << 15 for level in FAST_LEVELS}, **{level: 1 << 12 for level in MIXING_LEVELS}}
_CODER_STATE = 16

Progress = Callable[[int], None]


class BlockCoder(Protocol):
    """What a level's model does with a stream's blocks; it learns from each in turn."""

    def encode(self, data: bytes, progress: Progress | None = None) -> bytes:
        """The coded block, or b"" when coding does not shrink it (it is stored)."""

    def learn(self, data: bytes, progress: Progress | None = None) -> None:
        """Learn a stored block exactly as encoding it would have."""

    def decode(self, payload: bytes, n: int, progress: Progress | None = None) -> bytes: ...


def _fields(level: int, block_size: int, primer_id: int) -> bytes:
    return b"".join(container.put_varint(v) for v in (PREDICTOR_REVISION, level, block_size, primer_id))


def _new_model(level: int, primed: bool) -> BlockCoder:
    """A fresh model for a stream; both sides build it the same way."""
    config = LEVELS[level]
    if isinstance(config, FastLevel):
        return FastModel(config)
    coder = MixingCoder(config)
    if primed:
        coder.model.prime(_primer.text())
        for name, value in _primer.prior(MIXING_REVISION).items():
            target = getattr(coder.model, name)
            if target.shape != value.shape:
                raise FormatError(f"the built-in prior does not fit level {level} ({name}); reinstall latentzip")
            target[:] = value
    return coder


class Compressor:
    """Compress a stream incrementally: feed `compress(chunk)`, finish with `flush()`."""

    def __init__(self, level: int = DEFAULT_LEVEL, block_size: int = BLOCK_SIZE,
                 progress: Progress | None = None, primer: bool | None = None) -> None:
        """`primer`: learn the built-in primer first (levels 6-9 only); None decides by input size."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {min(LEVELS)}..{max(LEVELS)}, not {level}")
        if not 0 < block_size <= (1 << LEVELS[level].history_bits) // 2:
            raise ValueError(f"block size must be between 1 and {(1 << LEVELS[level].history_bits) // 2} at level {level}")
        self.level = level
        self.block_size = block_size
        self.progress = progress
        self.primer = primer
        self.primed = False
        self._model: BlockCoder | None = None
        self._pending = bytearray()
        self._finished = False
        self._total = 0
        self._crc = 0
        self.stored_blocks = 0
        self.blocks = 0

    def compress(self, data: bytes) -> bytes:
        """Accept more input; return whatever compressed output is ready."""
        if self._finished:
            raise ValueError("compressor already flushed")
        out = bytearray()
        self._pending += data
        if self._model is None and len(self._pending) >= self.block_size:
            out += self._start(len(self._pending))
        while len(self._pending) >= self.block_size:
            block = bytes(self._pending[: self.block_size])
            del self._pending[: self.block_size]
            out += self._block(block)
        return bytes(out)

    def flush(self) -> bytes:
        """Compress what is left and close the stream."""
        if self._finished:
            raise ValueError("compressor already flushed")
        out = bytearray()
        if self._model is None:
            out += self._start(len(self._pending))
        if self._pending:
            out += self._block(bytes(self._pending))
            self._pending.clear()
        self._finished = True
        out += container.end_record(self._total, self._crc)
        return bytes(out)

    def _start(self, received: int) -> bytes:
        """The header, written before the first block once `received` bytes are in hand."""
        wanted = _primer.worth_priming(received) if self.primer is None else self.primer
        self.primed = LEVELS[self.level].primed and wanted
        self._model = _new_model(self.level, self.primed)
        return container.bytes_header(_fields(self.level, self.block_size, _primer.PRIMER_ID if self.primed else 0))

    def _block(self, data: bytes) -> bytes:
        assert self._model is not None
        payload = self._model.encode(data, self.progress)
        mode = container.BLOCK_CODED
        if not payload:
            payload, mode = data, container.BLOCK_STORED
            self.stored_blocks += 1
        self.blocks += 1
        self._total += len(data)
        self._crc = zlib.crc32(data, self._crc)
        return container.block_record(mode, payload, data)


class Decompressor:
    """Decompress a stream incrementally; `eof` turns True after the end record."""

    def __init__(self, progress: Progress | None = None, max_length: int | None = None) -> None:
        """`max_length`: the most bytes the stream may restore. A stream that declares
        more raises LimitError before the bytes past it are decoded, as zlib's and
        zstandard's caps let a service bound what one request costs."""
        if max_length is not None and max_length < 0:
            raise ValueError(f"max_length must be at least 0, not {max_length}")
        self.progress = progress
        self.max_length = max_length
        self._buf = bytearray()
        self._model: BlockCoder | None = None
        self.level: int | None = None
        self._block_size = 0
        self._total = 0
        self._crc = 0
        self.eof = False

    def decompress(self, data: bytes) -> bytes:
        """Accept more compressed input; return the bytes restored so far (checked)."""
        if self.eof:
            if data:
                raise FormatError("unexpected data after the end of the latentzip stream")
            return b""
        self._buf += data
        out = bytearray()
        if self._model is None and not self._read_header():
            return b""
        pos = 0
        assert self._model is not None
        while not self.eof:
            got = container.parse_record(self._buf, pos, self._block_size, self._block_size * 2 + 64)
            if got is None:
                break
            record, pos = got
            if record.mode < 0:
                self._finish(record)
                if pos != len(self._buf):
                    raise FormatError("unexpected data after the end of the latentzip stream")
            else:
                out += self._restore(record)
        del self._buf[:pos]
        return bytes(out)

    def finish(self) -> None:
        """Raise FormatError unless the whole stream, end record included, was read."""
        if not self.eof:
            raise FormatError("latentzip file is truncated (no end record)")

    def _read_header(self) -> bool:
        got = container.parse_bytes_header(self._buf)
        if got is None:
            return False
        fields, used = got
        reader = container.Reader(fields, what="header")
        revision, level = reader.varint(), reader.varint()
        if revision != PREDICTOR_REVISION and level not in _STILL_READ.get(revision, ()):
            raise FormatError(f"this file needs predictor revision {revision} at level {level}; "
                              f"this build has {PREDICTOR_REVISION}")
        block_size, primer_id = reader.varint(), reader.varint()
        if level not in LEVELS:
            raise FormatError(f"latentzip file is corrupt (unknown level {level})")
        window = 1 << LEVELS[level].history_bits
        if not 0 < block_size <= window // 2:
            raise FormatError("latentzip file is corrupt (bad block size)")
        if primer_id not in (0, _primer.PRIMER_ID) or (primer_id and not LEVELS[level].primed):
            raise FormatError(f"latentzip file is corrupt or needs another build (unknown primer {primer_id})")
        del self._buf[:used]
        self.level, self._block_size = level, block_size
        self._model = _new_model(level, primer_id != 0)
        return True

    def _restore(self, record: container.BlockRecord) -> bytes:
        assert self._model is not None
        if self.max_length is not None and self._total + record.n > self.max_length:
            raise LimitError(f"the latentzip stream restores more than max_length={self.max_length} bytes")
        if record.mode == container.BLOCK_STORED:
            if len(record.payload) != record.n:
                raise FormatError("latentzip file is corrupt (stored block has the wrong length)")
            data = record.payload
            self._model.learn(data, self.progress)
        else:
            if record.n > _CODED_RATIO[self.level] * (len(record.payload) + _CODER_STATE):
                raise FormatError("latentzip file is corrupt (a coded block declares more bytes than its payload "
                                  "can hold)")
            data = self._model.decode(record.payload, record.n, self.progress)
        if container.crc32(data) != record.data_crc:
            raise FormatError("restored data does not match its checksum: the file is damaged "
                              "or was written by an incompatible build")
        self._total += len(data)
        self._crc = zlib.crc32(data, self._crc)
        return data

    def _finish(self, record: container.BlockRecord) -> None:
        if record.n != self._total or record.data_crc != self._crc:
            raise FormatError("latentzip file is damaged (total length or checksum of the restored data differs)")
        self.eof = True


def compress(data: bytes, level: int = DEFAULT_LEVEL, primer: bool | None = None) -> bytes:
    """Compress bytes into one latentzip byte file."""
    c = Compressor(level, primer=primer)
    return c.compress(bytes(data)) + c.flush()


def decompress(blob: bytes, max_length: int | None = None) -> bytes:
    """Restore the bytes of a latentzip byte file; raise FormatError if it is damaged, and
    LimitError, before producing them, if it would restore more than `max_length` bytes."""
    d = Decompressor(max_length=max_length)
    out = d.decompress(bytes(blob))
    d.finish()
    return out


def compress_stream(src: BinaryIO, dst: BinaryIO, level: int = DEFAULT_LEVEL,
                    progress: Progress | None = None, block_size: int = BLOCK_SIZE,
                    primer: bool | None = None) -> Compressor:
    """Compress file object src into dst, block by block; return the finished Compressor."""
    c = Compressor(level, block_size, progress, primer)
    while chunk := src.read(_CHUNK):
        dst.write(c.compress(chunk))
    dst.write(c.flush())
    return c


def decompress_stream(src: BinaryIO, dst: BinaryIO, progress: Progress | None = None) -> Decompressor:
    """Decompress file object src into dst; every block is checked before it is written."""
    d = Decompressor(progress)
    while chunk := src.read(_CHUNK):
        dst.write(d.decompress(chunk))
    d.finish()
    return d
