"""Handing memory freed by large temporaries back to the operating system.

glibc keeps freed blocks in its heaps for reuse, and with the varied sizes of a large
image's per-tile work (activations, gradients, scale indices) the holes between live
blocks are rarely reused: encoding a 24-megapixel image with alpha grew by 0.7 GB that
way. `malloc_trim` returns those free pages. Elsewhere (macOS, Windows, musl) `release`
does nothing: their allocators return large blocks on their own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Callable


@cache
def _trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release() -> None:
    """Return the heaps' free pages to the system (between tiles of a large image)."""
    trim = _trim()
    if trim is not None:
        trim(0)
