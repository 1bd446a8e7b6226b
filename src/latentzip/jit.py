"""numba's `njit`, for every compiled kernel of latentzip, imported so that a command
does not pay for a BLAS check it never uses; and `prefetch`, a hint that kernels
bound by memory latency give for what they will read next.

On its first compile or cache load numba imports numba.np.arraymath, which imports
scipy.linalg (about a tenth of a second, a tenth of a whole `latentzip compress -1` of
1 MB) only to learn whether np.dot could call BLAS. No latentzip kernel does linear
algebra, so when scipy.linalg is not loaded yet, arraymath is loaded here with
scipy.linalg hidden for that moment: numba then records that it has no BLAS, and
scipy.linalg imports as usual afterwards for whoever needs it (scikit-learn does).
"""

from __future__ import annotations

import importlib
import sys

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

if "scipy.linalg" not in sys.modules and "numba.np.arraymath" not in sys.modules:
    sys.modules["scipy.linalg"] = None  # type: ignore[assignment]  # makes its import fail at once
    try:
        importlib.import_module("numba.np.arraymath")
    finally:
        del sys.modules["scipy.linalg"]


@intrinsic
def prefetch(typingctx, array, index):  # type: ignore[no-untyped-def]
    """Ask the CPU to start loading the cache line of array[index] (no bounds check: a
    prefetch never faults). Changes no value, only when a later read finds it in cache."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        kind, index_kind = signature.args
        data = context.make_array(kind)(context, builder, args[0])
        where = context.cast(builder, args[1], index_kind, types.intp)
        pointer = cgutils.get_item_pointer(context, builder, kind, data, [where], wraparound=False)
        byte, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        hint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32]),
                                              "llvm.prefetch.p0")
        builder.call(hint, [builder.bitcast(pointer, byte), i32(0), i32(3), i32(1)])  # read, keep in all levels, data
        return context.get_dummy_value()

    return types.void(array, index), codegen


__all__ = ["njit", "prefetch"]
