"""The binary arithmetic coder every level codes with: the classic carry-less 32-bit coder
(as in lpaq1; the code is our own). A 12-bit probability of a 1 splits the interval
[x1, x2], and each settled top byte goes out. It is compiled into the models' loops, so
a decision costs no trip back to Python.

Its state (x1, x2, x: the decoder's window, io: the payload position) is passed in and
out as integers, which numba keeps in registers inside a loop.
"""

from __future__ import annotations

import numpy as np

from ..jit import njit

M32 = 0xFFFFFFFF


@njit(cache=True, nogil=True, inline="always")
def coder_step(decoding: bool, bit: int, p: int, x1: int, x2: int, x: int, io: int,
               payload: np.ndarray) -> tuple[int, int, int, int, int]:
    """One binary decision of probability p/4096 (of a 1; 1 <= p <= 4095) through the
    coder: the encoder's bit goes out, or the decoder's comes in. Returns (bit, x1, x2,
    x, io). The encoder stops writing at the end of `payload` (it still counts io, so
    the caller sees that the output did not fit); the decoder reads zeros past it."""
    xmid = x1 + ((x2 - x1) >> 12) * p
    if decoding:
        bit = 1 if x <= xmid else 0
    if bit:
        x2 = xmid
    else:
        x1 = xmid + 1
    while ((x1 ^ x2) & 0xFF000000) == 0:
        if decoding:
            x = ((x << 8) & M32) | (np.int64(payload[io]) if io < len(payload) else 0)
        elif io < len(payload):
            payload[io] = x2 >> 24
        io += 1
        x1 = (x1 << 8) & M32
        x2 = ((x2 << 8) & M32) | 255
    return bit, x1, x2, x, io


def start(state: np.ndarray, payload: np.ndarray, decoding: bool) -> None:
    """Set `state` (x1, x2, x, io) for a new block: the decoder reads its first 4 bytes."""
    state[:] = (0, M32, 0, 0)
    if decoding:
        for k in range(min(4, len(payload))):
            state[2] |= int(payload[k]) << (24 - 8 * k)
        state[3] = 4


def finish(state: np.ndarray, payload: np.ndarray) -> bytes:
    """The encoder's output once its last decision is coded (x1's 4 bytes settle it), or
    b"" when it would not be shorter than `payload`, the block's length."""
    n = len(payload)
    for shift in (24, 16, 8, 0):
        if state[3] < n:
            payload[state[3]] = (state[0] >> shift) & 255
        state[3] += 1
    return payload[: state[3]].tobytes() if state[3] < n else b""
