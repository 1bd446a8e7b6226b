"""ImageCodec: uint8 images <-> the bytes of one .ltz file, and the model file format.

A file holds 1..N images of any shapes the model accepts. Its payload is one range-coded
stream: channel by channel, every image's integer latents in file order, then any
escaped values, then (with a max error) the refinement layer (see `refine`). Dense
models decode in exact integer arithmetic (see `fixed`). The header names the model by fingerprint (a hash of its config,
weights and tables), so decoding with the wrong model is an error, never noise.

A model file is a safetensors file (weights and integer tables; no pickle) whose
metadata holds the network config as JSON. It is safe to open from strangers. The
transforms' weight matrices are stored as int8, one float16 scale per output row (a
quarter of float32's bytes; on the shipped models it costs under 0.01 dB), everything
else as float16.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import constriction
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from .. import container
from ..data import drop_alpha
from ..errors import FormatError, LatentzipError, ModelError
from ..fsio import write_bytes
from . import catalog, refine
from .entropy import TOTAL, CodingTables, finish, read_channels, reader, write_channels
from .fixed import FixedSynthesis
from .model import Autoencoder
from .transforms import NetConfig

MODEL_FORMAT = "latentzip-image-model"
MODEL_VERSION = 2  # 2: transform matrices stored as int8 rows with float16 scales
FINGERPRINT_SIZE = 8
MAX_PIXELS = 1 << 26  # per image; bounds what a hostile header can make us allocate
MAX_LATENTS = 1 << 30  # per file, for the same reason
BATCH = 500
SCALE = ":scale"  # suffix of the tensor holding an int8 weight's row scales

ImagesLike = np.ndarray | Sequence[np.ndarray]


class ImageCodec:
    """A trained autoencoder with its frozen prior: a complete lossy image codec."""

    def __init__(
        self, model: Autoencoder, tables: CodingTables, meta: dict[str, Any] | None = None, name: str | None = None,
        refinement: refine.RefineTables | None = None,
    ):
        self.model = model.eval()
        self.tables = tables
        self.refinement = refinement
        self.meta = meta or {}
        self.name = name
        self.max_error: int | None = None  # the bound coding uses when a call names none
        self._coders = tables.models()
        self.fingerprint = self._fingerprint()
        try:
            self._fixed = FixedSynthesis(model.synthesis) if model.cfg.dense else None
        except ValueError as exc:
            raise ModelError(f"{self.label}: {exc}") from None

    # --- construction and storage ------------------------------------------------------

    @classmethod
    def from_model(cls, model: Autoencoder, meta: dict[str, Any] | None = None) -> "ImageCodec":
        """Round a trained model's weights to what its file stores (see `_pack`), freeze
        its prior into integer tables, and wrap it as a codec."""
        with torch.no_grad():
            for key, value in model.state_dict().items():
                if value.is_floating_point():
                    value.copy_(_unpack(_pack(key, value)))
        return cls(model, model.prior.freeze(), meta)

    def _tensors(self) -> dict[str, torch.Tensor]:
        """What the model file stores: the weights (exactly the values in use, see
        `_pack`) and the int32 tables."""
        tensors = {}
        for key, value in self.model.state_dict().items():
            packed = _pack(key, value.detach())
            tensors[f"net.{key}"] = packed[0].contiguous()
            if packed[1] is not None:
                tensors[f"net.{key}{SCALE}"] = packed[1]
        tensors["tables.counts"] = torch.from_numpy(self.tables.counts)
        tensors["tables.offsets"] = torch.from_numpy(self.tables.offsets)
        tensors["tables.lengths"] = torch.from_numpy(self.tables.lengths)
        if self.refinement is not None:
            tensors["refine.value_edges"] = torch.from_numpy(self.refinement.value_edges)
            tensors["refine.gradient_edges"] = torch.from_numpy(self.refinement.gradient_edges)
            tensors["refine.histogram"] = torch.from_numpy(self.refinement.histogram.astype(np.int32))
        return tensors

    def _fingerprint(self) -> bytes:
        digest = hashlib.sha256(json.dumps(asdict(self.model.cfg), sort_keys=True).encode())
        for key, value in sorted(self._tensors().items()):
            digest.update(key.encode())
            digest.update(str(tuple(value.shape)).encode())
            array = value.numpy()
            digest.update(array.astype(array.dtype.newbyteorder("<")).tobytes())
        return digest.digest()[:FINGERPRINT_SIZE]

    def to_bytes(self) -> bytes:
        meta = {
            "format": MODEL_FORMAT,
            "version": str(MODEL_VERSION),
            "net": json.dumps(asdict(self.model.cfg)),
            "meta": json.dumps(self.meta),
        }
        return save(self._tensors(), metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes, name: str | None = None) -> "ImageCodec":
        what = name or "model file"
        try:
            header_len = int.from_bytes(data[:8], "little")
            header = json.loads(data[8 : 8 + header_len])
            tensors = load(data)
        except (SafetensorError, ValueError, UnicodeDecodeError):
            raise ModelError(f"{what} is not a latentzip model (not a safetensors file)") from None
        meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
        if meta.get("format") != MODEL_FORMAT:
            raise ModelError(f"{what} is not a latentzip image model")
        if meta.get("version") != str(MODEL_VERSION):
            raise ModelError(f"{what} has model format version {meta.get('version')}; this build reads {MODEL_VERSION}")
        try:
            cfg = NetConfig(**json.loads(meta["net"]))
            model = Autoencoder(cfg)
            model.load_state_dict({
                k[4:]: _unpack((v, tensors.get(k + SCALE)))
                for k, v in tensors.items() if k.startswith("net.") and not k.endswith(SCALE)
            })
            tables = CodingTables(
                tensors["tables.counts"].numpy().astype(np.int32),
                tensors["tables.offsets"].numpy().astype(np.int32),
                tensors["tables.lengths"].numpy().astype(np.int32),
            )
            _check_tables(tables, cfg)
            refinement = None
            if "refine.histogram" in tensors:
                refinement = refine.RefineTables(
                    tensors["refine.value_edges"].numpy().astype(np.int32),
                    tensors["refine.gradient_edges"].numpy().astype(np.int32),
                    tensors["refine.histogram"].numpy().astype(np.int64),
                )
                refinement.check()
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{what} is damaged ({str(exc).splitlines()[0]})") from None
        return cls(model, tables, json.loads(meta.get("meta", "{}")), name, refinement)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "ImageCodec":
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read model {path}: {exc.strerror or exc}") from None
        return cls.from_bytes(data, name=str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        write_bytes(path, self.to_bytes())

    def named(self, name: str) -> "ImageCodec":
        """This codec, labelled `name` in messages."""
        self.name = name
        return self

    def bounded(self, max_error: int | None) -> "ImageCodec":
        """A view of this codec (same network, same fingerprint) that codes with the
        refinement layer at `max_error` whenever a call names no bound: what a shipped
        quality preset is. `bounded(None)` is the network alone."""
        self._check_refinement(max_error)
        view = copy.copy(self)
        view.max_error = max_error
        return view

    def with_refinement(self, images: ImagesLike) -> "ImageCodec":
        """This codec plus refinement tables fitted on (up to 5,000 of) `images`, so it
        can code with a bound on every pixel's error (`max_error`). A new model: its
        fingerprint differs from this one's."""
        batch = self._as_list(images[: refine.FIT_IMAGES])
        sizes = np.cumsum([im.size for im in batch])
        batch = batch[: max(1, int(np.searchsorted(sizes, refine.FIT_VALUES, side="right")))]
        latents = self._analyse(batch)
        base = self._synthesise(latents, [im.shape for im in batch])
        groups = [(guides, residuals) for _, guides, residuals, _ in self._residual_groups(batch, latents, base)]
        return ImageCodec(self.model, self.tables, dict(self.meta), self.name, refine.fit(groups))

    # --- coding ----------------------------------------------------------------------

    def encode(self, images: ImagesLike, names: Sequence[str] | None = None, max_error: int | None = None) -> bytes:
        """Compress uint8 images, (H, W) grey or (H, W, C), into the bytes of one file.

        With `max_error` d, a refinement layer follows the latents so that no decoded
        pixel differs from its original by more than d grey levels (0: lossless). None
        takes the codec's own bound (see `bounded`; a plain model has none). The other
        methods take `max_error` the same way."""
        batch = self._as_list(images)
        if names is not None and len(names) != len(batch):
            raise LatentzipError(f"got {len(names)} names for {len(batch)} images")
        max_error = self.bound_for(max_error)
        names = list(names) if names is not None else catalog.default_names(len(batch))
        cat = catalog.Catalog(names, [im.shape for im in batch], max_error)
        header = self.fingerprint + catalog.pack(cat)  # refuses a bad name before any coding
        latents = self._analyse(batch)
        values = list(np.concatenate([lat.reshape(self.tables.channels, -1) for lat in latents], axis=1))
        encoder = constriction.stream.queue.RangeEncoder()
        write_channels(encoder, self.tables, self._coders, values)
        if max_error is not None:
            base = self._synthesise(latents, [im.shape for im in batch])
            walk = refine.Walk(self.refinement, max_error)  # type: ignore[arg-type]
            for _, guides, residuals, _ in self._residual_groups(batch, latents, base):
                walk.encode(encoder, guides, refine.quantize(residuals, max_error))
        blob = container.pack(container.Kind.IMAGES, header, finish(encoder))
        catalog.check(cat, len(blob))
        return blob

    def decode(self, blob: bytes) -> list[np.ndarray]:
        """The images of a file, as uint8 arrays (H, W) for grey and (H, W, 3) for RGB."""
        return [image for _, image in self.decode_named(blob)]

    def decode_named(self, blob: bytes) -> list[tuple[str, np.ndarray]]:
        header, payload = container.unpack(blob, container.Kind.IMAGES)
        found = read_fingerprint(header)
        if found != self.fingerprint:
            raise ModelError(
                f"this file was made with model {found.hex()}, not with {self.label} ({self.fingerprint.hex()})"
            )
        cat = catalog.unpack(header[FINGERPRINT_SIZE:], len(blob))
        grids = [self._grid(shape) for shape in cat.shapes]
        per_image = [math.prod(g) for g in grids]
        sizes = [sum(per_image)] * self.tables.channels
        if sum(sizes) > MAX_LATENTS:
            raise FormatError("file declares more image data than latentzip accepts")
        if cat.max_error is not None:
            if not 0 <= cat.max_error <= refine.MAX_ERROR:
                raise FormatError(f"corrupt image file (refinement max error {cat.max_error})")
            self._check_refinement(cat.max_error)
        decoder = reader(payload)
        values = read_channels(decoder, self.tables, self._coders, sizes)
        stacked = np.stack(values)  # (channels, total latents per channel)
        starts = np.cumsum([0, *per_image])
        latents = [stacked[:, starts[i] : starts[i + 1]].reshape(self.tables.channels, *grids[i]) for i in range(len(grids))]
        images = self._synthesise(latents, cat.shapes)
        if cat.max_error is not None:
            walk = refine.Walk(self.refinement, cat.max_error)  # type: ignore[arg-type]
            for idx, guides, _, predicted in self._residual_groups(None, latents, images, cat.shapes):
                q = walk.decode(decoder, guides)
                for i, image in zip(idx, refine.restore(predicted, q, cat.max_error)):
                    images[i] = image.reshape(images[i].shape)
        return list(zip(cat.names, images))

    def estimate_bits(self, images: ImagesLike, max_error: int | None = None) -> float:
        """What the learned (float) prior says the latents of `images` cost, in bits, plus
        the refinement layer's ideal cost under its tables with `max_error`."""
        batch = self._as_list(images)
        max_error = self.bound_for(max_error)
        latents = self._analyse(batch)
        total = 0.0
        with torch.no_grad():
            for idx in self._groups([lat.shape for lat in latents]).values():
                q = torch.from_numpy(np.stack([latents[i] for i in idx])).float()
                total += float(-torch.log2(self.model.prior.likelihood(q)).sum())
        if max_error is not None:
            total += float(self._refinement_bits(batch, latents, max_error).sum())
        return total

    def reconstruct(self, images: ImagesLike, max_error: int | None = None) -> list[np.ndarray]:
        """What decode(encode(images, max_error=...)) returns, without the range coder:
        analysis, rounding, synthesis (and the quantized residual). Denoising and anomaly
        scores need the pixels, not the bytes."""
        batch = self._as_list(images)
        return self._reconstruct(batch, self._analyse(batch), self.bound_for(max_error))

    def code_bits(self, images: ImagesLike, max_error: int | None = None) -> np.ndarray:
        """Each image's cost in bits under the frozen integer tables, escapes (and the
        refinement layer, with `max_error`) included: the length the range coder reaches
        up to a few bytes per file. Unlike `estimate_bits` it is exact and per image, so
        it can score how unusual an image is to the model."""
        batch = self._as_list(images)
        return self._code_bits(batch, self._analyse(batch), self.bound_for(max_error))

    def reconstruct_with_bits(self, images: ImagesLike,
                              max_error: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """`reconstruct` and `code_bits` from one pass of the analysis network: anomaly
        scores need both."""
        batch = self._as_list(images)
        latents = self._analyse(batch)
        max_error = self.bound_for(max_error)
        return self._reconstruct(batch, latents, max_error), self._code_bits(batch, latents, max_error)

    def latents(self, images: ImagesLike) -> list[np.ndarray]:
        """Integer latents of each image: (latent,) for dense models, (latent, h, w) for conv."""
        return self._analyse(self._as_list(images))

    # --- internals ---------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.name or "this model"

    @property
    def cfg(self) -> NetConfig:
        return self.model.cfg

    def _grid(self, shape: tuple[int, int, int]) -> tuple[int, ...]:
        """Latent grid of one image of `shape`, after checking the model can code it."""
        h, w, c = shape
        cfg = self.cfg
        if c != cfg.channels:
            kinds = {1: "grey", 3: "RGB"}
            raise ModelError(f"{self.label} codes {kinds[cfg.channels]} images, not {kinds.get(c, f'{c}-channel')} ones")
        if cfg.dense:
            if (h, w) != (cfg.height, cfg.width):
                raise ModelError(f"{self.label} codes {cfg.height}x{cfg.width} images only, not {h}x{w}")
            return ()
        if h * w > MAX_PIXELS:
            raise FormatError(f"image of {h}x{w} pixels is larger than latentzip accepts")
        return (-(-h // cfg.stride), -(-w // cfg.stride))

    def _as_list(self, images: ImagesLike) -> list[np.ndarray]:
        """(H, W, C) uint8 arrays, one per image, each checked against the model."""
        if isinstance(images, np.ndarray):
            if images.ndim == 3 and self.cfg.channels == 1:
                images = images[..., None]
            if images.ndim != 4:
                raise LatentzipError(f"expected a batch of images shaped (N, H, W[, C]), got shape {images.shape}")
            batch = list(images)
        else:
            batch = [im[..., None] if im.ndim == 2 else im for im in images]
        batch = [drop_alpha(im, "an image") if isinstance(im, np.ndarray) else im for im in batch]
        for im in batch:
            if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3:
                raise LatentzipError("images must be uint8 arrays shaped (H, W) or (H, W, C)")
            self._grid(im.shape)
        return batch

    def bound_for(self, max_error: int | None) -> int | None:
        """The bound a call with `max_error` codes with: its own, else the codec's (None: no
        refinement); refused if this codec cannot refine."""
        bound = self.max_error if max_error is None else max_error
        self._check_refinement(bound)
        return bound

    def _check_refinement(self, max_error: int | None) -> None:
        if max_error is None:
            return
        if self.refinement is None:
            raise ModelError(f"{self.label} has no refinement tables, so it cannot bound the error; train it again with this version of latentzip")
        try:
            refine.check_max_error(max_error)
        except ValueError as exc:
            raise LatentzipError(str(exc)) from None

    def _refinement_bits(self, batch: list[np.ndarray], latents: list[np.ndarray], max_error: int) -> np.ndarray:
        """Each image's refinement cost in bits when `batch` is coded as one file."""
        bits = np.zeros(len(batch))
        base = self._synthesise(latents, [im.shape for im in batch])
        walk = refine.Walk(self.refinement, max_error)  # type: ignore[arg-type]
        for idx, guides, residuals, _ in self._residual_groups(batch, latents, base):
            bits[idx] = walk.costs(guides, refine.quantize(residuals, max_error))
        return bits

    def _residual_groups(
        self, batch: list[np.ndarray] | None, latents: list[np.ndarray], base: list[np.ndarray],
        shapes: Sequence[tuple[int, int, int]] | None = None,
    ):
        """Per group of same-shape images: (indices, integer guides, residuals (original
        minus base), base reconstructions), the last three stacked as int16 (n, H, W, C).
        Without `batch` (decoding) the residuals are None and `shapes` gives the shapes."""
        shapes = [im.shape for im in batch] if batch is not None else shapes
        for shape, idx in self._groups(shapes).items():  # type: ignore[arg-type]
            h, w, c = shape
            predicted = np.stack([base[i].reshape(h, w, c) for i in idx]).astype(np.int16)
            guides = predicted if self.cfg.dense else refine.activity(self.cfg, np.stack([latents[i] for i in idx]), (h, w))
            residuals = np.stack([batch[i] for i in idx]).astype(np.int16) - predicted if batch is not None else None
            yield idx, guides, residuals, predicted

    def _groups(self, shapes: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], list[int]]:
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, shape in enumerate(shapes):
            groups.setdefault(tuple(shape), []).append(i)
        return groups

    def _reconstruct(self, batch: list[np.ndarray], latents: list[np.ndarray],
                     max_error: int | None) -> list[np.ndarray]:
        out = self._synthesise(latents, [im.shape for im in batch])
        if max_error is not None:
            for idx, _, residuals, predicted in self._residual_groups(batch, latents, out):
                restored = refine.restore(predicted, refine.quantize(residuals, max_error), max_error)
                for i, image in zip(idx, restored):
                    out[i] = image.reshape(out[i].shape)
        return out

    def _code_bits(self, batch: list[np.ndarray], latents: list[np.ndarray], max_error: int | None) -> np.ndarray:
        bits = np.zeros(len(latents))
        for idx in self._groups([lat.shape for lat in latents]).values():
            stacked = np.stack([latents[i] for i in idx])
            for c in range(self.tables.channels):
                bits[idx] += self.tables.costs(stacked[:, c], c).reshape(len(idx), -1).sum(1)
        if max_error is not None:
            bits += self._refinement_bits(batch, latents, max_error)
        return bits

    def _analyse(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = [None] * len(batch)  # type: ignore[list-item]
        for _, idx in self._groups([im.shape for im in batch]).items():
            for start in range(0, len(idx), BATCH):
                chunk = idx[start : start + BATCH]
                x = torch.from_numpy(np.stack([batch[i] for i in chunk])).permute(0, 3, 1, 2).float().div_(255.0)
                q = self.model.analyse(x).to(torch.int64).numpy()
                for i, lat in zip(chunk, q):
                    out[i] = lat
        return out

    def _synthesise(self, latents: list[np.ndarray], shapes: Sequence[tuple[int, int, int]]) -> list[np.ndarray]:
        """Decoded pixels: exact integer arithmetic for dense models (the same on every
        machine), the float network for convolutional ones."""
        out: list[np.ndarray] = [None] * len(latents)  # type: ignore[list-item]
        for (h, w, c), idx in self._groups(shapes).items():
            for start in range(0, len(idx), BATCH):
                chunk = idx[start : start + BATCH]
                stacked = np.stack([latents[i] for i in chunk])
                if self._fixed is not None:
                    pixels = self._fixed(stacked).transpose(0, 2, 3, 1)
                else:
                    x = self.model.synthesise(torch.from_numpy(stacked).float(), (h, w))
                    pixels = torch.round(x.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
                for i, im in zip(chunk, pixels):
                    out[i] = im[..., 0] if c == 1 else im
        return out


def _pack(key: str, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """How a model file stores one weight: a transform's matrix or kernel as int8 with a
    float16 scale per output row (slice along the first axis), anything else as float16."""
    if value.ndim < 2 or not key.startswith(("analysis.", "synthesis.")):
        return value.half(), None
    scale = (value.abs().flatten(1).amax(1) / 127).half()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    rows = scale.float().view(-1, *[1] * (value.ndim - 1))
    return torch.round(value / rows).clamp(-127, 127).to(torch.int8), scale


def _unpack(packed: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
    """The float32 weight a stored one stands for (exact: int8 x float16 fits float32)."""
    value, scale = packed
    if (value.dtype == torch.int8) != (scale is not None):
        raise ValueError("a weight and its scale do not match")
    if scale is None:
        return value.float()
    return value.float() * scale.float().view(-1, *[1] * (value.ndim - 1))


def read_fingerprint(header: bytes) -> bytes:
    if len(header) < FINGERPRINT_SIZE:
        raise FormatError("truncated latentzip header")
    return header[:FINGERPRINT_SIZE]


def file_fingerprint(blob: bytes) -> bytes:
    """The fingerprint of the model an image file needs, after checking the file."""
    header, _ = container.unpack(blob, container.Kind.IMAGES)
    return read_fingerprint(header)


def _check_tables(tables: CodingTables, cfg: NetConfig) -> None:
    if tables.counts.ndim != 2 or tables.channels != cfg.latent or len(tables.lengths) != cfg.latent:
        raise ValueError("coding tables do not match the network")
    for c in range(tables.channels):
        n = int(tables.lengths[c])
        row = tables.counts[c]
        if not 0 < n < row.shape[0] or row[: n + 1].min() < 1 or int(row[: n + 1].sum()) != TOTAL:
            raise ValueError(f"coding table of channel {c} is invalid")


def load_model(model: str | os.PathLike[str]) -> ImageCodec:
    """A shipped model by name (see `latentzip models`) or a model file by path."""
    from . import zoo

    if isinstance(model, str) and model in zoo.names():
        return zoo.load(model)
    path = Path(model)
    if not path.exists():
        shipped = ", ".join(zoo.names()) or "none"
        raise ModelError(f"no model named {model!r} and no such file (shipped models: {shipped})")
    return ImageCodec.load(path)
