"""ImageCodec: uint8 images <-> the bytes of one .ltz file.

A file holds 1..N images of any shapes the model accepts, in chunks: runs of
consecutive images of one shape, of at most CHUNK_PIXELS pixels (a dense model codes
the whole file as one chunk), and each image larger than the tile side alone, coded
tile by tile (tiling.py). Each chunk's payload follows the last one's in a single
range-coded stream: its latents as the latent codec writes them (latents.py), then
(with a max error) the colour refinement layer (refine.py). Alpha is coded by the
alpha coder (alpha.py) into a stream of its own that opens the payload, chunk by chunk
in the same order: every chunk's for a model with alpha, each guided by the network's
alpha; for a model without, the chunks of images with alpha, with no guide (the
network codes their colour). The encoder writes that stream last, once every chunk's
colour is coded, so it can choose each image's alpha bound from what the colour costs
and how well it decodes (alphabound.py). A decoder holds one chunk at a time, and of a
tiled image its pixels, its latent grid and one tile's activations. Before any of it,
the colour under fully transparent pixels is replaced by what codes cheapest
(transparent.py).

Decoded pixels come from exact integer arithmetic (fixed.py) for every architecture:
a file decodes to the same pixels on every machine, thread count and device. The
header names the model by fingerprint (modelfile.py), so decoding with the wrong model
is an error, never noise.

Encoding may also fit each image's latents to it before rounding (objective.py), as
hard as the codec's `effort` says: a choice of the encoder alone, so files of any
effort decode the same way.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import constriction
import numpy as np
import torch

from .. import container, heap, metrics
from ..data import drop_alpha
from ..errors import FormatError, LatentzipError, LimitError, ModelError, printable
from ..fsio import read_bytes, write_bytes
from . import alphabound, catalog, direct, objective, refine, tiling, transparent
from .alpha import AlphaCoder
from .entropy import finish, reader
from .fixed import FixedConvSynthesis, FixedSynthesis
from .latents import Symbols
from .model import Autoencoder
from .modelfile import FINGERPRINT_SIZE, MAX_BYTES, VERSION, ModelFile, check_stored, stored_shapes
from .transforms import CHANNEL_NAMES, NetConfig, check_config

MAX_LATENTS = 1 << 30  # per file, for the same reason
BATCH = 500  # images per analysis call of a dense model
CHUNK_PIXELS = 1 << 22  # pixels of whole images coded together, at most
REFINE_PREFIX, ALPHA_PREFIX = "refine.", "refine_alpha."
ALPHA_SNAP = 12  # see ImageCodec._alpha_guide
FIT_PIXELS = 1 << 19  # latents are fitted (objective.py) on at most this many pixels at a time
# A tiled image's latents are fitted on fewer pixels at a time, and it is synthesised in
# pieces of at most SYNTHESIS_SIDE (ImageCodec._base), as its whole latent grid is held
# meanwhile: a 24 MP cut-out's `latentzip encode` peaked at 2.04 GB with FIT_PIXELS and
# its tiles, 1.60 GB with these (and each fit's freed heap handed back before quantizing).
TILE_FIT_PIXELS = 1 << 18
SYNTHESIS_SIDE = 512
SYNTHESIS = "synthesis"  # a tiled image's grid of the synthesis's fixed-point input (ImageCodec._paste)
OPAQUE = np.uint8(255)  # the alpha guide of a model without alpha (ImageCodec._base)
GRID_DTYPE = np.int32  # of a tiled image's grid where its values fit (ImageCodec._paste)

ImagesLike = np.ndarray | Sequence[np.ndarray]
# Told (pixels just done, pixels the whole job counts) as each tile or chunk is coded and
# synthesised: an encode that decodes as well (for a refinement layer or an alpha bound)
# counts every pixel twice.
Progress = Callable[[int, int], None]
Step = Callable[[int], None]  # a Progress with the job's total filled in


def _untold(pixels: int) -> None:
    """The Step of work no one follows."""


@dataclass(frozen=True)
class Chunk:
    """Images start .. stop-1, coded together; or image `start` alone, in `tiles`."""

    start: int
    stop: int
    tiles: tuple[tiling.Tile, ...] | None = None

    def take(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """The chunk's pixels, (n, H, W, C) (a view, for one image)."""
        if self.stop - self.start == 1:
            return batch[self.start][None]
        return np.stack(batch[self.start : self.stop])

    def shape(self, shapes: Sequence[tuple[int, int, int]]) -> tuple[int, int, int, int]:
        return (self.stop - self.start, *shapes[self.start])


class ImageCodec:
    """A trained autoencoder with its frozen latent codec: a complete lossy image codec."""

    def __init__(self, model: Autoencoder, file: ModelFile, name: str | None = None):
        self.model = model.eval()
        self.file = file
        self.name = name
        self.fingerprint = file.fingerprint
        self.meta = file.meta
        self.refinement = _refine_tables(file, REFINE_PREFIX)
        self.alpha_refinement = _refine_tables(file, ALPHA_PREFIX)  # decodes files from before the alpha coder
        self.max_error: int | None = None  # the bound coding uses when a call names none
        self.quality = self.meta.get("default_quality", self.cfg.qualities)  # likewise, 1-based
        self.effort = objective.default_effort(bool(self.cfg.post))  # how hard encoding fits latents (0: none)
        if not isinstance(self.quality, int) or not 1 <= self.quality <= self.cfg.qualities:
            raise ValueError(f"default quality {self.quality!r} of a model with {self.cfg.qualities}")
        try:
            if self.cfg.record.fixed_size:
                self._fixed: Any = FixedSynthesis(model.synthesis)
            else:
                self._fixed = FixedConvSynthesis(model.synthesis)
        except ValueError as exc:
            raise ModelError(f"{self.label}: {exc}") from None

    # --- construction and storage ------------------------------------------------------

    @classmethod
    def from_model(cls, model: Autoencoder, meta: dict[str, Any] | None = None) -> "ImageCodec":
        """Round a trained model's weights to what its file stores, freeze its latent
        codec into integer tables, and wrap it as a codec (without refinement tables:
        see `with_refinement`)."""
        tensors = ModelFile.pack_weights(model.state_dict())
        weights = ModelFile(VERSION, {}, tensors).weights()
        with torch.no_grad():
            for key, value in model.state_dict().items():
                value.copy_(weights[key])
        tables = model.latents.freeze()
        tensors.update({f"tables.{k}": torch.from_numpy(v.astype(np.int32)) for k, v in tables.items()})
        if "tables.inverse_gains" in tensors:  # they need more than 32 bits
            tensors["tables.inverse_gains"] = torch.from_numpy(tables["inverse_gains"].astype(np.int64))
        return cls(model, ModelFile(VERSION, asdict(model.cfg), tensors, dict(meta or {})))

    @classmethod
    def from_bytes(cls, data: bytes, name: str | None = None) -> "ImageCodec":
        what = name or "model file"
        file = ModelFile.parse(data, what, _check_shapes)
        cfg = _config(file.version, file.net)
        model = Autoencoder(cfg)
        try:
            weights = file.weights()
            if file.version == 2:  # the single density was the model's own `prior`
                weights = {("latents." + k if k.startswith("prior.") else k): v for k, v in weights.items()}
            model.load_state_dict(weights)
            model.latents.thaw(file.integers("tables."))
            codec = cls(model, file, name)
            for found in (codec.refinement, codec.alpha_refinement):
                if found is not None:
                    found.check()
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{what} is damaged ({str(exc).splitlines()[0]})") from None
        return codec

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "ImageCodec":
        """A model file; only a regular file of at most modelfile.MAX_BYTES is read."""
        return cls.from_bytes(read_bytes(path, MAX_BYTES), name=printable(os.fspath(path)))

    def to_bytes(self) -> bytes:
        return self.file.to_bytes()

    def save(self, path: str | os.PathLike[str]) -> None:
        write_bytes(path, self.to_bytes())

    def named(self, name: str) -> "ImageCodec":
        """This codec, labelled `name` in messages."""
        self.name = name
        return self

    def bounded(self, max_error: int | None, quality: int | None = None) -> "ImageCodec":
        """A view of this codec (same network, same fingerprint) that codes at `quality`
        with the refinement layer at `max_error` whenever a call names neither: what a
        shipped quality preset is. `bounded(None)` is the network alone."""
        self._check_refinement(max_error)
        view = copy.copy(self)
        view.max_error = max_error
        if quality is not None:
            view.quality = self.quality_for(quality)
        return view

    def at_effort(self, effort: int | None) -> "ImageCodec":
        """A view of this codec that encodes at `effort` (see `effort_for`)."""
        view = copy.copy(self)
        view.effort = self.effort_for(effort)
        return view

    def with_refinement(self, images: ImagesLike) -> "ImageCodec":
        """This codec plus refinement tables fitted on (up to 5,000 of) `images`, so it
        can code with a bound on every pixel's colour error (`max_error`). A new model:
        its fingerprint differs. The residuals are those of the analysis's latents
        (effort 0): fitting them first would take minutes here, and the layer's
        tables adapt to each file as it is coded anyway."""
        plain = self.at_effort(0)
        batch = self._as_list(images[: refine.FIT_IMAGES])
        sizes = np.cumsum([im.size for im in batch])
        batch = batch[: max(1, int(np.searchsorted(sizes, refine.FIT_VALUES, side="right")))]
        shapes = [im.shape for im in batch]
        groups: list[tuple[np.ndarray, np.ndarray]] = []
        for quality in range(1, self.cfg.qualities + 1):
            for chunk in self._chunks(shapes, self._tile_side(shapes)):
                x = _fit_channels(self._take(chunk, batch), self.cfg.channels)
                base = self._base(plain._symbols(x, quality), x.shape, quality)
                colour, base_colour = self._split(x)[0], self._split(base)[0]
                groups.append((base_colour, colour.astype(np.int16) - base_colour))  # signed
        tensors = {k: v for k, v in self.file.tensors.items() if not k.startswith((REFINE_PREFIX, ALPHA_PREFIX))}
        tensors.update({REFINE_PREFIX + k: torch.from_numpy(v) for k, v in refine.fit(groups).to_store().items()})
        file = ModelFile(self.file.version, self.file.net, tensors, dict(self.meta))
        codec = ImageCodec(self.model, file, self.name)
        codec.max_error, codec.quality = self.max_error, self.quality
        return codec

    def with_presets(self, ladder: Sequence[tuple[int, int | None]], images: ImagesLike) -> "ImageCodec":
        """This codec with named presets q1, q2, ... for the (quality, max error) points
        of `ladder`, lowest first, each described by its figures measured on `images`
        (one real file each, at this codec's effort). Presets are metadata: the
        fingerprint stays."""
        from .. import metrics

        batch = self._as_list(images)
        pixels = sum(im.shape[0] * im.shape[1] for im in batch)
        presets = {}
        for i, (quality, max_error) in enumerate(ladder, start=1):
            blob = self.encode(batch, quality=quality, max_error=max_error)
            psnr = metrics.mean_psnr([_restore_channels(im, im.shape[-1]) for im in batch], self.decode(blob))
            bound = "" if max_error is None else f", max error {max_error}"
            presets[f"q{i}"] = {"quality": quality, "max_error": max_error,
                                "description": f"quality {quality}{bound}: {8 * len(blob) / pixels:.3f} bpp, "
                                               f"{psnr:.2f} dB on {len(batch)} validation image{'s' * (len(batch) != 1)}"}
        default = next((n for n, p in presets.items() if p["quality"] == self.quality and p["max_error"] is None), None)
        file = ModelFile(self.file.version, self.file.net, self.file.tensors,
                         {**self.meta, "presets": presets, "default_preset": default})
        return ImageCodec(self.model, file, self.name)

    def presets(self) -> dict[str, dict[str, Any]]:
        """The named presets of this model file (see `with_presets`)."""
        found = self.meta.get("presets")
        return dict(found) if isinstance(found, dict) else {}

    def preset(self, name: str) -> "ImageCodec":
        """A view of this codec that codes at its preset `name` (q1, q2, ...)."""
        found = self.presets().get(name)
        if found is None:
            raise ModelError(f"{self.label} has no preset {printable(name, 40)} (it has: {', '.join(self.presets()) or 'none'})")
        bound, quality = (found.get(k) if isinstance(found, dict) else "" for k in ("max_error", "quality"))
        if not all(v is None or isinstance(v, int) for v in (bound, quality)):
            raise ModelError(f"{self.label} is damaged (its preset {printable(name, 40)} is not a quality and a bound)")
        return self.bounded(bound, quality).named(f"{self.label}:{name}")

    # --- coding ----------------------------------------------------------------------

    def encode(self, images: ImagesLike, names: Sequence[str] | None = None, max_error: int | None = None,
               quality: int | None = None, alpha_error: int | None = None, effort: int | None = None,
               progress: Progress | None = None) -> bytes:
        """Compress uint8 images, (H, W) grey or (H, W, C), into the bytes of one file.

        `quality` picks one of the model's qualities (1 .. its number of qualities,
        higher is better; None: the codec's own). With `max_error` d, a refinement layer
        follows the latents so that no decoded colour value differs from its original
        by more than d levels (0: lossless). None takes the codec's own bound (see
        `bounded`; a plain model has none). Alpha (of images with alpha, and of every
        image for a model with alpha) is kept within `alpha_error` (0: lossless; None:
        each image's bound of least bits + lmbda x error, see alphabound.py, no looser
        than the max error). `effort` (None: the codec's, see `effort_for`)
        trades encoding time for bytes. The other methods take these the same way.
        `progress` follows the work (see Progress)."""
        return self.at_effort(effort)._encode(images, names, max_error, quality, alpha_error, priced=False,
                                              progress=progress)[0]

    def encode_with_bits(self, images: ImagesLike, names: Sequence[str] | None = None, max_error: int | None = None,
                         quality: int | None = None, alpha_error: int | None = None,
                         effort: int | None = None) -> tuple[bytes, np.ndarray]:
        """`encode`, and what each image costs in the file (as `code_bits`) from the same
        pass: a bulk manifest lists both, and a second analysis pass would double its work."""
        return self.at_effort(effort)._encode(images, names, max_error, quality, alpha_error, priced=True)

    def _encode(self, images: ImagesLike, names: Sequence[str] | None, max_error: int | None, quality: int | None,
                alpha_error: int | None, priced: bool, progress: Progress | None = None) -> tuple[bytes, np.ndarray]:
        """`encode_with_bits`; without `priced`, the latents' bits are left out of the
        returned costs (pricing a hyperprior's latents takes as long as writing them).
        A file bounded by a max error codes some images directly instead (`_directly`)."""
        batch = self._as_list(images)
        if names is not None and len(names) != len(batch):
            raise LatentzipError(f"got {len(names)} names for {len(batch)} images")
        names = list(names) if names is not None else catalog.default_names(len(batch))
        shapes = [im.shape for im in batch]
        self.check_sizes([shape[:2] for shape in shapes])
        max_error, quality = self.bound_for(max_error), self.quality_for(quality)
        alpha_error = self._alpha_bound(alpha_error)
        catalog.pack(catalog.Catalog(names, shapes))  # refuses a bad name before any coding
        pixels = sum(h * w for h, w, *_ in shapes)
        told = _Told(progress, pixels * (self._passes(shapes, max_error, quality, alpha_error)
                                         + (max_error is not None)))
        chosen, every = self._directly(batch, max_error, quality, alpha_error, told)
        try:
            return self._file(batch, names, chosen, every, max_error, quality, alpha_error, priced, told)
        except LimitError:
            if not chosen.any():
                raise
        # Nearly blank images coded directly can make a file so small that a reader would
        # refuse the pixels it declares (catalog.Budget): such a file is the model's.
        return self._file(batch, names, np.zeros_like(chosen), None, max_error, quality, alpha_error, priced, told)

    def _file(self, batch: list[np.ndarray], names: list[str], chosen: np.ndarray,
              every: tuple[bytes, np.ndarray] | None, max_error: int | None, quality: int, alpha_error: int | None,
              priced: bool, told: "_Told") -> tuple[bytes, np.ndarray]:
        """The file of `batch`, the `chosen` images coded directly and the others by the
        model, and each image's bits. `every`: the direct stream of all of `batch` and its
        bits, if at hand (what the file holds when every image is chosen)."""
        rest = np.flatnonzero(~chosen)
        lossy = self._lossy([batch[i] for i in rest], max_error, quality, alpha_error, priced, told)
        stream, bits = b"", np.zeros(len(batch))
        bits[rest] = lossy.bits
        if chosen.all() and every is not None:
            stream, bits = every
        elif chosen.any():
            filled = [transparent.fill(batch[i]) for i in np.flatnonzero(chosen)]
            stream, bits[chosen] = direct.encode(filled, max_error)
        cat = catalog.Catalog(names, [im.shape for im in batch], max_error, self._stored_quality(quality),
                              lossy.alpha_error, lossy.tile, lossy.alpha_bytes,
                              chosen.tolist() if chosen.any() else None, len(stream) if chosen.any() else None)
        header = self.fingerprint + catalog.pack(cat)
        blob = container.pack(container.Kind.IMAGES, header, lossy.alpha_stream + stream + lossy.stream, cat.version)
        catalog.check(cat, len(blob))
        return blob, bits

    def _directly(self, batch: list[np.ndarray], max_error: int | None, quality: int, alpha_error: int | None,
                  told: "_Told") -> tuple[np.ndarray, tuple[bytes, np.ndarray] | None]:
        """Which images of a file bounded by `max_error` to code directly (direct.py):
        those whose direct code costs no more than the model's at effort 0, any error
        it adds weighed too (`_error_bits`); the model's latents alone, by the
        learned densities, settle most scanned pages without pricing the refinement
        layer. Also the direct stream of them all that priced them (None where none was
        priced), which is the file's when every image is chosen."""
        if max_error is None or not batch:
            return np.zeros(len(batch), dtype=bool), None
        filled = [transparent.fill(im) for im in batch]
        every = direct.encode(filled, max_error, told)
        errors = direct.errors(filled, max_error)
        costs = every[1] + _error_bits(batch, errors, np.zeros(len(batch)))  # the model's error at its least
        cheaper = costs <= self._latent_estimates(batch, quality)
        unsure = np.flatnonzero(~cheaper)
        shapes = [batch[k].shape for k in unsure]
        told.remaining(sum(h * w for h, w, _ in shapes) * (2 + self._passes(shapes, max_error, quality, alpha_error)))
        if len(unsure):
            images = [batch[k] for k in unsure]
            back, bits = self.at_effort(0)._pass(images, max_error, quality, alpha_error, step=told)
            theirs = np.array([_mse(im, b) if max_error else 0.0 for im, b in zip(images, back)])
            cheaper[unsure] = every[1][unsure] + _error_bits(images, errors[unsure], theirs) <= bits
        return cheaper, every

    def _passes(self, shapes: Sequence[tuple[int, ...]], max_error: int | None, quality: int,
                alpha_error: int | None) -> int:
        """How many times coding images of `shapes` by the model goes over their pixels:
        2 where the layers after the latents are coded over the decoded image (a
        refinement layer refines it, the network's alpha guides the alpha coder, or the
        alpha bound is chosen by the colour errors), else 1 (alpha, if any, is coded with
        a guide that says nothing)."""
        planes = self._planes(list(shapes), alpha_error, quality)
        alpha_decoded = planes is not None and (self.cfg.has_alpha or planes.lmbda is not None)
        return 2 if self._walks(max_error) or alpha_decoded else 1

    def _lossy(self, batch: list[np.ndarray], max_error: int | None, quality: int, alpha_error: int | None,
               priced: bool, told: "_Told") -> "_Coded":
        """`batch` coded by the model: the range-coded stream, the alpha coder's, and what
        the catalog says of them."""
        shapes = [im.shape for im in batch]
        planes = self._planes(shapes, alpha_error, quality)
        tile = self._tile_side(shapes)
        encoder = constriction.stream.queue.RangeEncoder()
        walks = self._walks(max_error)
        bits = np.zeros(len(batch))
        passes = self._passes(shapes, max_error, quality, alpha_error)
        decoded = passes == 2
        told.remaining(sum(h * w for h, w, *_ in shapes) * passes)
        for chunk in self._chunks(shapes, tile):
            x = self._take(chunk, batch)
            symbols = self._code_symbols(chunk, x, quality, encoder, bits[chunk.start : chunk.stop] if priced else None,
                                         keep=SYNTHESIS if decoded else None, step=told)
            if decoded:
                out = self._base(symbols, x.shape, quality, chunk.tiles is not None, told)
                if walks:
                    out = self._refine(walks, x, out, encoder=encoder, bits=bits[chunk.start : chunk.stop],
                                       tiles=chunk.tiles)
                self._hold_alpha(planes, chunk, x, out)
            elif planes is not None and _has_alpha(x.shape):  # the colour goes unread: the guide is blank
                self._hold_alpha(planes, chunk, x, np.broadcast_to(OPAQUE, (*x.shape[:3], self.cfg.channels + 1)))
        coded = _Coded(finish(encoder), bits, tile)
        if planes is not None:  # alpha last, in a stream of its own, once its bound can be chosen
            alpha = planes.code(alpha_error, max_error, write=True)
            coded.bits += alpha.bits
            coded.alpha_stream = alpha.coder.finish()
            coded.alpha_error = catalog.PER_IMAGE if alpha.per_image else int(alpha.bounds[0])
            coded.alpha_bytes = len(coded.alpha_stream)
        return coded

    def decode(self, blob: bytes, progress: Progress | None = None) -> list[np.ndarray]:
        """The images of a file, as uint8 arrays (H, W) for grey and (H, W, C) otherwise;
        `progress` follows the work (see Progress)."""
        return [image for _, image in self.iter_decode(blob, progress)]

    def decode_named(self, blob: bytes) -> list[tuple[str, np.ndarray]]:
        return list(self.iter_decode(blob))

    def iter_decode(self, blob: bytes, progress: Progress | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """(name, image) of each image of a file in order, decoding one chunk at a time,
        so memory does not grow with the number of images. The whole file is checked
        (checksum, model, catalog) before the first image comes out."""
        header, payload = container.unpack(blob, container.Kind.IMAGES)
        found = read_fingerprint(header)
        if found != self.fingerprint:
            raise ModelError(
                f"this file was made with model {found.hex()}, not with {self.label} ({self.fingerprint.hex()})"
            )
        cat = catalog.unpack(header[FINGERPRINT_SIZE:], len(blob), container.version_of(blob))
        directly = cat.direct or [False] * len(cat.shapes)
        shapes = [shape for shape, flag in zip(cat.shapes, directly) if not flag]  # the model's images
        for shape in shapes:
            self._grid(shape)
        if cat.tile is not None and (self.cfg.record.fixed_size or not tiling.valid_side(cat.tile, self.cfg.stride)):
            raise FormatError(f"corrupt image file (tile side {cat.tile})")
        if self._latent_count(shapes) > MAX_LATENTS:
            raise FormatError("file declares more image data than latentzip accepts")
        quality = self._file_quality(cat)
        per_image = cat.alpha_error == catalog.PER_IMAGE and cat.alpha_bytes is not None
        for bound in (cat.max_error, None if per_image else cat.alpha_error):
            if bound is not None and not 0 <= bound <= refine.MAX_ERROR:
                raise FormatError(f"corrupt image file (max error {bound})")
        self._check_refinement(cat.max_error)
        if (cat.alpha_error is not None) != self._codes_alpha(shapes):
            raise FormatError("corrupt image file (alpha bound does not match the model and images)")
        streams = {}
        for name, size in (("alpha", cat.alpha_bytes), ("direct", cat.direct_bytes)):
            if size is not None:
                if size > len(payload):
                    raise FormatError(f"corrupt image file (the {name} stream is longer than the file)")
                streams[name], payload = payload[:size], payload[size:]
        walks = self._walks(cat.max_error)
        alpha = None
        if "alpha" in streams:
            alpha = AlphaCoder(streams["alpha"], per_image)
        elif cat.alpha_error is not None:  # alpha as a refinement layer: a file from before the alpha coder
            if self.alpha_refinement is None or not self.cfg.has_alpha:
                raise FormatError("corrupt image file (no alpha stream)")
            walks.insert(0, ("alpha", refine.Walk(self.alpha_refinement, cat.alpha_error)))
        if "direct" in streams and cat.max_error is None:
            raise FormatError("corrupt image file (images coded directly in a file without a max error)")
        direct_images = direct.Reader(streams["direct"], cat.max_error) if "direct" in streams else None
        step = _Told(progress, sum(h * w for h, w, _ in cat.shapes))
        coded = self._iter_lossy(cat, shapes, quality, walks, alpha, per_image, reader(payload), step)
        for name, shape, flag in zip(cat.names, cat.shapes, directly):
            if flag:
                assert direct_images is not None
                image = direct_images.next(shape)
                step(shape[0] * shape[1])
            else:
                image = next(coded)
            yield name, image

    def _iter_lossy(self, cat: catalog.Catalog, shapes: list[tuple[int, int, int]], quality: int,
                    walks: list[tuple[str, refine.Walk]], alpha: AlphaCoder | None, per_image: bool, decoder: Any,
                    step: Step) -> Iterator[np.ndarray]:
        """The images of `shapes` that a file codes with the model, in order, one chunk
        at a time: from the range `decoder` (latents, then the refinement `walks`) and
        the `alpha` coder."""
        for chunk in self._chunks(shapes, cat.tile):
            shape = chunk.shape(shapes)
            symbols = self._read_symbols(decoder, chunk, shape, quality)
            images = self._base(symbols, shape, quality, chunk.tiles is not None, step)
            if alpha is not None and _has_alpha(images.shape):
                bounds = alpha.decode_bounds(len(images)) if per_image else cat.alpha_error
                for rows, cols in tiling.regions(chunk.tiles):
                    guide = np.ascontiguousarray(images[:, rows, cols, -1])
                    images[:, rows, cols, -1] = alpha.decode(guide, bounds)  # type: ignore[arg-type]
            if walks:
                images = self._refine(walks, None, images, decoder=decoder, tiles=chunk.tiles)
            for i in range(chunk.start, chunk.stop):
                yield _restore_channels(images[i - chunk.start], shapes[i][2])

    def estimate_bits(self, images: ImagesLike, max_error: int | None = None, quality: int | None = None,
                      alpha_error: int | None = None) -> float:
        """What the learned (float) densities say the latents of `images` cost, in bits,
        plus the ideal cost of the refinement layers and alpha under their tables."""
        batch = self._as_list(images)
        max_error, quality = self.bound_for(max_error), self.quality_for(quality)
        total = float(self._latent_estimates(batch, quality).sum())
        shapes = [im.shape for im in batch]
        if max_error is not None or self._codes_alpha(shapes):
            layers = self._pass(batch, max_error, quality, self._alpha_bound(alpha_error), latents=False)[1]
            total += float(layers.sum())
        return total

    def _latent_estimates(self, batch: list[np.ndarray], quality: int) -> np.ndarray:
        """What the learned (float) densities say each image's latents cost, in bits."""
        bits = np.zeros(len(batch))
        shapes = [im.shape for im in batch]
        for chunk in self._chunks(shapes, self._tile_side(shapes)):
            x = self._take(chunk, batch)
            for tile in chunk.tiles or (None,):
                with torch.no_grad():
                    bits[chunk.start : chunk.stop] += self.model.latents(self._analyse(x, tile), quality - 1,
                                                                         "rounded")[1].double().numpy()
        return bits

    def reconstruct(self, images: ImagesLike, max_error: int | None = None, quality: int | None = None,
                    alpha_error: int | None = None) -> list[np.ndarray]:
        """What decode(encode(images, ...)) returns, without the range coder: analysis,
        rounding, exact synthesis (and the quantized residuals). Denoising and anomaly
        scores need the pixels, not the bytes. It is the model's code: a file bounded by
        a max error may code an image directly instead (direct.py), within the same bound."""
        return self.reconstruct_with_bits(images, max_error, quality, alpha_error)[0]

    def code_bits(self, images: ImagesLike, max_error: int | None = None, quality: int | None = None,
                  alpha_error: int | None = None) -> np.ndarray:
        """Each image's cost in bits under the frozen integer tables, escapes and
        refinement layers included: the length the range coder reaches up to a few bytes
        per file. Unlike `estimate_bits` it is exact and per image, so it can score how
        unusual an image is to the model. It is the model's code: a file bounded by a max
        error codes an image directly instead where that costs fewer bits (direct.py)."""
        return self.reconstruct_with_bits(images, max_error, quality, alpha_error)[1]

    def reconstruct_with_bits(self, images: ImagesLike, max_error: int | None = None, quality: int | None = None,
                              alpha_error: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """`reconstruct` and `code_bits` from one pass of the analysis network: anomaly
        scores need both."""
        batch = self._as_list(images)
        return self._pass(batch, self.bound_for(max_error), self.quality_for(quality), self._alpha_bound(alpha_error))

    def latents(self, images: ImagesLike, quality: int | None = None) -> list[np.ndarray]:
        """Integer latents of each image: (latent,) for dense models, (latent, h, w) for conv."""
        batch = self._as_list(images)
        quality = self.quality_for(quality)
        out: list[np.ndarray] = []
        shapes = [im.shape for im in batch]
        for chunk in self._chunks(shapes, self._tile_side(shapes)):
            out.extend(self._code_symbols(chunk, self._take(chunk, batch), quality, keep="y")["y"])
        return out

    # --- internals ---------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.name or "this model"

    @property
    def cfg(self) -> NetConfig:
        return self.model.cfg

    def quality_for(self, quality: int | None) -> int:
        """The quality a call with `quality` codes at: its own, else the codec's."""
        chosen = self.quality if quality is None else quality
        if not isinstance(chosen, (int, np.integer)) or not 1 <= chosen <= self.cfg.qualities:
            only = "1" if self.cfg.qualities == 1 else f"1 to {self.cfg.qualities}"
            raise LatentzipError(f"{self.label} codes at quality {only}, not {chosen}")
        return int(chosen)

    def bound_for(self, max_error: int | None) -> int | None:
        """The bound a call with `max_error` codes with: its own, else the codec's (None: no
        refinement); refused if this codec cannot refine."""
        bound = self.max_error if max_error is None else max_error
        self._check_refinement(bound)
        return bound

    def effort_for(self, effort: int | None) -> int:
        """The effort a call with `effort` encodes at (its own, else the codec's): how
        many steps fit each image's latents to it before rounding (objective.py), from
        0 (none, the fastest) up; higher costs fewer bytes for the same quality and
        takes longer. Models that cannot fit (dense ones, or a file that does not
        record its lmbda) code the same at every effort."""
        chosen = self.effort if effort is None else effort
        top = len(objective.EFFORT_STEPS) - 1
        if not isinstance(chosen, (int, np.integer)) or not 0 <= chosen <= top:
            raise LatentzipError(f"effort is 0 to {top}, not {chosen}")
        return int(chosen)

    @staticmethod
    def _alpha_bound(alpha_error: int | None) -> int | None:
        """A bound on alpha asked for, checked; None: the encoder chooses (alphabound.py)."""
        if alpha_error is not None:
            try:
                refine.check_max_error(alpha_error)
            except ValueError as exc:
                raise LatentzipError(f"alpha: {exc}") from None
        return alpha_error

    def _codes_alpha(self, shapes: Sequence[tuple[int, ...]]) -> bool:
        """Whether a file of images of `shapes` (those it codes with the model) codes
        alpha: where it has any, always with a model with alpha, else where some image
        has it."""
        return bool(shapes) and (self.cfg.has_alpha or any(_has_alpha(s) for s in shapes))

    def _stored_quality(self, quality: int) -> int | None:
        """What the catalog stores: 0-based, and nothing for a model of one quality."""
        return quality - 1 if self.cfg.qualities > 1 else None

    def _file_quality(self, cat: catalog.Catalog) -> int:
        if (cat.quality is None) != (self.cfg.qualities == 1):
            raise FormatError("corrupt image file (quality does not match the model)")
        quality = 1 if cat.quality is None else cat.quality + 1
        if quality > self.cfg.qualities:
            raise FormatError(f"corrupt image file (quality {quality} of a model with {self.cfg.qualities})")
        return quality

    def _check_refinement(self, max_error: int | None) -> None:
        if max_error is None:
            return
        if self.refinement is None:
            raise ModelError(f"{self.label} has no refinement tables, so it cannot bound the error; train it again with this version of latentzip")
        try:
            refine.check_max_error(max_error)
        except ValueError as exc:
            raise LatentzipError(str(exc)) from None

    def _grid(self, shape: tuple[int, int, int]) -> tuple[int, ...]:
        """Latent grid of one image of `shape`, after checking the model can code it (its
        colour: alpha goes to the alpha coder)."""
        h, w, c = shape
        cfg = self.cfg
        if not _fits(c, cfg.channels):
            raise ModelError(f"{self.label} codes {CHANNEL_NAMES[cfg.channels]} images, not {CHANNEL_NAMES.get(c, f'{c}-channel')} ones")
        if h * w > catalog.MAX_IMAGE_PIXELS:
            raise FormatError(f"image of {h}x{w} pixels is larger than latentzip accepts")
        grid = cfg.record.grid(cfg, h, w)
        if grid is None:
            raise ModelError(f"{self.label} codes {cfg.height}x{cfg.width} images only, not {h}x{w}")
        return grid

    def _as_list(self, images: ImagesLike) -> list[np.ndarray]:
        """(H, W, C) uint8 arrays, one per image, each checked against the model."""
        if isinstance(images, np.ndarray):
            if images.ndim == 3:
                images = images[..., None]
            if images.ndim != 4:
                raise LatentzipError(f"expected a batch of images shaped (N, H, W[, C]), got shape {images.shape}")
            batch = list(images)
        else:
            batch = [im[..., None] if isinstance(im, np.ndarray) and im.ndim == 2 else im for im in images]
        if not self.cfg.has_alpha:  # an opaque alpha channel says nothing a model without alpha needs
            batch = [drop_alpha(im) if isinstance(im, np.ndarray) else im for im in batch]
        for im in batch:
            if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3:
                raise LatentzipError("images must be uint8 arrays shaped (H, W) or (H, W, C)")
            self._grid(im.shape)
        return batch

    def check_sizes(self, sizes: Sequence[tuple[int, int]]) -> None:
        """Refuse images of (height, width) `sizes` whose file the decoder would refuse for
        its latents (MAX_LATENTS), before they are coded, or read (from their headers)."""
        held = self._latent_count(sizes)
        if held > MAX_LATENTS:
            pixels = sum(h * w for h, w in sizes)
            raise LatentzipError(
                f"these {len(sizes):,} images ({pixels / 1e6:,.0f} megapixels) hold {held:,} latents, more than one "
                f"file may ({MAX_LATENTS:,}, about {pixels * MAX_LATENTS / held / 1e6:,.0f} megapixels of them): "
                "code them in several files (bulk jobs: a smaller --shard-size)")

    def _latent_count(self, sizes: Sequence[tuple[int, ...]]) -> int:
        """Latents a file of images of (height, width, ...) `sizes` holds: what MAX_LATENTS
        bounds, one count for the encoder and the decoder (sizes a fixed-size model cannot
        code count none: they are refused apart)."""
        grids = (self.cfg.record.grid(self.cfg, size[0], size[1]) for size in sizes)
        return sum(math.prod(grid) for grid in grids if grid is not None) * self.cfg.latent

    def _tile_side(self, shapes: Sequence[tuple[int, ...]]) -> int | None:
        """The tile side a file of images of `shapes` is coded with: None unless one of
        them is larger than tiling.SIDE (so files of smaller images are as before)."""
        if self.cfg.record.fixed_size or not any(tiling.needs_tiles(s, tiling.SIDE) for s in shapes):
            return None
        return tiling.SIDE

    def _chunks(self, shapes: Sequence[tuple[int, ...]], side: int | None) -> list[Chunk]:
        """The chunks of images of `shapes`: runs of one shape of at most CHUNK_PIXELS
        pixels, and the tiles of each image larger than `side` (None: no tiles)."""
        if self.cfg.record.fixed_size:
            return [Chunk(0, len(shapes))] if shapes else []
        out: list[Chunk] = []
        start = 0
        for i in range(len(shapes) + 1):
            if i < len(shapes) and i > start and shapes[i] == shapes[start] \
                    and (i - start + 1) * shapes[start][0] * shapes[start][1] <= CHUNK_PIXELS:
                continue
            if i > start:
                out.append(Chunk(start, i))
            start = i
            if i < len(shapes) and side is not None and tiling.needs_tiles(shapes[i], side):
                out.append(Chunk(i, i + 1, tuple(tiling.tiles(*shapes[i][:2], side, self.cfg.stride))))
                start = i + 1
        return out

    def _take(self, chunk: Chunk, batch: Sequence[np.ndarray]) -> np.ndarray:
        """A chunk's pixels as the model codes them: where they have alpha, with the
        colour under alpha 0 made cheap to code (transparent.py)."""
        return transparent.fill_all(chunk.take(batch))  # type: ignore[return-value]

    def _model_input(self, x: np.ndarray) -> torch.Tensor:
        """uint8 (n, H, W, C) as the network's float (n, C', H, W) input in [0, 1]."""
        return torch.from_numpy(_fit_channels(x, self.cfg.channels).astype(np.float32)).permute(0, 3, 1, 2).div_(255.0)

    def _analyse(self, x: np.ndarray, tile: tiling.Tile | None = None) -> torch.Tensor:
        """Float latents of one chunk (n, H, W, C), analysed BATCH images at a time; or
        of one tile of it, analysed with the margin of pixels its edge latents see, so
        they are the latents of the whole image there."""
        if tile is not None:
            rows, cols = (self._margin(span, size, self.cfg.stride) for span, size in zip((tile.rows, tile.cols), x.shape[1:3]))
            y = self._analyse(x[:, rows, cols])
            top, left = (tile.rows.start - rows.start) // self.cfg.stride, (tile.cols.start - cols.start) // self.cfg.stride
            h, w = self._grid((*tile.size, x.shape[3]))
            return y[:, :, top : top + h, left : left + w]
        step = BATCH if self.cfg.record.fixed_size else max(1, CHUNK_PIXELS // (x.shape[1] * x.shape[2]))
        return torch.cat([self.model.analyse(self._model_input(x[i : i + step])) for i in range(0, len(x), step)])

    def _margin(self, span: slice, size: int, unit: int) -> slice:
        """`span` of an axis of `size` widened by the architecture's halo of `unit`s each side."""
        halo = self.cfg.halo * unit
        return slice(max(0, span.start - halo), min(size, span.stop + halo))

    def _latents(self, x: np.ndarray, quality: int,
                 tile: tiling.Tile | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The float latents that are rounded and coded, and the side latents they are
        coded with (None: those `quantize` finds): the analysis's, fitted to the images
        (or to the tile's pixels) at this codec's effort with the analysis's side latents
        held (objective.fit_latents)."""
        y = self._analyse(x, tile)
        steps, lmbda = objective.EFFORT_STEPS[self.effort], self._lmbda(quality)
        if not steps or lmbda is None:
            return y, None
        side = self.model.latents.side_of(y, quality - 1)
        pixels = x if tile is None else x[:, tile.rows, tile.cols]
        # Fitting keeps every activation for its gradient, so it works on at most
        # FIT_PIXELS at a time: images in groups, a large image (or tile) in bands of
        # latent rows, whole side latents each (a 1024 px tile at once took 0.9 GB).
        s, (h, w) = self.cfg.stride, pixels.shape[1:3]
        budget = FIT_PIXELS if tile is None else TILE_FIT_PIXELS
        group = max(1, budget // (h * w))
        bands = -(-h * w // budget)
        rows = -(-y.shape[2] // (4 * bands)) * 4  # latent rows a band, a multiple of the side grid's 4
        fitted = y.clone()
        for i in range(0, len(y), group):
            for top in range(0, y.shape[2], rows):
                band = slice(top, top + rows)
                piece = self._model_input(pixels[i : i + group, top * s : (top + rows) * s])
                held = None if side is None else side[i : i + group, :, top // 4 : -(-(top + rows) // 4)]
                fitted[i : i + group, :, band] = objective.fit_latents(
                    self.model, piece, y[i : i + group, :, band], quality - 1, lmbda, steps, held)
        return fitted, side

    @property
    def trained_lmbda(self) -> float | None:
        """The top quality's lmbda this model was trained with, as its file records it;
        None where the file records no usable one (a positive, finite number)."""
        train = self.meta.get("train")
        top = train.get("lmbda") if isinstance(train, dict) else None
        return float(top) if isinstance(top, (int, float)) and 0 < top < math.inf else None

    def _lmbda(self, quality: int) -> float | None:
        """The lmbda this model was trained with at `quality`; None where it cannot fit
        latents (dense models code images of one size with no gains to fit in) or its
        file does not say."""
        top = self.trained_lmbda
        if self.cfg.record.fixed_size or top is None:
            return None
        return objective.lmbdas(top, self.cfg.qualities)[quality - 1]

    def _symbols(self, x: np.ndarray, quality: int) -> Symbols:
        y, side = self._latents(x, quality)
        return self.model.latents.quantize(y, quality - 1, side)

    def _code_symbols(self, chunk: Chunk, x: np.ndarray, quality: int, encoder: Any = None,
                      bits: np.ndarray | None = None, keep: str | None = SYNTHESIS, step: Step = _untold) -> Symbols:
        """The symbols of a chunk's images (n, H, W, C), written to `encoder` and priced
        into `bits` when given. A tiled image's tiles are quantized and coded one after
        the other, each with its own side information; what comes back is then the
        whole image's grid of `keep`: SYNTHESIS (what the synthesis reads, `_paste`),
        "y" (the main symbols), or None: nothing, where no layer after the latents
        needs the image decoded."""
        def emit(symbols: Symbols) -> Symbols:
            if encoder is not None:
                self.model.latents.write(encoder, symbols, quality - 1)
            if bits is not None:
                bits[:] += self.model.latents.bits(symbols, quality - 1)  # in place: the caller's slice
            return symbols

        if chunk.tiles is None:
            symbols = emit(self._symbols(x, quality))
            step(x.shape[0] * x.shape[1] * x.shape[2])
            return symbols
        grid: Symbols = {}
        for tile in chunk.tiles:
            y, side = self._latents(x, quality, tile)
            heap.release()  # the fit's activations, before quantizing piles more on their holes
            symbols = emit(self.model.latents.quantize(y, quality - 1, side))
            if keep is not None:
                self._paste(grid, keep, x.shape, tile, symbols, quality)
            heap.release()
            step(tile.size[0] * tile.size[1])
        return grid

    def _read_symbols(self, decoder: Any, chunk: Chunk, shape: tuple[int, int, int, int], quality: int) -> Symbols:
        """What `_code_symbols` wrote for a chunk of `shape`, read back (a tiled image's
        as its grid of SYNTHESIS)."""
        if chunk.tiles is None:
            return self.model.latents.read(decoder, shape[0], self._grid(shape[1:]), quality - 1)
        grid: Symbols = {}
        for tile in chunk.tiles:
            tile_grid = self._grid((*tile.size, shape[3]))
            self._paste(grid, SYNTHESIS, shape, tile, self.model.latents.read(decoder, 1, tile_grid, quality - 1),
                        quality)
            heap.release()
        return grid

    def _paste(self, grid: Symbols, key: str, shape: tuple[int, ...], tile: tiling.Tile, symbols: Symbols,
               quality: int) -> None:
        """Put one tile's (1, latent, h, w) main symbols ("y") or synthesis input
        (SYNTHESIS: the latent codec's fixed-point latents, elementwise in its symbols, so
        a tile's equal the whole grid's there) in place in `grid`, that of a whole tiled
        image. GRID_DTYPE where the values fit (the symbols and means of a 24 MP image
        as int32 took 0.6 GB; its synthesis input takes half of that), else int64."""
        part = symbols["y"] if key == "y" else self.model.latents.fixed_input(symbols, quality - 1).numpy()
        whole = grid.setdefault(key, np.empty((1, self.cfg.latent, *self._grid(shape[1:])), GRID_DTYPE))
        narrow = np.iinfo(whole.dtype)
        if part.size and (part.min() < narrow.min or part.max() > narrow.max):
            whole = grid[key] = whole.astype(np.int64)
        top, left = tile.rows.start // self.cfg.stride, tile.cols.start // self.cfg.stride
        whole[:, :, top : top + part.shape[2], left : left + part.shape[3]] = part

    def _base(self, symbols: Symbols, shape: tuple[int, ...], quality: int, tiled: bool = False,
              step: Step = _untold) -> np.ndarray:
        """The network's reconstruction (n, H, W, C') of one chunk, in exact integer
        arithmetic, with the model's channels, and an alpha guide for the alpha coder
        where the chunk's images have alpha that the model lacks. A tiled image is
        synthesised piece by piece from its whole grid of SYNTHESIS, each piece with the
        margin of latents its edge pixels see: the same pixels as in one piece, with a
        piece's memory. The pieces are the decoder's own (SYNTHESIS_SIDE, whatever
        the file's tile side): exact arithmetic gives the same pixels however the grid is
        cut."""
        n, h, w = shape[:3]
        if self.cfg.record.fixed_size:
            base = self._pixels(self._fixed(symbols["y"]), h, w)
        elif not tiled:
            base = self._pixels(self._fixed(self.model.latents.fixed_input(symbols, quality - 1), quality - 1), h, w)
        else:
            base = np.empty((n, h, w, self.cfg.channels), np.uint8)
            s = self.cfg.stride
            for tile in tiling.tiles(h, w, -(-SYNTHESIS_SIDE // s) * s, s):
                rows, cols = (self._margin(slice(span.start // s, -(-span.stop // s)), size, 1)
                              for span, size in zip((tile.rows, tile.cols), symbols[SYNTHESIS].shape[2:]))
                latents = torch.from_numpy(symbols[SYNTHESIS][:, :, rows, cols].astype(np.int64))
                pixels = self._pixels(self._fixed(latents, quality - 1), (rows.stop - rows.start) * s,
                                      (cols.stop - cols.start) * s)
                top, left = tile.rows.start - rows.start * s, tile.cols.start - cols.start * s
                height, width = tile.size
                base[:, tile.rows, tile.cols] = pixels[:, top : top + height, left : left + width]
                heap.release()
                step(height * width)
        if not tiled:
            step(n * h * w)
        if self.cfg.has_alpha:
            return self._alpha_guide(base)
        if _has_alpha(shape):  # no network alpha to guide the alpha coder: a guide that says nothing
            return np.concatenate([base, np.full((*base.shape[:-1], 1), OPAQUE, np.uint8)], axis=-1)
        return base

    @staticmethod
    def _pixels(pixels: np.ndarray, h: int, w: int) -> np.ndarray:
        """Synthesis output (n, C', H', W') cropped to h x w, as (n, h, w, C')."""
        return np.ascontiguousarray(pixels[:, :, :h, :w].transpose(0, 2, 3, 1))

    def _alpha_guide(self, base: np.ndarray) -> np.ndarray:
        """The network's alpha made a better guess for the alpha refinement: values within
        ALPHA_SNAP of fully transparent or opaque become so, as most alpha is (icons and
        cut-outs are flat inside and outside their edges)."""
        out = base.copy()
        alpha = out[..., -1]
        alpha[alpha <= ALPHA_SNAP] = 0
        alpha[alpha >= 255 - ALPHA_SNAP] = 255
        return out

    @staticmethod
    def _split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(colour channels, alpha channel or None) of (n, H, W, C') images."""
        if not _has_alpha(x.shape):
            return x, None
        return x[..., :-1], x[..., -1:]

    def _walks(self, max_error: int | None) -> list[tuple[str, refine.Walk]]:
        """The refinement walks a file codes: the colour layer, with a max error."""
        if max_error is None:
            return []
        return [("colour", refine.Walk(self.refinement, max_error))]  # type: ignore[arg-type]

    def _refine(self, walks: list[tuple[str, refine.Walk]], x: np.ndarray | None, base: np.ndarray,
                encoder: Any = None, decoder: Any = None, bits: np.ndarray | None = None,
                tiles: Sequence[tiling.Tile] | None = None) -> np.ndarray:
        """Code (encoder), decode (decoder) or only price one chunk's refinement layers
        over the base reconstruction, adding their cost to `bits` when given; returns the
        restored chunk (n, H, W, C'). A tiled image's go tile by tile."""
        if tiles is not None:
            out = np.empty_like(base)
            for t in tiles:
                part = None if x is None else x[:, t.rows, t.cols]
                out[:, t.rows, t.cols] = self._refine(walks, part, base[:, t.rows, t.cols], encoder, decoder, bits)
            return out
        original = None if x is None else _fit_channels(x, base.shape[-1])
        parts = dict(zip(("colour", "alpha"), self._split(base)))
        truth = dict(zip(("colour", "alpha"), self._split(original))) if original is not None else {}
        for part, walk in walks:
            guide = parts[part]
            if decoder is not None:
                q = walk.decode(decoder, guide)
            else:
                q = refine.quantize(truth[part].astype(np.int16) - guide, walk.max_error)
                cost = walk.encode(encoder, guide, q) if encoder is not None else walk.costs(guide, q)
                if bits is not None:
                    bits += cost
            parts[part] = refine.restore(guide, q, walk.max_error)
        colour, alpha = parts["colour"], parts.get("alpha")
        return colour if alpha is None else np.concatenate([colour, alpha], axis=-1)

    def _hold_alpha(self, planes: alphabound.Planes | None, chunk: Chunk, x: np.ndarray, out: np.ndarray) -> None:
        """Keep a coded chunk's alpha (`out`: its colour as decoded and the alpha guide)
        for coding once the images' alpha bounds are chosen."""
        if planes is not None and _has_alpha(out.shape):
            planes.add(chunk.start, _fit_channels(x, out.shape[-1]), out, chunk.tiles)

    def _planes(self, shapes: Sequence[tuple[int, ...]], alpha_error: int | None,
                quality: int) -> alphabound.Planes | None:
        """What holds a file's alpha until its bound is known; None where it codes no
        alpha. Only a file not given a bound weighs errors, at the quality's lmbda."""
        if not self._codes_alpha(shapes):
            return None
        return alphabound.Planes(len(shapes), self._lmbda(quality) if alpha_error is None else None)

    def _pass(self, batch: list[np.ndarray], max_error: int | None, quality: int, alpha_error: int | None,
              latents: bool = True, step: Step = _untold) -> tuple[list[np.ndarray], np.ndarray]:
        """Reconstructions and exact bits of `batch` coded as one file (no range coder),
        its alpha as `_encode` codes it; the bits of the refinement layers and alpha
        alone unless `latents`."""
        images: list[np.ndarray] = []
        bits = np.zeros(len(batch))
        walks = self._walks(max_error)
        shapes = [im.shape for im in batch]
        planes = self._planes(shapes, alpha_error, quality)
        for chunk in self._chunks(shapes, self._tile_side(shapes)):
            x = self._take(chunk, batch)
            symbols = self._code_symbols(chunk, x, quality, bits=bits[chunk.start : chunk.stop] if latents else None,
                                         step=step)
            out = self._base(symbols, x.shape, quality, chunk.tiles is not None, step)
            if walks:
                out = self._refine(walks, x, out, bits=bits[chunk.start : chunk.stop], tiles=chunk.tiles)
            self._hold_alpha(planes, chunk, x, out)
            images.extend(out)
        if planes is not None:  # never looser than the colour's max error
            coded = planes.code(alpha_error, max_error)
            bits += coded.bits
            for i, plane in planes.restored(coded.bounds).items():
                images[i][..., -1] = plane
        return [_restore_channels(im, original.shape[-1]) for im, original in zip(images, batch)], bits


@dataclass
class _Coded:
    """Images coded by the model (ImageCodec._lossy): the range-coded stream, each
    image's bits, the tile side, and the alpha coder's stream with its catalog fields."""

    stream: bytes
    bits: np.ndarray
    tile: int | None
    alpha_stream: bytes = b""
    alpha_error: int | None = None
    alpha_bytes: int | None = None


def _mse(truth: np.ndarray, decoded: np.ndarray) -> float:
    """metrics.mse of one image, in bands of rows, so that a large image's float copies stay small."""
    rows, decoded = max(1, alphabound.PIECE_PIXELS // truth.shape[1]), decoded.reshape(truth.shape)
    return sum(metrics.mse(truth[top : top + rows], decoded[top : top + rows]) * len(truth[top : top + rows])
               for top in range(0, len(truth), rows)) / len(truth)


def _error_bits(images: Sequence[np.ndarray], ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """What the direct code's mean squared error `ours`, where it is above the model's
    `theirs`, costs each image in bits: near lossless a code spends about half a bit
    more on each value for each halving of its squared error (6 dB a bit), so half the
    log2 of the ratio for each value. At lower rates that overcharges, which errs
    towards the model's code; a direct code with less error is given no credit for it,
    so it is never chosen for more bytes (on one 28x28 digit alone `mnist:q4` coded it
    directly in 84 bytes for 1.2 dB more, where the model took 65). Both errors are
    floored at the error of rounding to 8 bits, so that two exact codes weigh the same."""
    values = np.array([im.size for im in images], dtype=np.float64)
    floor = alphabound.ROUNDING_ERROR
    return values / 2 * np.maximum(np.log2(np.maximum(ours, floor) / np.maximum(theirs, floor)), 0.0)


def _fits(channels: int, model_channels: int) -> bool:
    """Whether an image of `channels` can be coded by a model of `model_channels`: its
    own colour, or grey by a colour model; with or without alpha."""
    return (channels - 1) // 2 * 2 + 1 <= (model_channels - 1) // 2 * 2 + 1


class _Told:
    """A job's Step: `progress` (if any) told the pixels done against the job's total,
    which an encode sets right as it learns what is left (it prices both codes of a file
    bounded by a max error before it codes anything)."""

    def __init__(self, progress: Progress | None, total: int):
        self.progress, self.done, self.total = progress, 0, total

    def remaining(self, pixels: int) -> None:
        """What is left from here on: `pixels` steps."""
        self.total = self.done + pixels

    def __call__(self, pixels: int) -> None:
        self.done += pixels
        if self.progress is not None:
            self.progress(pixels, self.total)


def _has_alpha(shape: tuple[int, ...]) -> bool:
    """Whether images of `shape` (..., C) have an alpha channel (C = 2 or 4)."""
    return shape[-1] % 2 == 0


def covering_channels(counts: Iterable[int]) -> int:
    """The fewest channels a model needs to code images of each of `counts` channels:
    colour if any image has colour, alpha if any has alpha (grey + alpha and RGB: RGBA)."""
    counts = set(counts)
    colour = any(c >= 3 for c in counts)
    alpha = any(c % 2 == 0 for c in counts)
    return (3 if colour else 1) + (1 if alpha else 0)


def _fit_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """(n, H, W, c) images with the model's channels: grey repeated as RGB, opaque alpha
    added where the model has alpha and the image none."""
    have = x.shape[-1]
    if have == channels:
        return x
    colour, alpha = (x[..., :-1], x[..., -1:]) if have % 2 == 0 else (x, None)
    if channels >= 3 and colour.shape[-1] == 1:
        colour = np.repeat(colour, 3, axis=-1)
    if channels % 2 == 0:
        alpha = alpha if alpha is not None else np.full(x.shape[:-1] + (1,), 255, np.uint8)
        return np.concatenate([colour, alpha], axis=-1)
    return colour


def _restore_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A decoded (H, W, C') image with the channels its original had: a grey original
    takes the rounded mean of the colour channels, an original without alpha drops it."""
    have = image.shape[-1]
    if have != channels:
        colour = image[..., :-1] if have % 2 == 0 else image
        alpha = image[..., -1:] if have % 2 == 0 and channels % 2 == 0 else None
        if channels <= 2 and colour.shape[-1] == 3:
            colour = ((colour.astype(np.uint16).sum(-1, keepdims=True) + 1) // 3).astype(np.uint8)
        image = colour if alpha is None else np.concatenate([colour, alpha], axis=-1)
    return image[..., 0] if image.shape[-1] == 1 else image


def _refine_tables(file: ModelFile, prefix: str) -> refine.RefineTables | None:
    found = file.integers(prefix)
    return refine.RefineTables.from_store(found) if found else None


def _config(version: int, net: dict[str, Any]) -> NetConfig:
    """The checked network config of a model file (ValueError if unusable)."""
    try:
        cfg = NetConfig(**net)
        check_config(cfg)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad network config: {exc}") from None
    if version == 2 and not cfg.record.fixed_size:
        raise ModelError("this convolutional model was made by an earlier version of latentzip; train it again")
    return cfg


def _check_shapes(version: int, net: dict[str, Any], stored: dict[str, tuple[int, ...]]) -> None:
    """Raise ValueError unless the stored tensors are those of the network `net`
    describes, with tables of sane rank: the network is built on the meta device,
    which allocates nothing."""
    cfg = _config(version, net)
    with torch.device("meta"):
        state = Autoencoder(cfg).state_dict()
    if version == 2:
        state = {k.removeprefix("latents."): v for k, v in state.items()}
    check_stored(stored_shapes({k: v.shape for k, v in state.items()}), stored, ("tables.", REFINE_PREFIX, ALPHA_PREFIX))


def read_fingerprint(header: bytes) -> bytes:
    if len(header) < FINGERPRINT_SIZE:
        raise FormatError("truncated latentzip header")
    return header[:FINGERPRINT_SIZE]


def file_header(blob: bytes) -> tuple[bytes, catalog.Catalog]:
    """The fingerprint of the model an image file needs and what the file holds (names,
    shapes, quality, bounds), after checking the file (once: the check reads every byte)."""
    header, _ = container.unpack(blob, container.Kind.IMAGES)
    found = catalog.unpack(header[FINGERPRINT_SIZE:], len(blob), container.version_of(blob))
    return read_fingerprint(header), found


def file_catalog(blob: bytes) -> catalog.Catalog:
    """What an image file holds, after checking the file."""
    return file_header(blob)[1]


def file_fingerprint(blob: bytes) -> bytes:
    """The fingerprint of the model an image file needs, after checking the file."""
    header, _ = container.unpack(blob, container.Kind.IMAGES)
    return read_fingerprint(header)
