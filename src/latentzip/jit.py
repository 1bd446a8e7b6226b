"""Compiled kernels: every loop of latentzip that runs per bit or per pixel is a numba
kernel, declared with `njit` here.

numba costs a process about 0.3 s before its first kernel runs, even one it has cached:
0.17 s to import, and as much again to load its compiler's registries for the cached
code. That is most of a fast level's time on a 1 MB file, and what two threads cannot
share. So `njit` does not import numba. It returns a `Kernel`, which on its first call
from Python looks for its machine code in latentzip's cache (machine_code.py): found,
the code is loaded with llvmlite and called through ctypes (which lets go of the GIL,
as a nogil kernel does), and numba is never imported; not found, numba compiles the
kernel, and its machine code goes into the cache for the next process. The code is the
same either way; only where it comes from differs.

`prefetch` is an intrinsic that kernels bound by memory latency use to ask for what
they will read next. Like the kernels, it is made only once numba is imported.
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
from types import FunctionType
from typing import Any, Callable

_lock = threading.RLock()
_kernels: list[Kernel] = []
_intrinsics: dict[str, Intrinsic] = {}
_numba_objects: dict[int, Any] = {}  # numba's dispatcher or intrinsic, by id of its Kernel or Intrinsic


class Kernel:
    """A numba kernel that is compiled, or loaded as machine code, when first called."""

    def __init__(self, func: Callable[..., Any], options: dict[str, Any], many_calls: bool) -> None:
        functools.update_wrapper(self, func)
        self.py_func = func
        self.options = options
        self.many_calls = many_calls
        self._dispatcher: Any = None
        self._calls: dict[tuple, Callable[..., Any] | None] = {}  # by argument types: machine code, or None for numba
        _kernels.append(self)

    def dispatcher(self) -> Any:
        """numba's dispatcher for this kernel (importing numba)."""
        if self._dispatcher is None:
            import_numba()
        return self._dispatcher

    def __call__(self, *args: Any) -> Any:
        from . import machine_code

        key = None if self.many_calls else machine_code.argument_key(args)
        call = self._calls.get(key, _MISSING) if key is not None else None
        if call is _MISSING:
            with _lock:
                call = self._calls.get(key, _MISSING)
                if call is _MISSING:
                    call = self._calls[key] = machine_code.load(self, key, args)
        return call(*args) if call is not None else self.dispatcher()(*args)


_MISSING: Any = object()


class Intrinsic:
    """A numba intrinsic that is made only when numba is imported; `make(intrinsic)`
    returns it, given numba.extending.intrinsic."""

    def __init__(self, name: str, make: Callable[[Callable[..., Any]], Any]) -> None:
        self.name = name
        self.make = make
        _intrinsics[name] = self

    def __call__(self, *args: Any) -> Any:
        raise TypeError(f"{self.name} is a numba intrinsic: it can only be called inside a kernel")


def njit(many_calls: bool = False, **options: Any) -> Callable[[Callable[..., Any]], Kernel]:
    """Declare a numba kernel, with numba.njit's options. `many_calls`: Python calls it
    so often (per bit) that numba runs it, whose dispatch costs about 1 us a call where
    a call into machine code through ctypes costs about 20."""

    def declare(func: Callable[..., Any]) -> Kernel:
        return Kernel(func, options, many_calls)

    return declare


def import_numba() -> None:
    """Import numba and make the dispatcher of every kernel declared so far. Each
    kernel's function is compiled against a copy of its module's namespace in which
    kernels and intrinsics are numba's objects, so that it compiles (and inlines) its
    callees; the module itself keeps its `Kernel`s, so Python's calls still prefer
    machine code. Kernels of modules imported later get theirs on their first call."""
    with _lock:
        _skip_blas_probe()
        from numba import njit as numba_njit
        from numba.extending import intrinsic

        for placeholder in _intrinsics.values():
            if id(placeholder) not in _numba_objects:
                _numba_objects[id(placeholder)] = placeholder.make(intrinsic)
        namespaces: dict[str, dict[str, Any]] = {}
        for kernel in _kernels:
            if kernel._dispatcher is not None:
                continue
            func = kernel.py_func
            namespace = namespaces.setdefault(func.__module__, dict(func.__globals__))
            twin = FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
            twin.__qualname__, twin.__doc__ = func.__qualname__, func.__doc__
            kernel._dispatcher = _numba_objects[id(kernel)] = numba_njit(**kernel.options)(twin)
        for namespace in namespaces.values():
            for name, value in namespace.items():
                if id(value) in _numba_objects:
                    namespace[name] = _numba_objects[id(value)]


def _skip_blas_probe() -> None:
    """On its first compile or cache load numba imports numba.np.arraymath, which imports
    scipy.linalg (about a tenth of a second) only to learn whether np.dot could call
    BLAS. No latentzip kernel does linear algebra, so when scipy.linalg is not loaded yet,
    arraymath is loaded with scipy.linalg hidden for that moment: numba then records
    that it has no BLAS, and scipy.linalg imports as usual afterwards."""
    if "scipy.linalg" in sys.modules or "numba.np.arraymath" in sys.modules:
        return
    sys.modules["scipy.linalg"] = None  # type: ignore[assignment]  # makes its import fail at once
    try:
        importlib.import_module("numba.np.arraymath")
    finally:
        del sys.modules["scipy.linalg"]


def _make_prefetch(intrinsic: Callable[..., Any]) -> Any:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils

    @intrinsic
    def prefetch(typingctx, array, index):  # type: ignore[no-untyped-def]
        """Ask the CPU to start loading the cache line of array[index] (no bounds check:
        a prefetch never faults). Changes no value, only when a later read finds it in cache."""

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

    return prefetch


prefetch = Intrinsic("prefetch", _make_prefetch)

__all__ = ["Kernel", "njit", "prefetch", "import_numba"]
