"""Lock-step segment coding: the predictor of predict.py driving constriction's range coder.

A block is cut into segments that are coded side by side: step k codes bit k of every
segment. The model's tables are shared, so all segments learn from each other, but
the decoder needs only one Python-level round trip per step (predict every segment's
bit, decode them all in one constriction call, learn from them), not one per bit.

The encoder knows every bit in advance, so it runs many steps inside one compiled
loop, collects the probabilities, and hands them to constriction in one call, many
times a second. It calls the very same `step` the decoder calls, with the same
arguments, so both see the same probabilities.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import constriction

from ..errors import FormatError

from .predict import CALL_BITS, Level, Model, run_known, start, step

_FAMILY = constriction.stream.model.Bernoulli(perfect=False)
_SCALE = 1.0 / 4096.0


def _geometry(n: int, starts: np.ndarray) -> tuple[int, int, int]:
    """(segment length, length of the last segment, number of steps) of a block."""
    seg_len = int(starts[1] - starts[0]) if len(starts) > 1 else n
    last = n - int(starts[-1])
    return max(seg_len, 1), last, 8 * max(seg_len, 1) if n else 0


def encode_block(model: Model, data: bytes, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Compress one block with `model` (which learns from it); return the range coder's words.

    The compiled loop runs CALL_BITS decisions per call, and constriction codes them as
    they come: the same bitstream as one call per block, in a fraction of the memory,
    with a return to Python (signals, `progress` in bytes) many times a second."""
    n = len(data)
    encoder = constriction.stream.queue.RangeEncoder()
    if n == 0:
        return encoder.get_compressed()
    seg, ctx, scratch = model.begin_block(n)
    starts = model.segments(n)
    seg_len, last, n_steps = _geometry(n, starts)
    start(*model.state(), seg, ctx)
    source = np.frombuffer(data, dtype=np.uint8)
    per_call = max(1, min(CALL_BITS // len(starts), n_steps + 1))
    bits = np.zeros(len(starts), dtype=np.int32)
    out_bits = np.zeros(per_call * len(starts), dtype=np.int32)
    out_probs = np.zeros(per_call * len(starts), dtype=np.float64)
    reported = 0
    for k in range(0, n_steps + 1, per_call):
        end = min(k + per_call, n_steps + 1)
        count = run_known(source, starts, seg_len, last, n_steps, k, end, bits, out_bits, out_probs,
                          *model.state(), seg, ctx, scratch, model.stream_pos, n)
        if count:
            encoder.encode(out_bits[:count], _FAMILY, out_probs[:count])
        if progress is not None:
            done = n * min(end, n_steps) // n_steps
            progress(done - reported)
            reported = done
    model.stream_pos += n
    return encoder.get_compressed()


def decode_block(model: Model, words: np.ndarray, n: int,
                 progress: Callable[[int], None] | None = None) -> bytes:
    """Decompress one block of n bytes that `encode_block` produced with an identical model."""
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
    mask = len(history) - 1
    out = history[(np.arange(base, base + n) & mask)].tobytes()
    model.stream_pos += n
    if progress is not None:
        progress(n - reported)
    return out


class MixingCoder:
    """Levels 4-9: the mixing predictor of predict.py driving constriction's coder, with
    the interface every level's coder has (see `lossless.BlockCoder`)."""

    def __init__(self, level: Level) -> None:
        self.model = Model(level)

    def copy(self) -> "MixingCoder":
        """An independent coder in the same state."""
        twin = MixingCoder.__new__(MixingCoder)
        twin.model = self.model.copy()
        return twin

    def encode(self, data: bytes, progress: Callable[[int], None] | None = None) -> bytes:
        """The coded block, or b"" when it would not be shorter (the model learned it anyway)."""
        payload = encode_block(self.model, data, progress).astype("<u4").tobytes()
        return payload if len(payload) < len(data) else b""

    def learn(self, data: bytes, progress: Callable[[int], None] | None = None) -> None:
        encode_block(self.model, data, progress)

    def decode(self, payload: bytes, n: int, progress: Callable[[int], None] | None = None) -> bytes:
        if len(payload) % 4:
            raise FormatError("latentzip file is corrupt (coded block is not whole words)")
        try:
            return decode_block(self.model, np.frombuffer(payload, dtype="<u4").astype(np.uint32), n, progress)
        except AssertionError:  # constriction's word for a bitstream no model could have made
            raise FormatError("latentzip file is corrupt (the coded data cannot be decoded)") from None
