"""Lossless neural compression of any bytes, shaped like Python's lzma and zlib.

    blob = compress(data, level=6)
    data = decompress(blob)

    blob = compress(data, threads=4)              # segments coded side by side; same bytes
    c = Compressor(level=6)                       # streaming, for data larger than memory
    out = c.compress(chunk) + ... + c.flush()
    d = Decompressor(max_length=1 << 30)          # LimitError rather than restore more
    data = d.decompress(out)                      # d.eof once the end record is read

    compress_stream(src, dst, level)              # file objects
    decompress_stream(src, dst)

A context-mixing predictor learns the data while it codes it; the decoder replays it
exactly. Nothing is stored but the bitstream: no weights. Levels 1-3 use a small model
compiled together with the arithmetic coder (fast.py, arith.py); levels 4-9 a large one
(predict.py, coded by coder.py). From level 6 up the model first learns a built-in
primer text (primer.py), on inputs large enough to earn that back or when asked
(`primer=True`). A block the model cannot shrink is stored as is, so output never grows
by more than a few bytes per block.

Every SEGMENT_SIZE bytes the model starts again from the stream's initial (primed)
state, so that segments can be coded and decoded on several threads. Where the
segments fall does not depend on the number of threads: any thread count writes the
same bytes, and any thread count reads them. When the input's length is known in
advance (`compress`, or `size=` for a stream) and it spans several segments, they are
cut to equal lengths instead, so that threads finish together: 8 MB is two segments of
4 MB, not 4 MiB and 3.8 MB. The output then differs from that of the same bytes
streamed with no length given; both decode alike.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO, Callable, Protocol

from .. import container
from ..errors import FormatError, LimitError
from . import primer as _primer
from .coder import MixingCoder
from .fast import FAST_LEVELS, FastLevel, FastModel
from .parallel import Pipeline, Result, Watch, cores, total_memory
from .predict import DEFAULT_LEVEL, LEVELS as MIXING_LEVELS, REVISION as MIXING_REVISION, Level, Model

__all__ = ["compress", "decompress", "Compressor", "Decompressor", "compress_stream", "decompress_stream",
           "DEFAULT_LEVEL", "LEVELS", "BLOCK_SIZE", "SEGMENT_SIZE", "layout", "worker_memory", "threads_for"]

BLOCK_SIZE = 1 << 20
# The model restarts every SEGMENT_SIZE bytes (rounded up to whole blocks). Against one
# model for the whole stream this costs about 1.5% on 8 MB of prose at level 1; smaller
# segments would give more threads work on smaller inputs, at a higher cost.
SEGMENT_SIZE = 1 << 22
# The header's predictor revision, bumped whenever what a level predicts or how a stream
# is cut changes, so that old builds fail loudly. 5: levels 1-3 became the fast model.
# 6: the model restarts every segment. 7: levels 4-9 code with the compiled coder of
# levels 1-3 (arith.py) instead of constriction's, a byte deep in a repeat is one
# decision, and lock-step segments keep their own match entries (predict.code_steps).
# Older files still decode (MixingCoder's `words` at levels 4-9): revision 6
# at every level, revision 5 at every level and revision 4 at levels 4-9 (their
# predictor, predict.REVISION, is unchanged), with one model for the whole stream.
PREDICTOR_REVISION = 7
LEVELS: dict[int, FastLevel | Level] = {**FAST_LEVELS, **MIXING_LEVELS}
_STILL_READ = {4: set(MIXING_LEVELS), 5: set(LEVELS), 6: set(LEVELS)}
_WORDS_BEFORE = 7  # levels 4-9 of earlier revisions coded constriction's words
MEMORY_SHARE = 4  # by default the threads' models take at most 1/4 of physical memory
_CHUNK = 1 << 16
# Restored bytes a coded block may declare per byte of its payload (plus 16 bytes, the
# coder's final state). The predictors' probabilities stop at 4095/4096, so every binary
# decision costs at least log2(4096/4095) bits: a byte in a long repeat is one decision,
# so n bytes need at least n / 22,728 bytes of payload (n / 2841 at 8 decisions a byte,
# as files before revision 7 coded levels 4-9). The bound keeps what a tiny crafted
# block can make a decoder do to what a real block of that length costs.
_CODED_RATIO = 1 << 15
_CODER_STATE = 16

Progress = Callable[[int], None]


class BlockCoder(Protocol):
    """What a level's model does with a stream's blocks; it learns from each in turn."""

    def encode(self, data: bytes, progress: Progress | None = None) -> bytes:
        """The coded block, or b"" when coding does not shrink it (it is stored)."""

    def learn(self, data: bytes, progress: Progress | None = None) -> None:
        """Learn a stored block exactly as encoding it would have."""

    def decode(self, payload: bytes, n: int, progress: Progress | None = None) -> bytes: ...


def _fields(level: int, block_size: int, primer_id: int, segment_blocks: int) -> bytes:
    return b"".join(container.put_varint(v) for v in (PREDICTOR_REVISION, level, block_size, primer_id,
                                                       segment_blocks))


def _new_model(level: int, primed: bool, revision: int = PREDICTOR_REVISION) -> BlockCoder:
    """A fresh model for a stream of `revision`; both sides build it the same way."""
    config = LEVELS[level]
    if isinstance(config, FastLevel):
        return FastModel(config)
    coder = MixingCoder(config, words=revision < _WORDS_BEFORE)
    if primed:
        coder.model.prime(_primer.text())
        for name, value in _primer.prior(MIXING_REVISION).items():
            target = getattr(coder.model, name)
            if target.shape != value.shape:
                raise FormatError(f"the built-in prior does not fit level {level} ({name}); reinstall latentzip")
            target[:] = value
    return coder


class _Start:
    """The state every segment of a stream starts from. A primed model is built once and
    copied for each segment but the last, which takes it (a stream of one segment makes
    no copy); a plain one is built afresh, as cheap as a copy. The copies are written
    over the models of segments already done (see `job`), so a long stream faults in
    fresh memory for as many models as run at once, not for every segment."""

    def __init__(self, level: int, primed: bool, revision: int = PREDICTOR_REVISION) -> None:
        self.level, self.revision = level, revision
        self._primed = _new_model(level, True, revision) if primed else None
        self._done: list[MixingCoder] = []  # filled from the threads, emptied here: list ops are atomic

    def model(self, last: bool) -> BlockCoder:
        primed = self._primed
        if not isinstance(primed, MixingCoder):
            return _new_model(self.level, False, self.revision)
        if last:
            self._primed = None
            self._done.clear()
            return primed
        return primed.copy(self._done.pop() if self._done else None)

    def job(self, last: bool, work: Callable[[BlockCoder, Watch], Result]) -> Callable[[Watch], Result]:
        """A pipeline job that does `work` with the next segment's model, then hands the
        model back for a later segment's copy. A primed segment's model is made here, in
        the caller's thread: jobs must not copy the primed model as the last one takes
        it. A fresh one is made in the job's thread, so that a second thread faults in
        its tables while the first already codes, rather than starting after them."""
        if self._primed is None:
            return lambda watch: work(self.model(last), watch)
        model = self.model(last)

        def run(watch: Watch) -> Result:
            result = work(model, watch)
            if isinstance(model, MixingCoder) and self._primed is not None:
                self._done.append(model)
            return result

        return run


def worker_memory(level: int) -> int:
    """Bytes one thread holds at `level`: its model and its segment's buffers (known
    without building a model, which would cost a second thread's start-up)."""
    config = LEVELS[level]
    model = FastModel.memory(config) if isinstance(config, FastLevel) else Model.memory(config)
    return model + 3 * SEGMENT_SIZE


def threads_for(level: int, threads: int = 0, memory: int | None = None) -> int:
    """How many threads code at `level`: `threads` (0: one per core), fewer if their
    models would take more than `memory` bytes (default: a quarter of physical memory),
    and never fewer than one."""
    wanted = _checked_threads(threads) or cores()
    if wanted == 1:
        return 1
    limit = memory if memory is not None else total_memory() // MEMORY_SHARE
    if limit <= 0:
        return 1 if memory is not None else wanted
    return max(1, min(wanted, limit // worker_memory(level)))


def _checked_threads(threads: int) -> int:
    if threads < 0:
        raise ValueError(f"threads must be 0 (one per core) or more, not {threads}")
    return threads


def _segment_blocks(block_size: int) -> int:
    """Blocks a segment holds when the input's length is not known."""
    return -(-SEGMENT_SIZE // block_size)


def layout(size: int | None, block_size: int | None = None) -> tuple[int, int]:
    """(block size, blocks a segment) for an input of `size` bytes (None: not known).
    An input of several segments gets segments of equal length, all of whole blocks of
    `block_size` or, when that is None, of equal blocks of at most BLOCK_SIZE; otherwise
    segments of SEGMENT_SIZE rounded up to blocks of `block_size` or BLOCK_SIZE."""
    fixed = block_size if block_size is not None else BLOCK_SIZE
    if size is None or size <= fixed * _segment_blocks(fixed):
        return fixed, _segment_blocks(fixed)
    segments = -(-size // (fixed * _segment_blocks(fixed)))
    share = -(-size // segments)
    blocks = -(-share // fixed)
    return (fixed if block_size is not None else -(-share // blocks)), blocks


class Compressor:
    """Compress a stream incrementally: feed `compress(chunk)`, finish with `flush()`.

    `threads` code segments side by side (0: one per core, see `threads_for` for how
    `memory` caps them); the output is the same for any number."""

    def __init__(self, level: int = DEFAULT_LEVEL, block_size: int | None = None,
                 progress: Progress | None = None, primer: bool | None = None,
                 threads: int = 0, memory: int | None = None, size: int | None = None) -> None:
        """`primer`: learn the built-in primer first (levels 6-9 only); None decides by
        input size. `block_size`: None chooses (see `layout`). `size`: the input's length
        when known in advance, so that its segments can be cut evenly; a stream that
        turns out longer or shorter is still coded correctly."""
        if level not in LEVELS:
            raise ValueError(f"level must be one of {min(LEVELS)}..{max(LEVELS)}, not {level}")
        if block_size is not None and not 0 < block_size <= (1 << LEVELS[level].history_bits) // 2:
            raise ValueError(f"block size must be between 1 and {(1 << LEVELS[level].history_bits) // 2} at level {level}")
        if size is not None and size < 0:
            raise ValueError(f"size must be at least 0, not {size}")
        self.level = level
        self.block_size, self._segment_blocks = layout(size, block_size)
        self.threads = threads_for(level, threads, memory)
        self.progress = progress
        self.primer = primer
        self.primed = False
        self._segment = self.block_size * self._segment_blocks
        self._start: _Start | None = None
        self._pipeline: Pipeline[tuple[bytes, int, int]] | None = None
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
        if self._start is None and len(self._pending) >= self._segment:
            out += self._header()
        while len(self._pending) >= self._segment:
            segment = bytes(self._pending[: self._segment])
            del self._pending[: self._segment]
            out += self._submit(segment, last=False)
        return bytes(out)

    def flush(self) -> bytes:
        """Compress what is left and close the stream."""
        if self._finished:
            raise ValueError("compressor already flushed")
        out = bytearray()
        if self._start is None:
            out += self._header()
        if self._pending:
            out += self._submit(bytes(self._pending), last=True)
            self._pending.clear()
        assert self._pipeline is not None
        out += self._records(self._pipeline.drain())
        self.close()
        self._finished = True
        out += container.end_record(self._total, self._crc)
        return bytes(out)

    def close(self) -> None:
        """Stop the threads of a stream that will not be flushed."""
        if self._pipeline is not None:
            self._pipeline.close()

    def _header(self) -> bytes:
        """The header, written before the first block once a segment (or all) is in hand."""
        # Levels that never prime skip the choice (it deflates the first MiB: 15 ms).
        self.primed = LEVELS[self.level].primed and (
            _primer.worth_priming(self._pending) if self.primer is None else self.primer)
        self._start = _Start(self.level, self.primed)
        self._pipeline = Pipeline(self.threads, self.progress)
        return container.bytes_header(_fields(self.level, self.block_size, _primer.PRIMER_ID if self.primed else 0,
                                              self._segment_blocks))

    def _submit(self, segment: bytes, last: bool) -> bytes:
        assert self._pipeline is not None and self._start is not None
        self._total += len(segment)
        self._crc = zlib.crc32(segment, self._crc)
        size = self.block_size
        job = self._start.job(last, lambda model, watch: _encode_segment(model, segment, size, watch))
        return self._records(self._pipeline.submit(job))

    def _records(self, done: list[tuple[bytes, int, int]]) -> bytes:
        for _, blocks, stored in done:
            self.blocks += blocks
            self.stored_blocks += stored
        return b"".join(records for records, _, _ in done)


def _encode_segment(model: BlockCoder, segment: bytes, block_size: int, watch: Watch) -> tuple[bytes, int, int]:
    """(the segment's block records, its blocks, how many of them are stored)."""
    out, stored = bytearray(), 0
    for begin in range(0, len(segment), block_size):
        block = segment[begin : begin + block_size]
        payload, mode = model.encode(block, watch), container.BLOCK_CODED
        if not payload:
            payload, mode = block, container.BLOCK_STORED
            stored += 1
        out += container.block_record(mode, payload, block)
    return bytes(out), -(-len(segment) // block_size), stored


class Decompressor:
    """Decompress a stream incrementally; `eof` turns True after the end record.

    `threads` decode segments side by side (0: one per core, capped by `memory` as in
    `threads_for`); a stream written before segments existed decodes on one."""

    def __init__(self, progress: Progress | None = None, max_length: int | None = None,
                 threads: int = 0, memory: int | None = None) -> None:
        """`max_length`: the most bytes the stream may restore. A stream that declares
        more raises LimitError before the bytes past it are decoded, as zlib's and
        zstandard's caps let a service bound what one request costs."""
        if max_length is not None and max_length < 0:
            raise ValueError(f"max_length must be at least 0, not {max_length}")
        _checked_threads(threads)  # how many it can have is known from the header's level
        self.progress = progress
        self.max_length = max_length
        self._threads, self._memory = threads, memory
        self._buf = bytearray()
        self._start: _Start | None = None
        self._pipeline: Pipeline[list[bytes]] | None = None
        self._model: BlockCoder | None = None  # one model for the whole stream (revisions before 6)
        self._group: list[container.BlockRecord] = []
        self._segment_blocks = 0
        self.level: int | None = None
        self._block_size = 0
        self._declared = 0
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
        if self._start is None and not self._read_header():
            return b""
        pos = 0
        try:
            while not self.eof:
                got = container.parse_record(self._buf, pos, self._block_size, self._block_size * 2 + 64)
                if got is None:
                    break
                record, pos = got
                if record.mode < 0:
                    out += self._flush_group(final=True)
                    self._finish(record)
                    if pos != len(self._buf):
                        raise FormatError("unexpected data after the end of the latentzip stream")
                else:
                    out += self._take(record)
        except BaseException:
            self.close()
            raise
        del self._buf[:pos]
        return bytes(out)

    def finish(self) -> None:
        """Raise FormatError unless the whole stream, end record included, was read."""
        if not self.eof:
            self.close()
            raise FormatError("latentzip file is truncated (no end record)")

    def close(self) -> None:
        """Stop the threads of a stream that will not be read to its end."""
        if self._pipeline is not None:
            self._pipeline.close()

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
        segment_blocks = reader.varint() if revision >= 6 else 0
        if level not in LEVELS:
            raise FormatError(f"latentzip file is corrupt (unknown level {level})")
        window = 1 << LEVELS[level].history_bits
        if not 0 < block_size <= window // 2:
            raise FormatError("latentzip file is corrupt (bad block size)")
        if revision >= 6 and not 0 < segment_blocks <= _segment_blocks(block_size):
            raise FormatError("latentzip file is corrupt or needs another build (unknown segment size)")
        if primer_id not in (0, _primer.PRIMER_ID) or (primer_id and not LEVELS[level].primed):
            raise FormatError(f"latentzip file is corrupt or needs another build (unknown primer {primer_id})")
        del self._buf[:used]
        self.level, self._block_size, self._segment_blocks = level, block_size, segment_blocks
        self._start = _Start(level, primer_id != 0, revision)
        if segment_blocks:
            self._pipeline = Pipeline(threads_for(level, self._threads, self._memory), self.progress)
        else:
            self._model = self._start.model(last=True)
        return True

    def _take(self, record: container.BlockRecord) -> bytes:
        """Restore a block now (one model for the stream) or once its segment is complete."""
        self._declared += record.n
        if self.max_length is not None and self._declared > self.max_length:
            raise LimitError(f"the latentzip stream restores more than max_length={self.max_length} bytes")
        _check(record)
        if self._model is not None:
            return self._checked([_restore(self._model, record, self.progress)])
        self._group.append(record)
        return self._flush_group(final=False)

    def _flush_group(self, final: bool) -> bytes:
        """Start decoding the segment in hand once it is complete (or the stream ended);
        at the end, wait for every segment."""
        if self._pipeline is None:
            return b""
        done = []
        if self._group and (final or len(self._group) == self._segment_blocks):
            group, self._group = self._group, []
            assert self._start is not None
            done = self._pipeline.submit(self._start.job(
                final, lambda model, watch: [_restore(model, record, watch) for record in group]))
        if final:
            done += self._pipeline.drain()
        return b"".join(self._checked(blocks) for blocks in done)

    def _checked(self, blocks: list[bytes]) -> bytes:
        for data in blocks:
            self._total += len(data)
            self._crc = zlib.crc32(data, self._crc)
        return b"".join(blocks)

    def _finish(self, record: container.BlockRecord) -> None:
        if record.n != self._total or record.data_crc != self._crc:
            raise FormatError("latentzip file is damaged (total length or checksum of the restored data differs)")
        self.close()
        self.eof = True


def _check(record: container.BlockRecord) -> None:
    """Refuse a block whose lengths cannot be right, as soon as it is read."""
    if record.mode == container.BLOCK_STORED and len(record.payload) != record.n:
        raise FormatError("latentzip file is corrupt (stored block has the wrong length)")
    if record.mode == container.BLOCK_CODED and record.n > _CODED_RATIO * (len(record.payload) + _CODER_STATE):
        raise FormatError("latentzip file is corrupt (a coded block declares more bytes than its payload can hold)")


def _restore(model: BlockCoder, record: container.BlockRecord, progress: Progress | None) -> bytes:
    """One block's bytes (checked by `_check`), checked against its CRC; `model` learns them."""
    if record.mode == container.BLOCK_STORED:
        data = record.payload
        model.learn(data, progress)
    else:
        data = model.decode(record.payload, record.n, progress)
    if container.crc32(data) != record.data_crc:
        raise FormatError("restored data does not match its checksum: the file is damaged "
                          "or was written by an incompatible build")
    return data


def compress(data: bytes, level: int = DEFAULT_LEVEL, primer: bool | None = None, threads: int = 0,
             memory: int | None = None) -> bytes:
    """Compress bytes into one latentzip byte file."""
    c = Compressor(level, primer=primer, threads=threads, memory=memory, size=len(data))
    try:
        return c.compress(bytes(data)) + c.flush()
    finally:
        c.close()


def decompress(blob: bytes, max_length: int | None = None, threads: int = 0, memory: int | None = None) -> bytes:
    """Restore the bytes of a latentzip byte file; raise FormatError if it is damaged, and
    LimitError, before producing them, if it would restore more than `max_length` bytes."""
    d = Decompressor(max_length=max_length, threads=threads, memory=memory)
    try:
        out = d.decompress(bytes(blob))
        d.finish()
    finally:
        d.close()
    return out


def compress_stream(src: BinaryIO, dst: BinaryIO, level: int = DEFAULT_LEVEL,
                    progress: Progress | None = None, block_size: int | None = None,
                    primer: bool | None = None, threads: int = 0, memory: int | None = None,
                    size: int | None = None) -> Compressor:
    """Compress file object src into dst, block by block; return the finished Compressor.
    `size`: src's length when known (a file's), for even segments."""
    c = Compressor(level, block_size, progress, primer, threads, memory, size)
    try:
        while chunk := src.read(_CHUNK):
            dst.write(c.compress(chunk))
        dst.write(c.flush())
    finally:
        c.close()
    return c


def decompress_stream(src: BinaryIO, dst: BinaryIO, progress: Progress | None = None, threads: int = 0,
                      memory: int | None = None) -> Decompressor:
    """Decompress file object src into dst; every block is checked before it is written."""
    d = Decompressor(progress, threads=threads, memory=memory)
    try:
        while chunk := src.read(_CHUNK):
            dst.write(d.decompress(chunk))
        d.finish()
    finally:
        d.close()
    return d
