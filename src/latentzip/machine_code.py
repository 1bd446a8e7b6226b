"""Kernels' machine code, kept in latentzip's cache so that later processes run it
without importing numba (see jit.py for why).

The first call of a kernel with new argument types, when no file holds its code, has
numba compile a C-callable wrapper (a numba `cfunc`) that takes each array as a
pointer and its shape, and each tuple of integers as a pointer, and calls the kernel.
Its object code goes into `<cache>/kernels/<digest>/`, the digest being of the
Python, numba and llvmlite versions and the CPU the code is compiled for; the file is
named by the kernel, a digest of the argument types, and one of the source of the
modules of the kernel and of every kernel and intrinsic it calls. Compiling a kernel
anew removes its file compiled from other sources. A later process loads that object
code with llvmlite's MCJIT, resolves its few external symbols (the Python C API, and
the helpers of numba's that the wrapper's error path names, given here without
numba), and calls it through ctypes.

A kernel whose code allocates arrays or may raise (both need numba's runtime), returns
something other than a number, or names a symbol this process cannot resolve is run
by numba as before; its file says so, so that later processes do not try again. A
file that cannot be read, or whose code does not match the digest its header holds,
is compiled anew. Where the cache cannot be written, numba runs the kernels, as it
did before.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.metadata
import inspect
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import LatentzipError
from .fsio import cache_dir, write_bytes
from .jit import Intrinsic, Kernel, import_numba

FORMAT = b"latentzip machine code 1\n"
# Our versions of the symbols of numba's helper library that kernels' error path names.
_HELPERS: dict[str, Any] = {}


def argument_key(args: tuple[Any, ...]) -> tuple | None:
    """The types of a call's arguments as machine code sees them, or None when a
    machine-code call cannot take them (numba then runs the kernel)."""
    key: list[tuple] = []
    for a in args:
        if isinstance(a, np.ndarray):
            if not a.flags.c_contiguous or a.dtype.kind not in "biuf":
                return None
            key.append(("array", a.dtype.str, a.ndim))
        elif isinstance(a, (bool, np.bool_)):
            key.append(("bool",))
        elif isinstance(a, int):
            key.append(("int",))
        elif isinstance(a, float):
            key.append(("float",))
        elif isinstance(a, np.number) and a.dtype.str in _CTYPES:
            key.append(("scalar", a.dtype.str))
        elif isinstance(a, tuple) and a and all(type(v) is int for v in a):
            key.append(("ints", len(a)))
        else:
            return None
    return tuple(key)


def load(kernel: Kernel, key: tuple, args: tuple[Any, ...]) -> Callable[..., Any] | None:
    """A caller of `kernel`'s machine code for arguments like `args` (whose
    `argument_key` is `key`), compiling it first if no file holds it; None when numba
    must run this kernel."""
    try:
        path = _path(kernel, key)
    except (OSError, TypeError):
        return None  # a kernel whose sources cannot be read (one typed into an interpreter)
    try:
        header, code = _read(path)
    except (OSError, ValueError):
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(path.parent, os.W_OK):
            return None  # compiling code that cannot be kept would only add to numba's time
        try:
            header, code = _build(kernel, key, args)
        except Exception:  # noqa: BLE001  # numba cannot make a C-callable wrapper here (e.g. with its JIT disabled)
            return None
        with contextlib.suppress(OSError, LatentzipError):  # a cache that cannot be written only costs time
            for stale in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.bin"):
                if stale != path:  # the same kernel and types, compiled from other sources
                    stale.unlink()
            write_bytes(path, FORMAT + json.dumps(header).encode() + b"\n" + code)
    if header["kind"] != "code":
        return None
    return _caller(key, header, code)


def _read(path: Path) -> tuple[dict[str, Any], bytes]:
    data = path.read_bytes()
    if not data.startswith(FORMAT):
        raise ValueError("not a machine-code file")
    line, _, code = data[len(FORMAT):].partition(b"\n")
    header = json.loads(line)
    if not isinstance(header, dict) or header.get("kind") not in ("code", "numba"):
        raise ValueError("not a machine-code file")
    if header["kind"] == "code" and header.get("sha256") != hashlib.sha256(code).hexdigest():
        raise ValueError("a damaged machine-code file")  # loading it could crash the process
    return header, code


def _path(kernel: Kernel, key: tuple) -> Path:
    """`<cache>/kernels/<machine and versions>/<kernel>-<argument types>-<sources>.bin`."""
    machine = hashlib.sha256("\n".join(_environment()).encode()).hexdigest()[:16]
    sources = hashlib.sha256()
    for module in sorted(_modules(kernel)):
        sources.update(Path(inspect.getfile(sys.modules[module])).read_bytes())
    types = hashlib.sha256(repr(key).encode()).hexdigest()[:8]
    name = f"{kernel.__module__}.{kernel.__qualname__}-{types}-{sources.hexdigest()[:16]}.bin"
    return cache_dir() / "kernels" / machine / name


@functools.cache
def _environment() -> list[str]:
    """What compiled code depends on besides its sources."""
    llvm = _llvm()
    features = llvm.get_host_cpu_features().flatten()
    return [sys.version, platform.machine(), importlib.metadata.version("numba"),
            importlib.metadata.version("llvmlite"), llvm.get_host_cpu_name(), features]


def _modules(kernel: Kernel) -> set[str]:
    """The modules of `kernel` and of every kernel and intrinsic it calls, directly or not."""
    seen: set[int] = set()
    modules: set[str] = set()
    todo = [kernel]
    while todo:
        k = todo.pop()
        if id(k) in seen:
            continue
        seen.add(id(k))
        modules.add(k.__module__)
        for name in k.py_func.__code__.co_names:
            value = k.py_func.__globals__.get(name)
            if isinstance(value, Kernel):
                todo.append(value)
            elif isinstance(value, Intrinsic):
                modules.add(value.make.__module__)
    return modules


def _build(kernel: Kernel, key: tuple, args: tuple[Any, ...]) -> tuple[dict[str, Any], bytes]:
    """Have numba compile the C-callable wrapper of `kernel` for `key`: (header, object code)."""
    import_numba()
    from numba import carray, cfunc, typeof, types

    dispatcher = kernel.dispatcher()
    signature = tuple(typeof(a) for a in args)
    dispatcher.compile(signature)
    returns = dispatcher.overloads[signature].signature.return_type
    if returns != types.none and str(returns) not in _CTYPES:
        return {"kind": "numba"}, b""
    params, argtypes, lines, names = [], [], [], []
    for i, spec in enumerate(key):
        if spec[0] == "array":
            dims = [f"s{i}_{d}" for d in range(spec[2])]
            params += [f"p{i}", *dims]
            argtypes += [types.CPointer(typeof(np.dtype(spec[1]).type(0))), *[types.int64] * spec[2]]
            lines.append(f"a{i} = carray(p{i}, ({', '.join(dims)},))")
        elif spec[0] == "ints":
            params.append(f"p{i}")
            argtypes.append(types.CPointer(types.int64))
            lines.append(f"a{i} = ({''.join(f'p{i}[{j}], ' for j in range(spec[1]))})")
        else:
            params.append(f"a{i}")
            argtypes.append(typeof(args[i]) if spec[0] != "int" else types.int64)
        names.append(f"a{i}")
    source = (f"def wrapper({', '.join(params)}):\n"
              + "".join(f"    {line}\n" for line in lines)
              + f"    return kernel({', '.join(names)})\n")
    scope: dict[str, Any] = {"carray": carray, "kernel": dispatcher}
    exec(source, scope)  # noqa: S102  # a wrapper generated from argument types, not from input
    compiled = cfunc(returns(*argtypes), nopython=True)(scope["wrapper"])
    library = compiled._library
    module = library._final_module
    text = str(module)
    if any(word in text for word in ("NRT_MemInfo_alloc", "NRT_Allocate", ".const.picklebuf")):
        return {"kind": "numba"}, b""  # it allocates, or it may raise: only numba's runtime can do either
    externals = sorted({f.name for f in module.functions if f.is_declaration and not f.name.startswith("llvm.")}
                       | {g.name for g in module.global_variables if g.is_declaration})
    code = library.serialize_using_object_code()[2][0]
    return {"kind": "code", "symbol": compiled.native_name, "returns": str(returns), "externals": externals,
            "sha256": hashlib.sha256(code).hexdigest()}, code


_engine: Any = None


def _llvm() -> Any:
    import llvmlite.binding as llvm

    return llvm


def _caller(key: tuple, header: dict[str, Any], code: bytes) -> Callable[..., Any] | None:
    """Load object code into this process and wrap it for Python; None when a symbol it
    needs cannot be resolved here."""
    global _engine
    llvm = _llvm()
    if _engine is None:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""),
                                             llvm.Target.from_default_triple().create_target_machine())
    for name in header["externals"]:
        if llvm.address_of_symbol(name) is None:
            helper = _helper(name)
            if helper is None:
                return None
            llvm.add_symbol(name, helper)
    _engine.add_object_file(llvm.ObjectFileRef.from_data(code))
    _engine.finalize_object()
    address = _engine.get_function_address(header["symbol"])
    if not address:
        return None
    ctypes_args: list[Any] = []
    for spec in key:
        if spec[0] == "array":
            ctypes_args += [ctypes.c_void_p] + [ctypes.c_int64] * spec[2]
        elif spec[0] == "ints":
            ctypes_args.append(ctypes.c_void_p)
        else:
            ctypes_args.append(_CTYPES[spec[1] if spec[0] == "scalar" else spec[0]])
    returns = header["returns"]
    function = ctypes.CFUNCTYPE(None if returns == "none" else _CTYPES[returns], *ctypes_args)(address)

    def call(*args: Any) -> Any:
        flat: list[Any] = []
        keep: list[Any] = []
        for spec, a in zip(key, args):
            if spec[0] == "array":
                flat.append(a.ctypes.data)
                flat.extend(a.shape)
            elif spec[0] == "ints":
                keep.append(ints := (ctypes.c_int64 * len(a))(*a))
                flat.append(ctypes.addressof(ints))
            else:
                flat.append(a)
        return function(*flat)

    return call


# ctypes' types by argument kind (argument_key), NumPy dtype (scalars) and numba type (results).
_CTYPES: dict[str, Any] = {
    "bool": ctypes.c_bool, "int": ctypes.c_int64, "float": ctypes.c_double,
    "<i8": ctypes.c_int64, "<i4": ctypes.c_int32, "<u8": ctypes.c_uint64, "<u4": ctypes.c_uint32,
    "<f8": ctypes.c_double, "<f4": ctypes.c_float, "int64": ctypes.c_int64, "int32": ctypes.c_int32,
    "uint64": ctypes.c_uint64, "uint32": ctypes.c_uint32, "float64": ctypes.c_double, "float32": ctypes.c_float,
}


def _helper(name: str) -> int | None:
    """The address of our own version of a symbol of numba's helper library that the
    wrapper's error path names. Kept kernels neither raise nor allocate, so that path is
    never taken; should it be, the process stops with a message rather than go on with
    a wrong result."""
    if not _HELPERS:
        api = ctypes.pythonapi
        api.PyGILState_Ensure.restype = ctypes.c_int
        api.PyGILState_Release.argtypes = [ctypes.c_int]

        def gil_ensure(state: Any) -> None:
            state[0] = api.PyGILState_Ensure()

        def gil_release(state: Any) -> None:
            api.PyGILState_Release(state[0])

        def unreachable() -> None:
            os.write(2, b"latentzip: a compiled kernel failed; delete the kernels folder of its cache and retry\n")
            os._exit(70)

        gil = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_int))
        _HELPERS.update({"numba_gil_ensure": gil(gil_ensure), "numba_gil_release": gil(gil_release)})
        for name in ("numba_do_raise", "numba_unpickle", "numba_runtime_build_excinfo_struct", "NRT_Free",
                     "NRT_MemInfo_call_dtor"):
            _HELPERS[name] = ctypes.CFUNCTYPE(None)(unreachable)
    helper = _HELPERS.get(name)
    return ctypes.cast(helper, ctypes.c_void_p).value if helper is not None else None
