"""The fast levels (1-3): a small context-mixing model and a binary arithmetic coder,
compiled together so that a block is coded without a trip back to Python per bit.

The model follows the design of Matt Mahoney's lpaq1 (the code is our own): per bit,
a few hashed contexts (orders 2-4, and order 1 and the current word at higher levels) each
give an adaptive probability, looked up in 16-slot buckets chosen once per nibble so
that one cache line serves four bits; an order-0 probability and a match model (which
follows the last occurrence of the previous six bytes) add theirs. One mixer, its
weight set chosen by the partial byte, combines them in the logistic domain, and an
adaptive probability map by the previous byte refines the result. Once a match runs
to 32 bytes, a byte costs a single decision (is it the byte the match predicts?) until
the match breaks, so runs and long repeats cost little time and few bits. Every quantity
is an integer, so the decoder reproduces the encoder's probabilities on any machine.

The tables (tens of MB) are read at random, so the loop mostly waits for memory. While
the last bit of a nibble is coded, it asks the CPU for the cache lines of both buckets
the next nibble may use, and of both bytes that may come next (`prefetch`): about 10%
faster both ways, and the same bytes.

The coder is arith.py's binary arithmetic coder, compiled into the same loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..jit import njit, prefetch
from . import arith
from .arith import M32, coder_step
from .predict import APM_CENTRE, APM_STEPS, SQUASH, STRETCH, Fill, fill_zeroed, squash

# Context kinds a fast level may use.
O1, O2, O3, O4, WORD = range(1, 6)
MATCH_MIN = 6  # bytes a match must share before the match model follows it
MATCH_CAP = 15  # match lengths beyond this share one confidence
# From this match length on, a byte costs one decision (is it the expected byte?), and
# only when it is not are its 8 bits coded: runs and long repeats go 10-20x faster.
LONG_MATCH = 32
LONG_SLOTS = 16  # confidences of that decision, by match length / 32
APM_RATE = 7
# Counter learning rate 1/(n + 1.5) as 16384 / (2n + 3), n capped by the level's limit.
RATE = np.array([16384 // (2 * n + 3) for n in range(1024)], dtype=np.int64)
# Scalars a model carries between calls: columns of FastModel.scalars.
(X1, X2, X, IO, POS, C4, C8, WORDH, MPTR, MLEN, NSCALARS) = range(11)
# Bytes coded per call into compiled code: a few hundredths of a second, so signals are
# honoured and progress is reported while a block is coded.
CALL_BYTES = 1 << 15

Progress = Callable[[int], None]


@dataclass(frozen=True)
class FastLevel:
    """What one fast level spends: contexts, table sizes, learning rates."""

    contexts: tuple[int, ...]
    table_bits: int  # log2 of the counters per context (4 bytes each)
    history_bits: int  # log2 of the window the match model searches
    refine: bool  # whether the probability map by the previous byte refines the mix
    counter_limit: int = 255  # counters adapt at rate ~1/n with n capped here
    mixer_rate: int = 6
    primed: bool = False  # fast levels never learn the built-in primer


# Higher levels add contexts and a longer window. Tried on the tuning samples: without the
# probability map, or with 4x smaller tables, level 1 is 10-25% faster but takes more bits
# than xz -9e on the wiki sample; order 1 gains under 0.5%, order 6 as little.
FAST_LEVELS: dict[int, FastLevel] = {
    1: FastLevel((O2, O3, O4), 22, 22, True),
    2: FastLevel((O2, O3, O4, WORD), 22, 23, True),
    3: FastLevel((O1, O2, O3, O4, WORD), 22, 24, True),
}


def _parts(level: FastLevel) -> dict[str, tuple[int, type, Fill]]:
    """A fast level's arrays: (length, dtype, initial value) by name. What a model holds
    is known from this without building one (`FastModel.memory`)."""
    n = len(level.contexts)
    return {
        "params": (5, np.int64, np.array([level.table_bits, level.history_bits, level.counter_limit,
                                          level.mixer_rate, level.refine])),
        "counters": ((n << level.table_bits) + 256, np.uint32, 1 << 31),  # + order 0
        "weights": (256 * (n + 2), np.int64, (1 << 16) * 3 // 10),  # n + order 0 + match
        "apm": (APM_STEPS << 16 if level.refine else 0, np.uint16, APM_CENTRE),
        "match_table": (1 << (level.history_bits - 2), np.int64, 0),
        "match_counters": (2 * (MATCH_CAP + 1) + LONG_SLOTS, np.uint32, 1 << 31),
        "history": (1 << level.history_bits, np.uint8, 0),
        "hashes": (2 * n, np.int64, 0),  # per context: byte hash, bucket base
        "mix": (2 * (n + 2), np.int64, 0),  # per input of the mixer: its stretched probability, its counter
        "scalars": (NSCALARS, np.int64, 0),
    }


class FastModel:
    """The state of a fast level, carried from block to block of a stream."""

    def __init__(self, level: FastLevel) -> None:
        self.level = level
        # A tuple, not an array: its length is part of the kernel's type, so each level
        # gets a kernel compiled for its number of contexts (about 10% faster).
        self.kinds = tuple(level.contexts)
        for name, (length, dtype, fill) in _parts(level).items():
            array = np.zeros(length, dtype=dtype)
            fill_zeroed(array, fill)
            setattr(self, name, array)

    @staticmethod
    def memory(level: FastLevel) -> int:
        """Bytes a model of `level` holds."""
        return sum(length * np.dtype(dtype).itemsize for length, dtype, _ in _parts(level).values())

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.kinds, self.params, self.counters, self.weights, self.apm, self.match_table,
                self.match_counters, self.history, self.hashes, self.mix, self.scalars)

    def encode(self, data: bytes, progress: Progress | None = None) -> bytes:
        """Code one block; the model learns it. Returns the coder's bytes, or b"" when
        they would not be shorter than the block (it is then stored, and the model has
        learned it all the same)."""
        payload = np.zeros(len(data), dtype=np.uint8)
        # A writable copy: the kernel that decodes into `data` is the one that encodes it.
        self._run(False, np.frombuffer(data, dtype=np.uint8).copy(), payload, progress)
        return arith.finish(self.scalars[X1 : IO + 1], payload)

    def learn(self, data: bytes, progress: Progress | None = None) -> None:
        """Learn a block that was stored raw, exactly as coding it would have."""
        self.encode(data, progress)

    def decode(self, payload: bytes, n: int, progress: Progress | None = None) -> bytes:
        data = np.zeros(n, dtype=np.uint8)
        self._run(True, data, np.frombuffer(payload, dtype=np.uint8).copy(), progress)
        return data.tobytes()

    def _run(self, decoding: bool, data: np.ndarray, payload: np.ndarray, progress: Progress | None) -> None:
        arith.start(self.scalars[X1 : IO + 1], payload, decoding)
        for begin in range(0, len(data), CALL_BYTES):
            end = min(begin + CALL_BYTES, len(data))
            _code(decoding, data, begin, end, payload, *self.arrays())
            if progress is not None:
                progress(end - begin)


@njit(cache=True, nogil=True, inline="always")
def hash32(x: int, salt: int) -> int:
    """A 32-bit hash of a context value and a salt (multiply-xorshift)."""
    h = ((x + salt) * 0x9E3779B1) & M32
    h ^= h >> 15
    h = (h * 0x2C1B3C6D) & M32
    return h ^ (h >> 13)


@njit(cache=True, nogil=True, inline="always")
def context_hash(kind: int, c4: int, word: int) -> int:
    """The value a context of `kind` hashes, given the last four bytes and the word hash."""
    if kind == O1:
        return c4 & 0xFF
    if kind == O2:
        return c4 & 0xFFFF
    if kind == O3:
        return c4 & 0xFFFFFF
    if kind == O4:
        return c4
    return hash32(word, c4 & 0xFF)


@njit(cache=True, nogil=True, inline="always")
def next_word(word: int, byte: int) -> int:
    """The hash of the current word once `byte` is added (0 after a non-letter)."""
    return ((word + (byte | 32)) * 0x2F0F3) & M32 if 97 <= (byte | 32) <= 122 else 0


@njit(cache=True, nogil=True, inline="always")
def pushed(c4: int, c8: int, byte: int) -> tuple[int, int]:
    """The last four bytes and the four before them, once `byte` is added."""
    return ((c4 << 8) | byte) & M32, ((c8 << 8) | (c4 >> 24)) & M32


@njit(cache=True, nogil=True, inline="always")
def match_slot(c4: int, c8: int, history_bits: int) -> int:
    """The match table's entry for the last six bytes."""
    return hash32(c4, c8 & 0xFFFF) >> (34 - history_bits)


@njit(cache=True, nogil=True, inline="always")
def bucket(i: int, h: int, c0: int, table_bits: int) -> int:
    """Context i's 16-counter bucket for the nibble that starts at partial byte c0."""
    return (i << table_bits) | ((hash32(h, c0) >> (36 - table_bits)) << 4)


@njit(cache=True, nogil=True, inline="always")
def apm_row(c0: int, last: int) -> int:
    """Where the probability map's APM_STEPS entries for partial byte c0 after byte
    `last` begin."""
    return (c0 | (last << 8)) * APM_STEPS


@njit(cache=True, nogil=True, inline="always")
def train_counter(counters: np.ndarray, k: int, bit: int, limit: int) -> None:
    """Move counter k towards `bit`: a 22-bit probability over a 10-bit count, at rate
    ~1/(count + 1.5) with the count capped at `limit` (fast at first, then steady)."""
    e = np.int64(counters[k])
    n = e & 1023
    if n < limit:
        e += 1
    e += ((((bit << 22) - (e >> 10)) >> 3) * RATE[n]) & ~1023
    counters[k] = e & M32


@njit(cache=True, nogil=True)
def _code(decoding, data, begin, end, payload, kinds, params, counters, weights, apm, match_table, match_counters,
          history, hashes, mix, s) -> None:
    """Code bytes begin..end of a block: encode data[begin:end] into `payload` (from
    s[IO] on), or decode them from `payload` into data. One function for both sides, so
    the decoder cannot drift from the encoder; the hot state lives in locals."""
    n = len(kinds)
    m = n + 2
    table_bits, history_bits, limit, rate, refine = params[0], params[1], params[2], params[3], params[4]
    mask = len(history) - 1
    inputs, slots = mix[:m], mix[m:]  # both written before they are read, at every bit
    x1, x2, x, io = s[X1], s[X2], s[X], s[IO]
    c4, c8, word, mptr, mlen = s[C4], s[C8], s[WORDH], s[MPTR], s[MLEN]
    order0 = n << table_bits
    for t in range(begin, end):
        pos = s[POS] + t - begin
        byte = np.int64(data[t]) if not decoding else 0
        c0 = 1
        if mlen >= LONG_MATCH:
            # In a long repeat one decision says whether the byte is the one expected.
            guess = np.int64(history[mptr & mask])
            k = 2 * (MATCH_CAP + 1) + min(mlen >> 5, LONG_SLOTS - 1)
            p = max(np.int64(match_counters[k]) >> 20, 1)
            hit, x1, x2, x, io = coder_step(decoding, 1 if byte == guess else 0, p, x1, x2, x, io, payload)
            train_counter(match_counters, k, hit, 1023)
            if hit:
                c0 = guess | 256
            else:
                mlen = 0
        expected = np.int64(history[mptr & mask]) | 256 if mlen > 0 else 0
        for j in range(8 if c0 == 1 else 0):
            # --- predict
            if j == 0 or j == 4:
                for i in range(n):
                    hashes[n + i] = bucket(i, hashes[i], c0, table_bits)
            elif j == 3:
                # The next nibble's buckets are one of two: ask for both now, so that
                # their cache lines load while this bit is coded (the result is the same).
                for i in range(n):
                    prefetch(counters, bucket(i, hashes[i], c0 << 1, table_bits))
                    prefetch(counters, bucket(i, hashes[i], (c0 << 1) | 1, table_bits))
            elif j == 7:
                # Likewise the next byte's first buckets, its first map entry and its match slot.
                for b in range(2):
                    nxt = ((c0 << 1) | b) & 255
                    n4, n8 = pushed(c4, c8, nxt)
                    nw = next_word(word, nxt)
                    for i in range(n):
                        prefetch(counters, bucket(i, context_hash(kinds[i], n4, nw), 1, table_bits))
                    if refine:
                        prefetch(apm, apm_row(1, nxt))
                    prefetch(match_table, match_slot(n4, n8, history_bits))
            nib = c0 if j < 4 else (1 << (j - 4)) | (c0 & ((1 << (j - 4)) - 1))
            for i in range(n):
                k = hashes[n + i] | nib
                slots[i] = k
                inputs[i] = STRETCH[counters[k] >> 20]
            slots[n] = order0 + c0
            inputs[n] = STRETCH[counters[order0 + c0] >> 20]
            slots[n + 1] = -1
            inputs[n + 1] = 0
            if mlen > 0:
                if (expected >> (8 - j)) == c0:
                    k = min(mlen, MATCH_CAP) * 2 + ((expected >> (7 - j)) & 1)
                    slots[n + 1] = k
                    inputs[n + 1] = STRETCH[match_counters[k] >> 20]
                else:
                    mlen = 0
            w = c0 * m
            dot = 0
            for i in range(m):
                dot += inputs[i] * weights[w + i]
            pm = squash(dot >> 16, SQUASH)
            p, a, wt = pm, 0, 0
            if refine:
                st = STRETCH[pm] + 2048
                wt = st & 127
                a = apm_row(c0, c4 & 255) + (st >> 7)
                p = (pm + 3 * ((np.int64(apm[a]) * (128 - wt) + np.int64(apm[a + 1]) * wt) >> 11)) >> 2
                p = min(max(p, 1), 4095)
            # --- code
            bit, x1, x2, x, io = coder_step(decoding, (byte >> (7 - j)) & 1, p, x1, x2, x, io, payload)
            # --- learn
            for i in range(n + 1):
                train_counter(counters, slots[i], bit, limit)
            if slots[n + 1] >= 0:
                train_counter(match_counters, slots[n + 1], bit, 1023)
            err = ((bit << 12) - pm) * rate
            for i in range(m):
                weights[w + i] += (inputs[i] * err + 2048) >> 12
            if refine:
                a += wt >> 6
                apm[a] += (((bit << 16) + (bit << APM_RATE) - bit - bit) - np.int64(apm[a])) >> APM_RATE
            c0 = (c0 << 1) | bit
        # --- the byte is known: move every context on
        byte = c0 & 255
        if decoding:
            data[t] = byte
        history[pos & mask] = byte
        c4, c8 = pushed(c4, c8, byte)
        word = next_word(word, byte)
        for i in range(n):
            hashes[i] = context_hash(kinds[i], c4, word)
        # The match model: extend the match it follows, or look one up.
        if mlen > 0 and history[mptr & mask] == byte:
            mlen += 1
            mptr += 1
        else:
            mlen = 0
        h = match_slot(c4, c8, history_bits)
        if mlen == 0:
            cand = match_table[h]
            if cand > 0 and pos + 1 - cand < len(history) // 2:
                length = 0
                # Checking LONG_MATCH bytes back lets a verified match take the long-repeat path at once.
                while (length < LONG_MATCH and length < cand
                       and history[(cand - 1 - length) & mask] == history[(pos - length) & mask]):
                    length += 1
                if length >= MATCH_MIN:
                    mlen, mptr = length, cand
        match_table[h] = pos + 1
    s[X1], s[X2], s[X], s[IO] = x1, x2, x, io
    s[C4], s[C8], s[WORDH], s[MPTR], s[MLEN] = c4, c8, word, mptr, mlen
    s[POS] += end - begin
