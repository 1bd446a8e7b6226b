"""Lock-step segment coding: the predictor of predict.py driving a binary arithmetic coder.

A block is cut into segments that are coded side by side: step k codes bit k of every
segment. The model's tables are shared, so all segments learn from each other.

Since predictor revision 7 the coder is arith.py's, compiled into one loop with the
model (`predict.code_steps`), so neither side returns to Python per decision: a block
is coded in calls of CALL_BITS steps, which come back often enough for signals and
progress and release the GIL, so that segments code side by side on threads. Deep in
a repeat, a byte costs a single decision (see `predict.code_steps`). Files of
earlier revisions were coded with constriction's range coder, one Python-level round
trip per step; `decode_words` still reads them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import constriction

from ..errors import FormatError

from . import arith
from .predict import CALL_BITS, Level, Model, code_steps, start, step

Progress = Callable[[int], None]
_FAMILY = constriction.stream.model.Bernoulli(perfect=False)


def _geometry(n: int, starts: np.ndarray) -> tuple[int, int, int]:
    """(segment length, length of the last segment, number of steps) of a block."""
    seg_len = int(starts[1] - starts[0]) if len(starts) > 1 else n
    last = n - int(starts[-1])
    return max(seg_len, 1), last, 8 * max(seg_len, 1) if n else 0


def _code(model: Model, decoding: bool, data: np.ndarray, n: int, payload: np.ndarray,
          progress: Progress | None) -> np.ndarray:
    """Code a block of n bytes with `model`, which learns it: encode `data` into `payload`,
    or decode `payload` (then `data` is not read). Returns the coder's final state."""
    coder = np.zeros(4, dtype=np.int64)
    arith.start(coder, payload, decoding)
    if n == 0:
        return coder
    seg, ctx, scratch = model.begin_block(n)
    starts = model.segments(n)
    seg_len, last, n_steps = _geometry(n, starts)
    start(*model.state(), seg, ctx)
    lanes = np.zeros((len(starts), 3), dtype=np.int64)
    per_call = max(1, CALL_BITS // len(starts))
    reported = 0
    for k in range(0, n_steps + 1, per_call):
        end = min(k + per_call, n_steps + 1)
        code_steps(decoding, data, starts, seg_len, last, n_steps, k, end, lanes, *model.state(), seg, ctx,
                   scratch, model.stream_pos, n, payload, coder)
        if progress is not None:
            done = n * min(end, n_steps) // n_steps
            progress(done - reported)
            reported = done
    model.stream_pos += n
    return coder


def encode_block(model: Model, data: bytes, progress: Progress | None = None) -> bytes:
    """Compress one block with `model` (which learns from it); b"" when the result would
    not be shorter than the block (it is then stored, and the model has learned it all
    the same)."""
    payload = np.zeros(len(data), dtype=np.uint8)
    # Writable arrays on both sides, so that numba compiles code_steps for one signature.
    coder = _code(model, False, np.frombuffer(data, dtype=np.uint8).copy(), len(data), payload, progress)
    return arith.finish(coder, payload)


def decode_block(model: Model, payload: bytes, n: int, progress: Progress | None = None) -> bytes:
    """Decompress one block of n bytes that `encode_block` produced with an identical model."""
    base = model.stream_pos
    _code(model, True, np.zeros(0, dtype=np.uint8), n, np.frombuffer(payload, dtype=np.uint8).copy(), progress)
    return _restored(model, base, n)


def _restored(model: Model, base: int, n: int) -> bytes:
    """The n bytes a block left in the model's history from stream position `base` on."""
    return model.history[np.arange(base, base + n) & (len(model.history) - 1)].tobytes()


def decode_words(model: Model, words: np.ndarray, n: int, progress: Progress | None = None) -> bytes:
    """Decompress a block of n bytes coded before revision 7, with constriction's range coder."""
    if n == 0:
        return b""
    decoder = constriction.stream.queue.RangeDecoder(words)
    seg, ctx, scratch = model.begin_block(n)
    starts = model.segments(n)
    seg_len, last, n_steps = _geometry(n, starts)
    ints, tables, history = model.state()
    base = model.stream_pos
    start(ints, tables, history, seg, ctx)
    n_seg = len(starts)
    bits = np.zeros(n_seg, dtype=np.int32)
    probs = np.zeros(n_seg, dtype=np.float64)
    n_prev = t_prev = 0
    decode = decoder.decode
    report_every = 8 * 4096
    reported = 0
    # One round trip per step: the loop body is kept lean, as it runs 8 times a byte.
    for k in range(n_steps + 1):
        t = k >> 3
        n_now = 0 if k == n_steps else (n_seg if t < last else n_seg - 1)
        step(bits, n_prev, t_prev, probs, n_now, t, ints, tables, history, seg, ctx, scratch, base, seg_len, n)
        if n_now == n_seg:
            bits = decode(_FAMILY, probs)
        elif n_now:
            bits[:n_now] = decode(_FAMILY, probs[:n_now])
        n_prev, t_prev = n_now, t
        if progress is not None and k % report_every == report_every - 1:
            progress(n_now * report_every // 8)
            reported += n_now * report_every // 8
    model.stream_pos += n
    if progress is not None:
        progress(n - reported)
    return _restored(model, base, n)


class MixingCoder:
    """Levels 4-9: the mixing predictor of predict.py and its coder, with the interface
    every level's coder has (see `lossless.BlockCoder`). `words`: the file predates
    revision 7, so its blocks are constriction's words and its predictor that of those
    revisions (decoding only)."""

    def __init__(self, level: Level, words: bool = False) -> None:
        self.model = Model(level)
        self.words = words
        if words:
            self.model.keep_shared_matches()

    def copy(self, over: "MixingCoder | None" = None) -> "MixingCoder":
        """An independent coder in the same state (written over `over`, see `Model.copy`)."""
        twin = MixingCoder.__new__(MixingCoder) if over is None else over
        twin.model, twin.words = self.model.copy(over.model if over is not None else None), self.words
        return twin

    def encode(self, data: bytes, progress: Progress | None = None) -> bytes:
        """The coded block, or b"" when it would not be shorter (the model learned it anyway)."""
        return encode_block(self.model, data, progress)

    def learn(self, data: bytes, progress: Progress | None = None) -> None:
        encode_block(self.model, data, progress)

    def decode(self, payload: bytes, n: int, progress: Progress | None = None) -> bytes:
        if not self.words:
            return decode_block(self.model, payload, n, progress)
        if len(payload) % 4:
            raise FormatError("latentzip file is corrupt (coded block is not whole words)")
        try:
            return decode_words(self.model, np.frombuffer(payload, dtype="<u4").astype(np.uint32), n, progress)
        except AssertionError:  # constriction's word for a bitstream no model could have made
            raise FormatError("latentzip file is corrupt (the coded data cannot be decoded)") from None
