"""The model file: weights and integer tables in safetensors, the config as JSON.

A model file is safe to open from strangers: no pickle, and nothing in it is trusted
before it is checked. `ModelFile.parse` reads the safetensors header by hand and checks
every entry (dtype, shape, offsets inside the file, sizes that agree) before any tensor
is loaded; the codec then checks the shapes against the network its config describes,
built on PyTorch's meta device (which allocates nothing), before it builds the real
one, and every weight must be finite. So what a model file can make latentzip allocate
is a small multiple of its own size.

Weights of the transforms are stored as int8 with one float16 scale per output row (a
quarter of float32's bytes; on the shipped models it costs under 0.01 dB), other
weights as float16 and coding tables as int32. The fingerprint that image files name
is a hash of the file's config and tensors exactly as stored.

The metadata's `format` says which `Kind` of model a file is: an image codec, a
colourisation network (apps/colornet.py) or a watermark-removal network
(apps/marknet.py). Each reader takes one kind and refuses the others by name, saying
which verbs take them.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from ..errors import ModelError

FORMAT = "latentzip-image-model"
VERSION = 3  # 3: convolutional transforms on blocks, the hyperprior, quality ladders, alpha
READABLE = (2, 3)  # 2: dense networks with a factorized prior (the shipped MNIST models)
FINGERPRINT_SIZE = 8
SCALE = ":scale"  # suffix of the tensor holding an int8 weight's row scales
MAX_BYTES = 1 << 30
MAX_HEADER = 1 << 24
MAX_TENSORS = 10_000
_DTYPES = {"F16": (torch.float16, 2), "F32": (torch.float32, 4), "I8": (torch.int8, 1), "I32": (torch.int32, 4),
           "I64": (torch.int64, 8)}
_PACKED = ("net.analysis.", "net.synthesis.")  # weights stored as int8 rows with scales


@dataclass(frozen=True)
class Kind:
    """A kind of model file: what its metadata's "format" says, and how messages name it,
    so that a model handed to the wrong verb is refused by name."""

    format: str
    noun: str
    verbs: str  # the commands that take it
    version: int  # what this build writes
    readable: tuple[int, ...]  # what it reads

    @property
    def named(self) -> str:
        """The noun with its article, for messages."""
        return ("an " if self.noun[0] in "aeiou" else "a ") + self.noun


IMAGE_CODEC = Kind(FORMAT, "image codec", "encode, decode, eval, denoise, anomaly or embed", VERSION, READABLE)
COLORIZER = Kind("latentzip-colorize-model", "colourisation model", "colorize", 1, (1,))
UNMARKER = Kind("latentzip-unmark-model", "watermark-removal model", "denoise", 1, (1,))
KINDS = (IMAGE_CODEC, COLORIZER, UNMARKER)


@dataclass
class ModelFile:
    """A model file's contents as stored: what the fingerprint covers."""

    version: int
    net: dict[str, Any]  # the network config
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)  # free-form: training record, presets
    kind: Kind = IMAGE_CODEC

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of the config (JSON, sorted keys), then of every tensor in name order:
        its name, its shape as a Python tuple, its little-endian bytes; first 8 bytes."""
        digest = hashlib.sha256(json.dumps(self.net, sort_keys=True).encode())
        for key, value in sorted(self.tensors.items()):
            digest.update(key.encode())
            digest.update(str(tuple(value.shape)).encode())
            array = value.numpy()
            digest.update(array.astype(array.dtype.newbyteorder("<")).tobytes())
        return digest.digest()[:FINGERPRINT_SIZE]

    def to_bytes(self) -> bytes:
        metadata = {"format": self.kind.format, "version": str(self.version), "net": json.dumps(self.net),
                    "meta": json.dumps(self.meta)}
        return save({k: v.contiguous() for k, v in self.tensors.items()}, metadata=metadata)

    @classmethod
    def parse(cls, data: bytes, what: str, shapes: "ShapeCheck", kind: Kind = IMAGE_CODEC) -> "ModelFile":
        """Check and read a model file of `kind`; `shapes` checks the stored shapes
        against the config before any tensor is loaded (see `ShapeCheck`)."""
        if len(data) > MAX_BYTES:
            raise ModelError(f"{what} is larger than latentzip accepts ({len(data)} bytes)")
        header = _header(data, what)
        meta = header.pop("__metadata__", None)
        found = meta.get("format") if isinstance(meta, dict) else None
        if found != kind.format:
            other = next((k for k in KINDS if k.format == found), None)
            if other is None:
                raise ModelError(f"{what} is not a latentzip {kind.noun}")
            raise ModelError(f"{what} is {other.named}, not {kind.named}: use it with latentzip {other.verbs}")
        version = meta.get("version")
        if version not in {str(v) for v in kind.readable}:
            raise ModelError(f"{what} has model format version {version}; this build reads "
                             f"{', '.join(map(str, kind.readable))} (train it again with this version)")
        net, free = _json_object(meta.get("net"), what, "config"), _json_object(meta.get("meta", "{}"), what, "metadata")
        try:
            shapes(int(version), net, {k: tuple(v["shape"]) for k, v in header.items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{what} is damaged ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        try:
            tensors = load(data)
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{what} is damaged ({exc})") from None
        for key, value in tensors.items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise ModelError(f"{what} is damaged (tensor {key} holds values that are not finite)")
        return cls(int(version), net, tensors, free, kind)

    # --- weights: int8 rows with float16 scales -----------------------------------------

    @staticmethod
    def pack_weights(state: dict[str, torch.Tensor], prefix: str = "net.") -> dict[str, torch.Tensor]:
        """What a file stores for a module's state dict (see the module docstring)."""
        out = {}
        for key, value in state.items():
            stored, scale = pack(prefix + key, value.detach())
            out[prefix + key] = stored.contiguous()
            if scale is not None:
                out[prefix + key + SCALE] = scale
        return out

    def weights(self, prefix: str = "net.") -> dict[str, torch.Tensor]:
        """The float32 weights stored under `prefix`, without it."""
        out = {}
        for key, value in self.tensors.items():
            if key.startswith(prefix) and not key.endswith(SCALE):
                out[key[len(prefix):]] = unpack(value, self.tensors.get(key + SCALE))
        return out

    def integers(self, prefix: str) -> dict[str, np.ndarray]:
        """The integer tables stored under `prefix`, without it."""
        return {k[len(prefix):]: v.numpy().astype(np.int64) for k, v in self.tensors.items() if k.startswith(prefix)}


def kind_of(data: bytes, what: str) -> Kind | None:
    """The kind of model a file says it is; None when it is not a latentzip model."""
    meta = _header(data, what).get("__metadata__")
    found = meta.get("format") if isinstance(meta, dict) else None
    return next((k for k in KINDS if k.format == found), None)


ShapeCheck = Any  # Callable[[int, dict, dict[str, tuple[int, ...]]], None], raising ValueError


def pack(key: str, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """How a model file stores one weight: a transform's matrix or kernel as int8 with a
    float16 scale per output row (slice along the first axis), anything else as float16.

    Storing what a file holds stores it unchanged, so a saved model keeps its
    fingerprint: a row so small that its float16 scale is subnormal can round to other
    int8 values when packed again, so packing repeats until nothing changes."""
    if value.ndim < 2 or not key.startswith(_PACKED):
        return value.half(), None
    packed = _pack_rows(value)
    for _ in range(8):
        again = _pack_rows(unpack(*packed))
        if torch.equal(again[0], packed[0]) and torch.equal(again[1], packed[1]):
            break
        packed = again
    return packed


def _pack_rows(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = (value.abs().flatten(1).amax(1) / 127).half()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    rows = scale.float().view(-1, *[1] * (value.ndim - 1))
    return torch.round(value / rows).clamp(-127, 127).to(torch.int8), scale


def unpack(value: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """The float32 weight a stored one stands for (exact: int8 x float16 fits float32)."""
    if (value.dtype == torch.int8) != (scale is not None):
        raise ModelError("a model weight and its scale do not match (damaged model file)")
    if scale is None:
        return value.float()
    if scale.shape != value.shape[:1]:
        raise ModelError("a model weight's scales do not match its rows (damaged model file)")
    return value.float() * scale.float().view(-1, *[1] * (value.ndim - 1))


def stored_shapes(state: dict[str, torch.Size], prefix: str = "net.") -> dict[str, tuple[int, ...]]:
    """The shapes a file must hold for a module whose state dict has these shapes."""
    out: dict[str, tuple[int, ...]] = {}
    for key, shape in state.items():
        out[prefix + key] = tuple(shape)
        if len(shape) >= 2 and (prefix + key).startswith(_PACKED):
            out[prefix + key + SCALE] = (shape[0],)
    return out


def check_stored(expected: dict[str, tuple[int, ...]], stored: dict[str, tuple[int, ...]],
                 tables: tuple[str, ...] = ()) -> None:
    """Raise ValueError unless a file stores every tensor of `expected` at its shape, and
    nothing else but tables (rank 2 at most) under the prefixes `tables`."""
    for key, shape in stored.items():
        if key in expected:
            if expected[key] != shape:
                raise ValueError(f"tensor {key[:60]} has shape {shape}, the config needs {expected[key]}")
        elif not key.startswith(tables) or len(shape) > 2:
            raise ValueError(f"unexpected tensor {key[:60]}")
    missing = [k for k in expected if k not in stored]
    if missing:
        raise ValueError(f"tensor {missing[0][:60]} is missing")


def _header(data: bytes, what: str) -> dict[str, Any]:
    """The safetensors header, every entry checked against the file's real size."""
    damaged = f"{what} is not a latentzip model (not a safetensors file)"
    if len(data) < 8:
        raise ModelError(damaged)
    size = int.from_bytes(data[:8], "little")
    if size > min(MAX_HEADER, len(data) - 8):
        raise ModelError(damaged)
    try:
        header = json.loads(data[8 : 8 + size])
    except (ValueError, UnicodeDecodeError):
        raise ModelError(damaged) from None
    if not isinstance(header, dict) or len(header) > MAX_TENSORS:
        raise ModelError(damaged)
    body = len(data) - 8 - size
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise ModelError(f"{what} is damaged (its metadata is not text)")
            continue
        if not _entry_ok(entry, body):
            raise ModelError(f"{what} is damaged (tensor {_short(key)} is not stored as latentzip stores it)")
    return header


def _entry_ok(entry: Any, body: int) -> bool:
    if not isinstance(entry, dict) or entry.get("dtype") not in _DTYPES:
        return False
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not (isinstance(shape, list) and len(shape) <= 4 and all(isinstance(d, int) and 0 <= d < 1 << 31 for d in shape)):
        return False
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        return False
    begin, end = offsets
    return 0 <= begin <= end <= body and end - begin == math.prod(shape) * _DTYPES[entry["dtype"]][1]


def _json_object(text: Any, what: str, part: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise ModelError(f"{what} is damaged (its {part} is not a JSON object)")
    return value


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
