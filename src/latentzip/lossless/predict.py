"""The bit predictor: many cheap context models, mixed by small learned networks.

Read top to bottom:

1. fixed-point helpers: probabilities are 12-bit integers, logits ("stretch") are
   integers in [-2047, 2047] in units of 1/256;
2. the per-level configuration (`Level`) and the model state (`Model`), plain NumPy
   arrays so that numba can work on them;
3. `predict` and `update` for one segment and one bit; `code_steps`, which codes a
   block's steps through the compiled coder (arith.py), and `step`, which advances every
   segment by one bit for the range coder of files before revision 7 (coder.py);
   `prime_run`, which only counts a text.

Every quantity that decides a probability is an integer, so the decoder, which runs
the very same `step`, reproduces the encoder's probabilities exactly on any machine.
The model learns online; no weights are stored in a file. It may start from the
built-in primer (primer.py), which every decoder has too.

The byte is coded as 8 binary decisions, most significant bit first. The inputs to the
mixer are:
  * per hashed context (orders 1-6 and 8, sparse and skip contexts, one to three
    words and a word pair that skips one, the column of a text line, the indentation
    of code, the last markup tag or bracket, the byte the match model expects, and two
    indirect contexts: what followed the last one and two bytes the last times they
    occurred) an adaptive counter, looked up in nibble-sized buckets so that one cache
    line serves four bits, given to the mixer four ways: stretched, on a linear scale,
    through a learned map of its recent bits and age (a bit history), and as a run:
    the last byte seen in the context and how often in a row, through a learned map;
    one of the contexts is the pattern of the last six byte classes (letter, digit,
    space, punctuation...) with the previous byte;
  * an order-0 counter;
  * a match model that follows the longest recent repeat of the last bytes (its
    learned confidence, and its length signed by the expected bit);
  * a decaying summary of the recent byte classes, hashed with the previous byte, as
    one more context: a cheap sense of "what kind of text am I in". It is a hashed
    context, not a trained recurrent network.
The network that mixes them has two layers: ten first-layer mixers whose weight sets
are chosen by different small contexts (partial byte; match length and partial byte;
previous byte and bit position; how many contexts were seen before and bit position;
the byte before that; the byte-class summary and the indentation; the classes of the
last two bytes and bit position; the current word; the previous word; a hash of the
last three bytes), and a final mixer, with weights chosen by the partial byte, over
their outputs. All weights are integers trained online by the same rule on both sides
(updates are rounded, not floored, so small errors do not drag weights down). Four
adaptive probability maps (SSE, by order 0, 1, 2 and hashed 3) refine the result,
averaged with it, before it reaches the coder.

Tried and not kept (none gained more than 0.05% on the tuning samples unless said):
counter limits 40, 60, 100 and 1000 instead of 250, mixer rates 6, 8, 13 and 16, SSE
rates 900, 2000 and 3000 and count-based SSE rates (+0.2-0.5%), other SSE weightings, a
learned mix of the SSE outputs (+0.1%), an SSE stage on the match state, a bias input,
an order-7 context, a word-or-previous-word context, mixer weight sets chosen by the
order-2 context, the last two words or the match state in the final mixer, 2x larger
tables (-0.06%, or -0.2% when primed, for 2x the memory). A small LSTM (32 or 64
cells, trained online by truncated back-propagation, its bit prediction one more
mixer input) gained 0.04% and 0.1% on the second tuning prose sample, at up to half
the speed. The indirect and match-byte contexts cost prose about 0.4% together, but
gain more on wiki and Python.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np

from ..jit import njit
from .arith import M32, coder_step

# --- 1. fixed-point helpers --------------------------------------------------------------

# Bumped whenever this predictor changes what it predicts; the built-in prior is made for it.
REVISION = 4
PROB_BITS = 12
PROB_ONE = 1 << PROB_BITS


def _squash_table() -> np.ndarray:
    """squash(x) = 4096 / (1 + exp(-x/256)) for x in [-2047, 2047], as integers."""
    x = np.arange(-2047, 2048)
    return np.array([min(4095, max(1, round(4096 / (1 + math.exp(-v / 256))))) for v in x], dtype=np.int32)


def _stretch_table(squash: np.ndarray) -> np.ndarray:
    """stretch = the inverse of squash, built from it by search so both agree exactly."""
    out = np.zeros(PROB_ONE, dtype=np.int32)
    pi = 0
    for x in range(-2047, 2048):
        v = int(squash[x + 2047])
        for p in range(pi, v + 1):
            out[p] = x
        pi = v + 1
    out[pi:] = 2047
    return out


SQUASH = _squash_table()
STRETCH = _stretch_table(SQUASH)
# Counter ages (up to 255) in 16 roughly logarithmic buckets, for the bit-history maps.
AGE_BUCKET = np.searchsorted([1, 2, 3, 4, 5, 7, 10, 14, 20, 28, 40, 56, 80, 112, 160], np.arange(256),
                             side="right").astype(np.int64)
# Counter learning rates 2/(2n+3) in 16-bit fixed point: fast at first, then slower.
RATE = np.array([(2 << 16) // (2 * n + 3) for n in range(1024)], dtype=np.int64)


@njit(cache=True, nogil=True)
def squash(x: int, table: np.ndarray) -> int:
    if x > 2047:
        x = 2047
    if x < -2047:
        x = -2047
    return table[x + 2047]


@njit(cache=True, nogil=True)
def mix32(h: int) -> int:
    """A 32-bit integer hash (multiply-xorshift); every product stays below 2**63."""
    h &= M32
    h ^= h >> 16
    h = (h * 0x45D9F3B) & M32
    h ^= h >> 16
    h = (h * 0x45D9F3B) & M32
    h ^= h >> 16
    return h


@njit(cache=True, nogil=True)
def combine(h: int, x: int) -> int:
    return mix32((h & M32) * 0x2F0B4C27 + (x & M32) + 0x9E3779B)


# --- 2. configuration and state -------------------------------------------------------

# Context kinds; a level uses a subset of them (`Level.contexts`).
(O1, O2, O3, O4, O5, O6, O8, WORD, WORD2, SPARSE, COLUMN, RECUR, SKIP, INDENT, WORD3, MATCHED, IND1, IND2, WORDSKIP,
 TAG, MASK) = range(21)
N_KINDS = 21


@dataclass(frozen=True)
class Level:
    """What one compression level spends: contexts, table sizes, learning rates."""

    contexts: tuple[int, ...]
    table_bits: int  # log2 of the buckets per context table (64 bytes each)
    history_bits: int  # log2 of the match model's history window
    match_min: int  # bytes of context a match must share before it is followed
    counter_limit: int  # counters adapt at rate ~1/n with n capped here
    mixer_rate: int  # first-layer mixer learning rate
    max_segments: int  # lock-step segments per block (decoder speed vs. ratio)
    min_segment: int  # smallest segment worth splitting off
    primed: bool = False  # whether the model may learn the built-in primer before coding


# Levels 4-9 (levels 1-3 are the fast model of fast.py). Segment counts shape decoding
# speed, tables shape memory; every level stays under 2 GB. From level 6 up, a block is one segment and the model may start from the built-in primer
# (primer.py); levels 7-9 look for repeats further back (a larger window, like xz's
# dictionary, which only matters beyond 16 MB of input) and 9 follows only longer ones.
_ALL = (O1, O2, O3, O4, O5, O6, O8, WORD, WORD2, WORD3, WORDSKIP, SPARSE, COLUMN, RECUR, SKIP, INDENT, MATCHED, IND1,
        IND2, TAG, MASK)
LEVELS: dict[int, Level] = {
    4: Level((O1, O2, O3, O4, O5, O6, WORD, WORD2, SPARSE, INDENT), 20, 23, 6, 250, 10, 16, 1 << 14),
    5: Level(_ALL, 20, 24, 6, 250, 10, 8, 1 << 15),
    6: Level(_ALL, 20, 24, 6, 250, 10, 1, 1 << 16, primed=True),
    7: Level(_ALL, 20, 25, 6, 250, 10, 1, 1 << 16, primed=True),
    8: Level(_ALL, 20, 26, 6, 250, 10, 1, 1 << 16, primed=True),
    9: Level(_ALL, 20, 26, 8, 250, 10, 1, 1 << 16, primed=True),
}
DEFAULT_LEVEL = 6

# Per-segment scalar state: columns of Model.seg.
(C0, C4, C8, POS, END, WORD0, WORD1, WORD_OLDER, MPTR, MLEN, LINE, LINE_PREV, RSTATE, NIB,
 INDENT_NOW, INDENT_PREV, LEADING, EXPECT, TAGH, TAGLEN, CLASSES, STALE, NFIELDS) = range(23)

N_MIXERS = 10
# Weight sets of each first-layer mixer: the partial byte; match length x partial byte;
# the previous byte x bit position; how many contexts have been seen before x bit
# position; the byte before the previous one; the byte-class summary x indentation; the
# classes of the last two bytes x bit position; the current word; the previous word; the
# last three bytes (hashed).
MIXER_SETS = (256, 8 * 256, 256 * 8, 16 * 8, 256, 1024, 13 * 13 * 8, 2048, 2048, 4096)
MIXER_BASE = tuple(sum(MIXER_SETS[:m]) for m in range(N_MIXERS))
# Scratch kept between predict and update of one bit: columns of Model.scratch.
S_M0 = 0
S_OUT0 = S_M0 + N_MIXERS
S_PMIX, S_A1, S_A2, S_A3, S_MSM, S_FSEL, S_A4 = range(S_OUT0 + N_MIXERS, S_OUT0 + N_MIXERS + 7)
NSCRATCH = S_A4 + 1

# The int64 arrays of a Model, in the order they sit in its one buffer (Model.ints).
PARTS = ("params", "kinds", "order0", "history_map", "indirect", "match_table", "match_sm", "weights",
         "final_weights", "apm1", "apm2", "long_sm")
(P_PARAMS, P_KINDS, P_ORDER0, P_HISTORY_MAP, P_INDIRECT, P_MATCH_TABLE, P_MATCH_SM, P_WEIGHTS, P_FINAL_WEIGHTS,
 P_APM1, P_APM2, P_LONG_SM) = range(len(PARTS))

N_EXTRA = 3  # mixer inputs besides the contexts: order-0 and two from the match model
PER_CTX = 4  # mixer inputs per context: stretched counter, bit history, linear counter, run
APM_STEPS = 33
# An adaptive probability map's row before it learns: squash at APM_STEPS points of the
# stretched domain, so that it first passes the probability it refines unchanged (p16).
APM_CENTRE = SQUASH[np.clip((np.arange(APM_STEPS) - 16) * 128, -2047, 2047) + 2047].astype(np.int64) * 16
MATCH_LEN_CAP = 15
# From this match length on, a byte costs one decision (is it the byte the match
# expects?), and only when it is not are its 8 bits coded: runs and long repeats go
# many times faster, as at the fast levels. Skipped bytes teach the model nothing, which
# costs text: on 300 KB of the primer's text at level 6, 1.85% more bytes from 32 on,
# 0.08% from 128, none from 256 or 512. The decision's confidence is learned by match
# length / 32, capped at LONG_SLOTS - 1.
LONG_MATCH = 256
LONG_SLOTS = 16
# Bits coded, and primer bytes learned, per call into compiled code: a few hundredths of
# a second each (a few tenths for the first calls, which fault in fresh tables), so
# that signals (Ctrl-C, SIGTERM) are honoured and progress is reported while a block
# is coded; a call costs microseconds, so speed does not change.
CALL_BITS = 1 << 14
PRIME_CALL_BYTES = 1 << 13


COPY_SLICE_BYTES = 1 << 25  # a few hundredths of a second to copy, page faults included


def _write_in_slices(target: np.ndarray, source: np.ndarray | int) -> None:
    """target[:] = source (an array as long, or a number), a slice at a time: one call
    over a gigabyte, or a compiled loop that faults a gigabyte of fresh pages in, would
    hold off Ctrl-C and SIGTERM for seconds, since Python runs signal handlers between
    calls."""
    step = COPY_SLICE_BYTES // target.itemsize
    for begin in range(0, len(target), step):
        target[begin : begin + step] = source if isinstance(source, int) else source[begin : begin + step]


def _inputs(level: Level) -> int:
    return PER_CTX * len(level.contexts) + N_EXTRA


def _table_length(level: Level) -> int:
    return (len(level.contexts) << level.table_bits) * 16


Fill = int | np.ndarray  # an array's initial value: one number, or a pattern repeated over it


def fill_zeroed(array: np.ndarray, fill: Fill) -> None:
    """Set a zeroed array to its initial value (zero is left alone: fresh zeroed memory
    costs nothing until it is used)."""
    if isinstance(fill, np.ndarray):
        array.reshape(-1, len(fill))[:] = fill
    elif fill:
        array[:] = fill


def _parts(level: Level) -> dict[str, tuple[int, Fill]]:
    """The int64 parts of a model of `level`, in the order of PARTS: (length, initial value)."""
    n_ctx = len(level.contexts)
    w0 = (1 << 16) * 3 // (_inputs(level) * 2)
    return {
        "params": (6, np.array([level.table_bits, level.history_bits, level.match_min, level.counter_limit,
                                level.mixer_rate, 1])),  # the last: see `keep_shared_matches`
        "kinds": (n_ctx, np.array(level.contexts)),
        "order0": (256, 1 << 31),  # p16 << 16, by partial byte
        # Bit-history maps (1024 per context), then run maps (32 per context).
        "history_map": ((n_ctx << 10) + (n_ctx << 5), 1 << 15),
        # The two bytes that last followed each byte, then each pair of bytes.
        "indirect": (256 + 65536, 0),
        "match_table": (1 << (level.history_bits - 2), 0),
        "match_sm": (2 * (MATCH_LEN_CAP + 1), 1 << 15),
        "weights": (sum(MIXER_SETS) * _inputs(level), w0),
        "final_weights": (256 * N_MIXERS, (1 << 16) // N_MIXERS),
        "apm1": (APM_STEPS * (256 + 65536), APM_CENTRE),  # order 0, then order 1
        "apm2": (APM_STEPS << 18, APM_CENTRE),  # hashed order 2 (first quarter), hashed order 3
        "long_sm": (LONG_SLOTS, 1 << 15),  # p16 of a hit, by match length
    }


class Model:
    """All the state a predictor carries, as flat NumPy arrays (numba reads these).

    A model is created once per stream and carried from block to block, so later
    blocks benefit from what earlier ones taught it.
    """

    def __init__(self, level: Level) -> None:
        self.level = level
        self.n_inputs = _inputs(level)
        # 16 uint32 per bucket: slot 0 = check, slots 1..15 = the nibble's binary tree.
        self.tables = np.zeros(_table_length(level), dtype=np.uint32)
        self.history = np.zeros(1 << level.history_bits, dtype=np.uint8)
        parts = _parts(level)
        # Every int64 array lives in one buffer, after the offsets where each starts and
        # the last ends, so that the decoder's per-bit call hands numba one array, not
        # eleven: unpacking arguments is most of what a call costs. Each part is filled
        # in place, so building a model never holds a second copy of it.
        head = len(PARTS) + 1
        bounds = np.cumsum([head, *(length for length, _ in parts.values())])
        self.ints = np.zeros(int(bounds[-1]), dtype=np.int64)
        self.ints[:head] = bounds
        for k, name in enumerate(PARTS):
            view = self.ints[bounds[k]:bounds[k + 1]]
            fill_zeroed(view, parts[name][1])
            setattr(self, name, view)
        self.stream_pos = 0  # bytes coded so far in this stream: where the next block starts

    @staticmethod
    def memory(level: Level) -> int:
        """Bytes a model of `level` holds, known without building one."""
        ints = len(PARTS) + 1 + sum(length for length, _ in _parts(level).values())
        return _table_length(level) * 4 + (1 << level.history_bits) + ints * 8

    def copy(self, over: "Model | None" = None) -> "Model":
        """An independent model in the same state, its named parts views of its own arrays.

        Given `over` (a model of the same level that is no longer needed), its arrays are
        written over: many times faster than new memory, whose every page the copy would
        first have to fault in (seconds for the largest levels). Either way the copy goes
        in slices, so that a signal is honoured within one (see `_write_in_slices`)."""
        if over is None:
            over = copy.copy(self)
            over.ints, over.tables, over.history = (np.empty_like(a) for a in (self.ints, self.tables, self.history))
            bounds = self.ints[: len(PARTS) + 1]  # where the parts lie: the same in the copy
            for k, name in enumerate(PARTS):
                setattr(over, name, over.ints[bounds[k] : bounds[k + 1]])
        for mine, theirs in ((self.ints, over.ints), (self.tables, over.tables), (self.history, over.history)):
            _write_in_slices(theirs, mine)
        over.stream_pos = self.stream_pos
        return over

    def segments(self, n: int) -> np.ndarray:
        """Start offsets of the lock-step segments a block of n bytes is cut into."""
        count = max(1, min(self.level.max_segments, n // self.level.min_segment))
        length = -(-n // count) if n else 0
        return np.arange(count, dtype=np.int64) * length

    def begin_block(self, n: int, whole: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fresh per-segment state for a block of n bytes starting at stream_pos (one segment if whole)."""
        if n > len(self.history) // 2:
            raise ValueError("block larger than half the history window")
        starts = np.zeros(1, dtype=np.int64) if whole else self.segments(n)
        seg = np.zeros((len(starts), NFIELDS), dtype=np.int64)
        seg[:, C0] = 1
        seg[:, NIB] = 1
        seg[:, POS] = self.stream_pos + starts
        seg[:, END] = np.append(self.stream_pos + starts[1:], self.stream_pos + n)
        seg[:, LINE] = seg[:, POS]
        seg[:, LINE_PREV] = seg[:, POS]
        seg[:, LEADING] = 1
        ctx = np.zeros((len(starts), 3 * len(self.level.contexts)), dtype=np.int64)
        scratch = np.zeros((len(starts), NSCRATCH + self.n_inputs + 3 * len(self.level.contexts)), dtype=np.int64)
        return seg, ctx, scratch

    def prime(self, text: bytes) -> None:
        """Learn the context statistics of a text both sides know before coding starts.

        Only counters and the byte-level state learn (no mixing), so it runs several
        times faster than coding; the text also seeds the match model's history.
        """
        # The text touches nearly every page of the tables, fresh memory: fault them in
        # here, where a signal can stop it, not within the first compiled call.
        _write_in_slices(self.tables, 0)
        seg, ctx, _ = self.begin_block(len(text), whole=True)
        start(self.ints, self.tables, self.history, seg, ctx)
        data = np.frombuffer(text, dtype=np.uint8)
        for begin in range(0, len(data), PRIME_CALL_BYTES):  # back to Python often: signals are honoured
            prime_run(data, begin, min(begin + PRIME_CALL_BYTES, len(data)), self.ints, self.tables, self.history,
                      seg, ctx, self.stream_pos)
        self.stream_pos += len(text)

    def keep_shared_matches(self) -> None:
        """Predict as before revision 7: every lock-step segment of a block finds its
        matches in one shared set of entries (for decoding files of those revisions)."""
        self.params[5] = 0

    def state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The arrays `step` needs, in its argument order."""
        return self.ints, self.tables, self.history


# --- 3. predicting and learning one bit --------------------------------------------------


@njit(cache=True, nogil=True)
def _part(ints: np.ndarray, k: int) -> np.ndarray:
    """Array k of PARTS, a view into a Model's one int64 buffer."""
    return ints[ints[k]:ints[k + 1]]


# NumPy's error model: a remainder by zero (seg_len is never 0 here) gives 0 instead of
# raising, so the kernels that call this one cannot raise and keep their machine code.
@njit(cache=True, nogil=True, error_model="numpy")
def _known(q: int, base: int, seg_len: int, t: int, n: int, window: int) -> bool:
    """Whether stream position q is already decoded when every segment has done t bytes.

    Earlier blocks are known while still inside the history window; in the current
    block (starting at `base`, cut into segments of `seg_len`) a position is known once
    its segment has passed it.
    """
    if q < base:
        return q >= base + n - window and q >= 0
    offset = q - base
    if offset >= seg_len:  # not the first segment: a division
        offset %= seg_len
    return offset < t


@njit(cache=True, nogil=True)
def _bucket(tables: np.ndarray, table_bits: int, i: int, h: int) -> int:
    """Find or claim the 16-slot bucket for context hash h in table i; return its index.

    Slot 0 holds a 16-bit check of the hash and, in a byte's first bucket, the run:
    the last byte seen in this context (bits 16-23) and how often in a row (24-31).
    """
    mask = (1 << table_bits) - 1
    check = (h >> 16) | 1
    b0 = ((i << table_bits) + (h & mask)) * 16
    b1 = ((i << table_bits) + ((h ^ 1) & mask)) * 16
    if (tables[b0] & 0xFFFF) == check:
        return b0
    if (tables[b1] & 0xFFFF) == check:
        return b1
    # Replace the bucket whose first node has seen less.
    victim = b0 if (tables[b0 + 1] & 1023) <= (tables[b1 + 1] & 1023) else b1
    tables[victim] = check
    for k in range(1, 16):
        tables[victim + k] = np.uint32(1 << 31)
    return victim


@njit(cache=True, nogil=True)
def _find_buckets(tables: np.ndarray, table_bits: int, s: int, c0: int, ctx: np.ndarray, n_ctx: int) -> None:
    """At a nibble boundary: the bucket of every context for the partial byte c0."""
    for i in range(n_ctx):
        b = _bucket(tables, table_bits, i, combine(ctx[s, i], c0))
        ctx[s, n_ctx + i] = b
        if c0 == 1:
            ctx[s, 2 * n_ctx + i] = b


@njit(cache=True, nogil=True)
def _context_hashes(seg: np.ndarray, s: int, kinds: np.ndarray, ctx: np.ndarray, history: np.ndarray,
                    indirect: np.ndarray, hmask: int) -> None:
    """At a byte boundary: hash each context kind of segment s into ctx[s, i]."""
    c4 = seg[s, C4]
    c8 = seg[s, C8]
    for i in range(len(kinds)):
        k = kinds[i]
        if k == O1:
            h = c4 & 0xFF
        elif k == O2:
            h = c4 & 0xFFFF
        elif k == O3:
            h = c4 & 0xFFFFFF
        elif k == O4:
            h = c4
        elif k == O5:
            h = combine(c4, c8 & 0xFF)
        elif k == O6:
            h = combine(c4, c8 & 0xFFFF)
        elif k == O8:
            h = combine(c4, c8)
        elif k == WORD:
            h = combine(seg[s, WORD0], c4 & 0xFF)
        elif k == WORD2:
            h = combine(seg[s, WORD0], seg[s, WORD1])
        elif k == WORD3:
            h = combine(combine(seg[s, WORD0], seg[s, WORD1]), seg[s, WORD_OLDER])
        elif k == SPARSE:
            h = c4 & 0xFFFF00
        elif k == COLUMN:
            col = seg[s, POS] - seg[s, LINE]
            above = seg[s, LINE_PREV] + col
            ch = 0
            if above < seg[s, LINE]:
                ch = history[above & hmask] + 1
            h = combine(min(col, 255) << 16 | ch, c4 & 0xFF)
        elif k == MATCHED:  # the byte the match model expects, and how long the match is
            h = seg[s, EXPECT] << 8 | min(seg[s, MLEN], 15) << 4 if seg[s, EXPECT] else 0
        elif k == IND1:  # what followed the previous byte the last two times
            h = (c4 & 0xFF) << 16 | indirect[c4 & 0xFF]
        elif k == IND2:
            h = combine(c4 & 0xFFFF, indirect[256 + (c4 & 0xFFFF)])
        elif k == WORDSKIP:
            h = combine(seg[s, WORD0], seg[s, WORD_OLDER])
        elif k == TAG:
            h = combine(seg[s, TAGH], c4 & 0xFF)
        elif k == MASK:
            h = combine(seg[s, CLASSES], c4 & 0xFF)
        elif k == RECUR:
            h = combine(seg[s, RSTATE], c4 & 0xFF)
        elif k == SKIP:
            h = c4 & 0xFFFF0000
        else:  # INDENT: the layout of code, where the indentation predicts what follows
            h = combine(min(seg[s, INDENT_NOW], 63) << 8 | min(seg[s, INDENT_PREV], 63) << 1 | seg[s, LEADING],
                        c4 & 0xFFFF)
        ctx[s, i] = combine(h, k + 1)


@njit(cache=True, nogil=True)
def _byte_class(c: int) -> int:
    """A coarse class of a byte for the byte-class summary: letter, digit, space, punctuation..."""
    if 97 <= c <= 122:
        return 1
    if 65 <= c <= 90:
        return 2
    if 48 <= c <= 57:
        return 3
    if c == 32:
        return 4
    if c == 10 or c == 13 or c == 9:
        return 5
    if c == 60 or c == 62 or c == 38 or c == 59:  # < > & ;  markup
        return 6
    if c == 40 or c == 41 or c == 91 or c == 93 or c == 123 or c == 125 or c == 58 or c == 61:
        return 7
    if c >= 128:
        return 8
    return 9 + (c & 3)


@njit(cache=True, nogil=True)
def _bit_parts(ints: np.ndarray) -> tuple:
    """The arrays both `predict` and `update` work on, as views of a Model's buffer."""
    return (_part(ints, P_PARAMS), _part(ints, P_KINDS), _part(ints, P_ORDER0), _part(ints, P_HISTORY_MAP),
            _part(ints, P_MATCH_SM), _part(ints, P_WEIGHTS), _part(ints, P_FINAL_WEIGHTS), _part(ints, P_APM1),
            _part(ints, P_APM2))


@njit(cache=True, nogil=True)
def predict(s: int, t: int, ints: np.ndarray, tables: np.ndarray, history: np.ndarray, seg: np.ndarray,
            ctx: np.ndarray, scratch: np.ndarray, base: int, seg_len: int, n: int) -> int:
    """The 12-bit probability that the next bit of segment s is a 1."""
    params, kinds, order0, history_map, match_sm, weights, final_weights, apm1, apm2 = _bit_parts(ints)
    sq, st = SQUASH, STRETCH
    n_ctx = len(kinds)
    n_in = PER_CTX * n_ctx + N_EXTRA
    c0 = seg[s, C0]
    c4 = seg[s, C4]
    nib = seg[s, NIB]
    bitpos = 0
    while (c0 >> bitpos) > 1:
        bitpos += 1
    x0 = NSCRATCH  # inputs live in scratch[s, x0 : x0 + n_in]; slot indexes after them
    nseen = 0
    for i in range(n_ctx):
        slot = ctx[s, n_ctx + i] + nib
        scratch[s, x0 + n_in + i] = slot
        v = tables[slot]
        cnt = v & 1023
        if cnt > 0:
            nseen += 1
        scratch[s, x0 + i] = 0 if cnt == 0 else st[v >> 20]
        # The counter's recent bits and age, through a learned map: a bit history.
        hidx = (i << 10) | (AGE_BUCKET[min(cnt, 255)] << 6) | ((v >> 10) & 63)
        scratch[s, x0 + n_in + n_ctx + i] = hidx
        scratch[s, x0 + N_EXTRA + n_ctx + i] = st[history_map[hidx] >> 4]
        # The same counter on a linear scale: confident predictions stand out less.
        scratch[s, x0 + N_EXTRA + 2 * n_ctx + i] = 0 if cnt == 0 else ((v >> 20) - 2048) >> 1
        # The run: if the byte this context saw last agrees so far, a learned map of
        # how often it repeated predicts its next bit.
        run = np.int64(tables[ctx[s, 2 * n_ctx + i]]) >> 16
        ridx = -1
        if run >= 256 and ((run & 0xFF) | 256) >> (8 - bitpos) == c0:
            ridx = (n_ctx << 10) + (i << 5) + (min(run >> 8, 15) << 1) + ((run >> (7 - bitpos)) & 1)
            scratch[s, x0 + N_EXTRA + 3 * n_ctx + i] = st[history_map[ridx] >> 4]
        else:
            scratch[s, x0 + N_EXTRA + 3 * n_ctx + i] = 0
        scratch[s, x0 + n_in + 2 * n_ctx + i] = ridx
    scratch[s, x0 + n_ctx] = st[order0[c0] >> 20]
    # Match model: the bit the longest recent repeat expects, weighted by its length.
    mlen = seg[s, MLEN]
    mbit = -1
    window = 1 << params[1]
    if mlen > 0:
        ptr = seg[s, MPTR]
        if _known(ptr, base, seg_len, t, n, window):
            expected = history[ptr & (window - 1)] | 256
            if (expected >> (8 - bitpos)) == c0:
                mbit = (expected >> (7 - bitpos)) & 1
    if mbit >= 0:
        ml = min(mlen, MATCH_LEN_CAP)
        msm = ml * 2 + mbit
        scratch[s, S_MSM] = msm
        scratch[s, x0 + n_ctx + 1] = st[match_sm[msm] >> 4]
        # The length itself, signed by the expected bit: long matches are near certain.
        scratch[s, x0 + n_ctx + 2] = (min(mlen, 32) << 6) * (2 * mbit - 1)
        mctx = 1 + min(mlen >> 2, 6)
    else:
        scratch[s, S_MSM] = -1
        scratch[s, x0 + n_ctx + 1] = 0
        scratch[s, x0 + n_ctx + 2] = 0
        mctx = 0
    # First-layer mixers, each with a weight set chosen by a different context; the
    # final mixer, with weights chosen by the partial byte, combines their outputs.
    scratch[s, S_M0] = MIXER_BASE[0] + c0
    scratch[s, S_M0 + 1] = MIXER_BASE[1] + mctx * 256 + c0
    scratch[s, S_M0 + 2] = MIXER_BASE[2] + (c4 & 0xFF) * 8 + bitpos
    scratch[s, S_M0 + 3] = MIXER_BASE[3] + min(nseen, 15) * 8 + bitpos
    scratch[s, S_M0 + 4] = MIXER_BASE[4] + ((c4 >> 8) & 0xFF)
    layout = min(seg[s, INDENT_NOW], 7) * 2 + seg[s, LEADING]
    scratch[s, S_M0 + 5] = MIXER_BASE[5] + (seg[s, RSTATE] >> 10) * 16 + layout
    scratch[s, S_M0 + 6] = MIXER_BASE[6] + (_byte_class(c4 & 0xFF) * 13 + _byte_class((c4 >> 8) & 0xFF)) * 8 + bitpos
    scratch[s, S_M0 + 7] = MIXER_BASE[7] + (seg[s, WORD0] & 2047)
    scratch[s, S_M0 + 8] = MIXER_BASE[8] + (seg[s, WORD1] & 2047)
    scratch[s, S_M0 + 9] = MIXER_BASE[9] + (combine(c4 & 0xFFFFFF, 0) & 4095)
    fsel = c0 * N_MIXERS
    scratch[s, S_FSEL] = fsel
    dot_final = 0
    for m in range(N_MIXERS):
        w = scratch[s, S_M0 + m] * n_in
        dot = 0
        for i in range(n_in):
            dot += scratch[s, x0 + i] * weights[w + i]
        dot >>= 16
        dot = max(-2047, min(2047, dot))
        scratch[s, S_OUT0 + m] = dot
        dot_final += dot * final_weights[fsel + m]
    dot_final >>= 16
    p = squash(dot_final, sq)
    scratch[s, S_PMIX] = p
    # Three adaptive probability maps refine the mixed probability by small contexts.
    x = st[p] + 2048
    lo = x >> 7
    a1 = c0 * APM_STEPS + lo
    a2 = (combine(c4 & 0xFFFF, c0) & 0xFFFF) * APM_STEPS + lo
    wt = x & 127
    scratch[s, S_A1] = a1 if wt < 64 else a1 + 1
    scratch[s, S_A2] = a2 if wt < 64 else a2 + 1
    a3 = (256 + ((c4 & 0xFF) << 8 | c0)) * APM_STEPS + lo
    scratch[s, S_A3] = a3 if wt < 64 else a3 + 1
    pa1 = (apm1[a1] * (128 - wt) + apm1[a1 + 1] * wt) >> 11
    pa2 = (apm2[a2] * (128 - wt) + apm2[a2 + 1] * wt) >> 11
    pa3 = (apm1[a3] * (128 - wt) + apm1[a3 + 1] * wt) >> 11
    a4 = ((1 << 16) + (combine(c4 & 0xFFFFFF, c0) & 0x3FFFF) % (3 << 16)) * APM_STEPS + lo  # order 3
    scratch[s, S_A4] = a4 if wt < 64 else a4 + 1
    pa4 = (apm2[a4] * (128 - wt) + apm2[a4 + 1] * wt) >> 11
    pf = (2 * p + 2 * pa1 + 4 * pa2 + 4 * pa3 + 4 * pa4 + 8) >> 4
    pf = max(1, min(PROB_ONE - 1, pf))
    return pf


@njit(cache=True, nogil=True)
def _train_counter(tables: np.ndarray, slot: int, bit: int, limit: int, rate: np.ndarray) -> None:
    v = np.int64(tables[slot])
    p = v >> 16
    cnt = v & 1023
    target = 65535 if bit else 0
    p += ((target - p) * rate[cnt]) >> 16
    if cnt < limit:
        cnt += 1
    bits6 = (((v >> 10) << 1) | bit) & 63
    tables[slot] = np.uint32((p << 16) | (bits6 << 10) | cnt)


@njit(cache=True, nogil=True)
def _advance(s: int, bit: int, t: int, ints: np.ndarray, tables: np.ndarray, history: np.ndarray, seg: np.ndarray,
             ctx: np.ndarray, base: int, seg_len: int, n: int) -> None:
    """Move segment s past the bit just coded: partial byte, then at byte ends the byte-level state."""
    n_ctx = len(_part(ints, P_KINDS))
    table_bits = _part(ints, P_PARAMS)[0]
    c0 = seg[s, C0]
    # Advance the partial byte; at nibble and byte boundaries, find the new buckets.
    c0 = c0 * 2 + bit
    nib = seg[s, NIB] * 2 + bit
    if c0 >= 256:
        c = c0 & 0xFF
        # Runs: the byte each context's first bucket saw last, and how often in a row.
        for i in range(n_ctx):
            first = ctx[s, 2 * n_ctx + i]
            run = np.int64(tables[first]) >> 16
            if (run & 0xFF) == c and run >= 256:
                run = min(run + 256, 0xFFFF)
            else:
                run = 256 | c
            tables[first] = np.uint32((np.int64(tables[first]) & 0xFFFF) | (run << 16))
        _byte_state(s, c, t, ints, history, seg, ctx, base, seg_len, n, True)
        c0 = 1
        nib = 1
    if nib >= 16:
        nib = 1
    if nib == 1:
        _find_buckets(tables, table_bits, s, c0, ctx, n_ctx)
    seg[s, C0] = c0
    seg[s, NIB] = nib


@njit(cache=True, nogil=True)
def _byte_state(s: int, c: int, t: int, ints: np.ndarray, history: np.ndarray, seg: np.ndarray, ctx: np.ndarray,
                base: int, seg_len: int, n: int, hashes: bool) -> None:
    """Move segment s past the byte c just completed: history, words, lines, the match
    model and (if `hashes`) every context's hash; not the tables (the caller finds the
    buckets)."""
    params, kinds = _part(ints, P_PARAMS), _part(ints, P_KINDS)
    indirect, match_table = _part(ints, P_INDIRECT), _part(ints, P_MATCH_TABLE)
    window = 1 << params[1]
    hmask = window - 1
    pos = seg[s, POS]
    history[pos & hmask] = c
    # Indirect contexts: remember what followed the previous byte and byte pair.
    c1 = seg[s, C4] & 0xFF
    indirect[c1] = (indirect[c1] << 8 | c) & 0xFFFF
    c21 = 256 + (seg[s, C4] & 0xFFFF)
    indirect[c21] = (indirect[c21] << 8 | c) & 0xFFFF
    seg[s, C8] = ((seg[s, C8] << 8) | (seg[s, C4] >> 24)) & M32
    seg[s, C4] = ((seg[s, C4] << 8) | c) & M32
    # Words: letters (case-folded), digits and '_' extend the current word.
    lower = c + 32 if 65 <= c <= 90 else c
    if (97 <= lower <= 122) or (48 <= c <= 57) or c == 95 or c >= 128:
        seg[s, WORD0] = combine(seg[s, WORD0], lower)
    elif seg[s, WORD0] != 0:
        seg[s, WORD_OLDER] = seg[s, WORD1]
        seg[s, WORD1] = seg[s, WORD0]
        seg[s, WORD0] = 0
    # The last markup tag or bracket: '<', '[' or '{' and the letters after it.
    if c == 60 or c == 91 or c == 123:
        seg[s, TAGH] = c
        seg[s, TAGLEN] = 1
    elif 0 < seg[s, TAGLEN] < 12 and (97 <= lower <= 122 or c == 47 or c == 58):
        seg[s, TAGH] = combine(seg[s, TAGH], lower)
        seg[s, TAGLEN] += 1
    else:
        seg[s, TAGLEN] = 0
    if c == 10:
        seg[s, LINE_PREV] = seg[s, LINE]
        seg[s, LINE] = pos + 1
        seg[s, INDENT_PREV] = seg[s, INDENT_NOW]
        seg[s, INDENT_NOW] = 0
        seg[s, LEADING] = 1
    elif seg[s, LEADING]:
        if c == 32 or c == 9:
            seg[s, INDENT_NOW] += 1
        else:
            seg[s, LEADING] = 0
    # The byte-class summary: a decaying mix of recent byte classes, kept to 16 bits.
    seg[s, RSTATE] = ((seg[s, RSTATE] * 5) // 8 + _byte_class(c) * 409) & 0xFFFF
    seg[s, CLASSES] = (seg[s, CLASSES] << 4 | _byte_class(c)) & 0xFFFFFF
    # Match model: extend the current match or look for a new one.
    pos += 1
    seg[s, POS] = pos
    mlen = seg[s, MLEN]
    if mlen > 0:
        ptr = seg[s, MPTR]
        if _known(ptr, base, seg_len, t, n, window) and history[ptr & hmask] == c:
            seg[s, MLEN] = min(mlen + 1, 65535)
            seg[s, MPTR] = ptr + 1
        else:
            seg[s, MLEN] = 0
    mmin = params[2]
    seg_start = base + s * seg_len if pos - 1 >= base else pos  # where segment s started in this block
    if pos - seg_start >= mmin:
        h = 0
        for k in range(mmin):
            h = combine(h, history[(pos - 1 - k) & hmask])
        if s > 0 and params[5]:
            # Each lock-step segment its own entries: in a shared one, the segment that
            # wrote last is at the same offset, never yet known, and a run finds no match.
            h = combine(h, s)
        h &= len(match_table) - 1
        if seg[s, MLEN] == 0:
            cand = match_table[h]
            if cand > 0 and _known(cand - 1, base, seg_len, t, n, window):
                length = 0
                while length < 32 and _known(cand - 1 - length, base, seg_len, t, n, window) and \
                        pos - 1 - length >= seg_start and \
                        history[(cand - 1 - length) & hmask] == history[(pos - 1 - length) & hmask]:
                    length += 1
                if length >= mmin:
                    seg[s, MLEN] = length
                    seg[s, MPTR] = cand
        match_table[h] = pos
    # The byte the match model expects next, as a context (0: none).
    seg[s, EXPECT] = 0
    if seg[s, MLEN] > 0 and _known(seg[s, MPTR], base, seg_len, t, n, window):
        seg[s, EXPECT] = 256 | history[seg[s, MPTR] & hmask]
    if hashes:
        _context_hashes(seg, s, kinds, ctx, history, indirect, hmask)


@njit(cache=True, nogil=True)
def update(s: int, bit: int, t: int, ints: np.ndarray, tables: np.ndarray, history: np.ndarray, seg: np.ndarray,
           ctx: np.ndarray, scratch: np.ndarray, base: int, seg_len: int, n: int) -> None:
    """Teach every component of segment s the bit just coded, then advance its state."""
    params, kinds, order0, history_map, match_sm, weights, final_weights, apm1, apm2 = _bit_parts(ints)
    sq, rate = SQUASH, RATE
    n_ctx = len(kinds)
    n_in = PER_CTX * n_ctx + N_EXTRA
    x0 = NSCRATCH
    limit = params[3]
    lr = params[4]
    c0 = seg[s, C0]
    # Counters.
    t16 = 65535 if bit else 0
    for i in range(n_ctx):
        _train_counter(tables, scratch[s, x0 + n_in + i], bit, limit, rate)
        hidx = scratch[s, x0 + n_in + n_ctx + i]
        history_map[hidx] += ((t16 - history_map[hidx]) * 700) >> 16
        ridx = scratch[s, x0 + n_in + 2 * n_ctx + i]
        if ridx >= 0:
            history_map[ridx] += ((t16 - history_map[ridx]) * 1500) >> 16
    v = order0[c0]
    p = v >> 16
    order0[c0] = (p + ((((65535 if bit else 0) - p) * 3000) >> 16)) << 16
    msm = scratch[s, S_MSM]
    if msm >= 0:
        target = 65535 if bit else 0
        match_sm[msm] += ((target - match_sm[msm]) * 1200) >> 16
    # Mixers: each first-layer mixer learns from its own error, the final one from its.
    target12 = bit << 12
    fsel = scratch[s, S_FSEL]
    for m in range(N_MIXERS):
        sel = scratch[s, S_M0 + m]
        out = scratch[s, S_OUT0 + m]
        err = (target12 - squash(out, sq)) * lr
        w = sel * n_in
        for i in range(n_in):
            weights[w + i] += (scratch[s, x0 + i] * err + 32768) >> 16
        ferr = target12 - scratch[s, S_PMIX]
        final_weights[fsel + m] += (out * ferr + 16384) >> 15
    # Adaptive probability maps.
    a1 = scratch[s, S_A1]
    apm1[a1] += ((t16 - apm1[a1]) * 1300) >> 16
    a3 = scratch[s, S_A3]
    apm1[a3] += ((t16 - apm1[a3]) * 1300) >> 16
    a4 = scratch[s, S_A4]
    apm2[a4] += ((t16 - apm2[a4]) * 1300) >> 16
    a2 = scratch[s, S_A2]
    apm2[a2] += ((t16 - apm2[a2]) * 1300) >> 16
    _advance(s, bit, t, ints, tables, history, seg, ctx, base, seg_len, n)


@njit(cache=True, nogil=True)
def prime_run(data: np.ndarray, t_begin: int, t_end: int, ints: np.ndarray, tables: np.ndarray, history: np.ndarray,
              seg: np.ndarray, ctx: np.ndarray, base: int) -> None:
    """Teach the context statistics of bytes t_begin..t_end-1 of a text both sides know,
    without predicting or mixing: fast. Successive calls continue where the last ended."""
    n = len(data)
    n_ctx = len(_part(ints, P_KINDS))
    limit = _part(ints, P_PARAMS)[3]
    for t in range(t_begin, t_end):
        c = data[t]
        for k in range(7, -1, -1):
            bit = (c >> k) & 1
            nib = seg[0, NIB]
            for i in range(n_ctx):
                _train_counter(tables, ctx[0, n_ctx + i] + nib, bit, limit, RATE)
            _advance(0, bit, t, ints, tables, history, seg, ctx, base, n, n)


@njit(cache=True, nogil=True)
def start(ints: np.ndarray, tables: np.ndarray, history: np.ndarray, seg: np.ndarray, ctx: np.ndarray) -> None:
    """Hash the (empty) contexts of every segment at the start of a block."""
    kinds = _part(ints, P_KINDS)
    n_ctx = len(kinds)
    for s in range(len(seg)):
        _context_hashes(seg, s, kinds, ctx, history, _part(ints, P_INDIRECT), len(history) - 1)
        _find_buckets(tables, _part(ints, P_PARAMS)[0], s, 1, ctx, n_ctx)


@njit(cache=True, nogil=True, many_calls=True)  # once a step, by the decoder of revisions before 7
def step(bits: np.ndarray, n_update: int, t_update: int, probs: np.ndarray, n_predict: int, t_predict: int,
         ints: np.ndarray, tables: np.ndarray, history: np.ndarray, seg: np.ndarray, ctx: np.ndarray,
         scratch: np.ndarray, base: int, seg_len: int, n: int) -> None:
    """Learn the last bit of the first n_update segments, then predict the next bit of n_predict.

    `t_update` and `t_predict` count the bytes every segment had completed when those
    bits were predicted: a position of the block is readable only below that offset.
    Every segment learns before any predicts, so the decoder, which must decode all
    of a step's bits before it can learn from them, computes exactly the same numbers.
    """
    for s in range(n_update):
        update(s, bits[s], t_update, ints, tables, history, seg, ctx, scratch, base, seg_len, n)
    for s in range(n_predict):
        probs[s] = (1.0 / 4096.0) * predict(s, t_predict, ints, tables, history, seg, ctx, scratch, base, seg_len, n)


@njit(cache=True, nogil=True)
def code_steps(decoding: bool, data: np.ndarray, starts: np.ndarray, seg_len: int, last: int, n_steps: int,
               k_begin: int, k_end: int, lanes: np.ndarray, ints: np.ndarray, tables: np.ndarray,
               history: np.ndarray, seg: np.ndarray, ctx: np.ndarray, scratch: np.ndarray, base: int, n: int,
               payload: np.ndarray, coder: np.ndarray) -> None:
    """Run steps k_begin..k_end-1 (of 0..n_steps) of a block through arith.py's coder:
    encode the bytes of `data` into `payload`, or decode them from it (the decoded bytes
    land in `history`, as every coded byte does). One function for both sides, so the
    decoder cannot drift from the encoder.

    A step first teaches every segment the bit it coded in the step before; then, at a
    byte's start, each segment deep in a repeat (LONG_MATCH) codes whether its byte is
    the one the match expects, and on a hit moves past the byte at once and sits out
    the byte's other seven steps; then every other segment predicts and codes its bit.
    `lanes` carries, per segment, the last bit, whether it was coded, and whether the
    segment sits out this byte, and `coder` the coder's (x1, x2, x, io) from one call to
    the next, so a block run in several calls codes as in one.
    """
    n_seg = len(starts)
    kinds, indirect, long_sm = _part(ints, P_KINDS), _part(ints, P_INDIRECT), _part(ints, P_LONG_SM)
    n_ctx = len(kinds)
    table_bits = _part(ints, P_PARAMS)[0]
    window = 1 << _part(ints, P_PARAMS)[1]
    x1, x2, x, io = coder[0], coder[1], coder[2], coder[3]
    t_prev = max(k_begin - 1, 0) >> 3
    k = k_begin
    while k < k_end:
        t = k >> 3
        n_now = 0
        if k < n_steps:
            n_now = n_seg if t < last else n_seg - 1
        for s in range(n_seg):
            if lanes[s, 1]:
                update(s, lanes[s, 0], t_prev, ints, tables, history, seg, ctx, scratch, base, seg_len, n)
                lanes[s, 1] = 0
        skipped = 0
        if k & 7 == 0:
            for s in range(n_now):
                lanes[s, 2] = 0
                # Every segment has done t bytes now, so the byte the match points at
                # may be known where it was not when the match moved on (EXPECT).
                ptr = seg[s, MPTR]
                if seg[s, MLEN] < LONG_MATCH or not _known(ptr, base, seg_len, t, n, window):
                    continue
                guess = np.int64(history[ptr & (window - 1)])
                slot = min(seg[s, MLEN] >> 5, LONG_SLOTS - 1)
                p = max(1, min(PROB_ONE - 1, long_sm[slot] >> 4))
                hit = 0 if decoding else (1 if data[starts[s] + t] == guess else 0)
                hit, x1, x2, x, io = coder_step(decoding, hit, p, x1, x2, x, io, payload)
                long_sm[slot] += (((65535 if hit else 0) - long_sm[slot]) * 2048) >> 16
                if hit:
                    _byte_state(s, guess, t, ints, history, seg, ctx, base, seg_len, n, False)
                    seg[s, STALE] = 1
                    lanes[s, 2] = 1
                    skipped += 1
                else:
                    seg[s, MLEN] = 0
                    seg[s, EXPECT] = 0
        shift = 7 - (k & 7)
        for s in range(n_now):
            if lanes[s, 2]:
                continue
            if seg[s, STALE]:  # the hashes and buckets a run of skipped bytes left undone
                _context_hashes(seg, s, kinds, ctx, history, indirect, window - 1)
                _find_buckets(tables, table_bits, s, 1, ctx, n_ctx)
                seg[s, STALE] = 0
            p = predict(s, t, ints, tables, history, seg, ctx, scratch, base, seg_len, n)
            b = 0 if decoding else (data[starts[s] + t] >> shift) & 1
            bit, x1, x2, x, io = coder_step(decoding, b, p, x1, x2, x, io, payload)
            lanes[s, 0] = bit
            lanes[s, 1] = 1
        t_prev = t
        # When every segment sits this byte out, its other seven steps have nothing to do.
        k = min(k + 8, k_end) if n_now and skipped == n_now else k + 1
    coder[0], coder[1], coder[2], coder[3] = x1, x2, x, io
