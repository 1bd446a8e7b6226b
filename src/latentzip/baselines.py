"""Classical codecs, run through their real encoders so that we compare against real files.

Every image baseline returns the complete file its library writes (headers and container
included): on 28x28 images those headers are a large share of the bytes, and that is the
honest cost of storing one small image in the format. Grey images are coded as grey
wherever the format allows it; WebP cannot, see `IMAGE_BASELINES`.

`PCACodec` is the linear-transform baseline, and `BYTE_BASELINES` are the general-purpose
compressors the lossless benchmarks compare with, at the levels the benchmarks use.
`DENOISERS`, `pca_anomaly_scores`, `isolation_forest_scores` and `ChromaTable` are the
classical peers of the applications (denoising, anomaly detection and colourisation).
"""

from __future__ import annotations

import bz2
import io
import lzma
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import brotli
import imagecodecs
import numpy as np
import zstandard
from PIL import Image
from sklearn.decomposition import PCA
from tqdm import tqdm

from latentzip import metrics

Images = np.ndarray | Sequence[np.ndarray]
Writer = Callable[[np.ndarray, float | None, Mapping[str, Any]], bytes]


def _as_image(image: np.ndarray) -> np.ndarray:
    """Check an 8-bit grey (H, W), (H, W, 1), grey + alpha (H, W, 2), RGB (H, W, 3) or
    RGBA (H, W, 4) image; (H, W, 1) becomes (H, W), and grey + alpha RGBA, which every
    format with alpha takes (`decode` gives it back with channels=2)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 2:
        image = image[:, :, [0, 0, 0, 1]]
    if image.ndim != 2 and not (image.ndim == 3 and image.shape[2] in (3, 4)):
        raise ValueError(f"expected a grey (H, W), grey + alpha (H, W, 2), RGB (H, W, 3) or RGBA (H, W, 4) image, "
                         f"got {image.shape}")
    return image


def composite(image: np.ndarray) -> np.ndarray:
    """An image with alpha (grey + alpha or RGBA) over black (premultiplied colour,
    rounded), for formats without alpha: what `metrics` compares of an image with
    alpha, less the alpha itself."""
    colour = image[..., :-1].astype(np.float64) * image[..., -1:] / 255.0
    return np.round(colour).astype(np.uint8)


def _channels(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else image.shape[2]


def _pillow_writer(fmt: str) -> Writer:
    """An encoder writing `fmt` with Pillow; quality is rounded to Pillow's integer scale."""

    def write(image: np.ndarray, quality: float | None, options: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        extra = {} if quality is None else {"quality": round(quality)}
        Image.fromarray(image).save(buf, format=fmt, **options, **extra)
        return buf.getvalue()

    return write


def _pillow_read(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)))


def _jxl_write(image: np.ndarray, quality: float | None, options: Mapping[str, Any]) -> bytes:
    """JPEG XL through libjxl; `level` is libjxl's quality, mapped to a Butteraugli distance."""
    return imagecodecs.jpegxl_encode(image, level=quality, **options)


@dataclass(frozen=True)
class ImageBaseline:
    """One image format: a real encoder/decoder pair and its default quality sweep.

    `quality` runs 0..100 for every lossy format (higher is better); the lossless PNG takes
    none. `options` are the fixed encoder settings, e.g. speed or effort; change them with
    `dataclasses.replace`. `payload` counts the bytes of a file's coded image data, without
    its headers and container, where the format lets them be told apart byte by byte.
    """

    name: str
    qualities: tuple[float, ...]
    options: Mapping[str, Any]
    write: Writer = field(repr=False)
    read: Callable[[bytes], np.ndarray] = field(repr=False)
    payload: Callable[[bytes], int] | None = field(default=None, repr=False)

    @property
    def lossless(self) -> bool:
        return not self.qualities

    def encode(self, image: np.ndarray, quality: float | None = None) -> bytes:
        """The complete file for one uint8 image, grey or RGB."""
        if self.lossless and quality is not None:
            raise ValueError(f"{self.name} is lossless and takes no quality")
        if not self.lossless and (quality is None or not 0 <= quality <= 100):
            raise ValueError(f"{self.name} needs a quality in 0..100, got {quality}")
        return self.write(_as_image(image), quality, self.options)

    def decode(self, data: bytes, channels: int | None = None) -> np.ndarray:
        """The image in `data` as (H, W) for channels=1 or (H, W, C) for channels=C.

        None returns what the file holds, which for WebP is always RGB; pass the
        original's channel count to get its layout back.
        """
        if channels not in (None, 1, 2, 3, 4):
            raise ValueError(f"channels must be 1 to 4, got {channels}")
        image = self.read(data)
        if channels is None or channels == _channels(image):
            return image
        return np.array(Image.fromarray(image).convert({1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]))


# --- payload sizes: the coded image data of a file, headers and container left out -------


def _jpeg_payload(data: bytes) -> int:
    """Entropy-coded bytes: from the end of the (single) scan header to the EOI marker."""
    start = data.find(b"\xff\xda")
    if start < 0:
        raise ValueError("no JPEG scan found")
    (length,) = struct.unpack(">H", data[start + 2 : start + 4])
    return len(data) - (start + 2 + length) - 2


def _png_payload(data: bytes) -> int:
    """The compressed pixel stream: the data of every IDAT chunk."""
    total, pos = 0, 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            total += length
        pos += 12 + length
    return total


def _webp_payload(data: bytes) -> int:
    """VP8 frame data past its 10-byte frame header (lossy), or VP8L data past its 5."""
    skip = {b"VP8 ": 10, b"VP8L": 5, b"ALPH": 0}
    total, pos = 0, 12
    while pos + 8 <= len(data):
        kind, length = struct.unpack("<4sI", data[pos : pos + 8])
        if kind in skip:
            total += length - skip[kind]
        pos += 8 + length + (length & 1)
    return total


def _avif_payload(data: bytes) -> int:
    """The AV1 data: the contents of the top-level `mdat` boxes of the HEIF file."""
    total, pos = 0, 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
            header = 16
        elif size == 0:
            size = len(data) - pos
        if kind == b"mdat":
            total += size - header
        pos += size
    return total


IMAGE_BASELINES: dict[str, ImageBaseline] = {
    b.name: b
    for b in (
        # Baseline JPEG with optimized Huffman tables; grey stays one component, RGB is 4:2:0.
        ImageBaseline(
            "jpeg",
            (1, 5, 10, 20, 30, 50, 70, 85, 95),
            {"optimize": True},
            _pillow_writer("JPEG"),
            _pillow_read,
            _jpeg_payload,
        ),
        # Lossy WebP at its slowest, best method. WebP has no grey mode: grey is coded as RGB
        # (neutral chroma costs little) and `decode(data, channels=1)` takes the luma back.
        # Its lowest quality still gives ~21 dB on Fashion-MNIST, so the sweep starts there.
        ImageBaseline(
            "webp",
            (0, 5, 10, 25, 50, 75, 90),
            {"method": 6},
            _pillow_writer("WEBP"),
            _pillow_read,
            _webp_payload,
        ),
        # AVIF (libavif/AV1), grey as 4:0:0 monochrome. Speed 4 of 0 (slowest) .. 10: about
        # 0.5-1 dB better than libavif's default 6 at twice the time; speed 0 gains ~1.5 dB
        # more at 5x the time again. The HEIF container alone is ~280 bytes.
        ImageBaseline(
            "avif",
            (0, 10, 20, 30, 40, 50, 60),
            {"speed": 4},
            _pillow_writer("AVIF"),
            _pillow_read,
            _avif_payload,
        ),
        # JPEG XL at libjxl's default effort 7 (effort 9 is ~2x slower and no better in PSNR,
        # as it optimizes a perceptual distance). Bare codestream, grey as one channel; its
        # few header bytes are bit-packed into the stream, so no payload size is given.
        ImageBaseline(
            "jxl",
            (0, 10, 20, 30, 50, 70, 85, 90),
            {"effort": 7},
            _jxl_write,
            imagecodecs.jpegxl_decode,
        ),
        # Lossless reference point.
        ImageBaseline("png", (), {"optimize": True}, _pillow_writer("PNG"), _pillow_read, _png_payload),
    )
}


def _measure(
    codec: str,
    quality: float,
    images: Images,
    encode_all: Callable[[Images], Sequence[bytes]],
    decode_all: Callable[[Sequence[bytes]], Images],
    payload: Callable[[bytes], int] | None = len,
) -> dict[str, Any]:
    """One rate-distortion point from real bytes; times are wall seconds for the whole batch.

    `payload` gives a file's coded image data without headers (None: not separable)."""
    start = time.perf_counter()
    blobs = encode_all(images)
    encoded = time.perf_counter()
    restored = decode_all(blobs)
    decoded = time.perf_counter()
    total_bytes = sum(len(b) for b in blobs)
    pixels = sum(image.shape[0] * image.shape[1] for image in images)
    return {
        "codec": codec,
        "quality": quality,
        "images": len(blobs),
        "bytes_per_image": total_bytes / len(blobs),
        "payload_bytes_per_image": None if payload is None else sum(map(payload, blobs)) / len(blobs),
        "bpp": metrics.bpp(total_bytes, pixels),
        "psnr": metrics.mean_psnr(images, restored),
        "ssim": metrics.mean_ssim(images, restored),
        "encode_s": encoded - start,
        "decode_s": decoded - encoded,
    }


def sweep(
    baseline: ImageBaseline,
    images: Images,
    qualities: Sequence[float] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Rate-distortion points of `baseline` on `images`, one per quality (one for PNG).

    Each point has codec, quality, images, bytes_per_image, payload_bytes_per_image (None
    for JPEG XL), bpp, psnr (mean of per-image PSNR, capped at `metrics.PSNR_CAP`), ssim,
    encode_s and decode_s.
    """
    settings: Sequence[float | None] = (
        [None] if baseline.lossless else (baseline.qualities if qualities is None else qualities)
    )
    return [
        _measure(
            baseline.name,
            quality,
            images,
            partial(_encode_each, baseline, quality, progress),
            partial(_decode_each, baseline, images),
            baseline.payload,
        )
        for quality in settings
    ]


def _encode_each(
    baseline: ImageBaseline, quality: float | None, progress: bool, images: Images
) -> list[bytes]:
    label = baseline.name if quality is None else f"{baseline.name} q={quality}"
    return [
        baseline.encode(image, quality)
        for image in tqdm(images, desc=label, disable=not progress, leave=False)
    ]


def _decode_each(
    baseline: ImageBaseline, originals: Images, blobs: Sequence[bytes]
) -> list[np.ndarray]:
    """Decode each file back to its original's layout, as a format with a header would."""
    return [
        baseline.decode(blob, _channels(np.asarray(image))).reshape(np.shape(image))
        for blob, image in zip(blobs, originals)
    ]


@dataclass(frozen=True)
class PCACodec:
    """PCA as a codec: an image is its k principal-component coefficients as float16.

    Each image costs exactly 2k bytes with no header and no entropy coding, and the decoder
    is assumed to hold the basis and the mean. Both favour PCA over the image formats,
    whose every file carries its own headers. Pixels are scaled to 0..1 before the
    projection so coefficients stay far inside float16's range; decoded pixels are rounded
    and clipped to 0..255.
    """

    pca: PCA
    shape: tuple[int, ...]

    @classmethod
    def fit(cls, train_images: np.ndarray, k: int, seed: int = 0) -> PCACodec:
        """Fit the top-k basis on a batch of equally shaped images (N, H, W[, C])."""
        train = np.asarray(train_images)
        pca = PCA(n_components=k, random_state=seed).fit(_rows(train))
        return cls(pca, train.shape[1:])

    @property
    def k(self) -> int:
        return int(self.pca.n_components_)

    @property
    def bytes_per_image(self) -> int:
        return 2 * self.k

    def encode(self, images: np.ndarray) -> list[bytes]:
        """One 2k-byte string of little-endian float16 coefficients per image."""
        images = np.asarray(images)
        if images.shape[1:] != self.shape:
            raise ValueError(f"images of shape {images.shape[1:]}, basis fitted on {self.shape}")
        coefficients = self.pca.transform(_rows(images)).astype("<f2")
        return [row.tobytes() for row in coefficients]

    def decode(self, data: Sequence[bytes]) -> np.ndarray:
        """A uint8 batch (N, *shape) from the strings `encode` made."""
        if any(len(d) != self.bytes_per_image for d in data):
            raise ValueError(f"every PCA code must be {self.bytes_per_image} bytes")
        coefficients = np.frombuffer(b"".join(data), dtype="<f2").reshape(len(data), self.k)
        pixels = self.pca.inverse_transform(coefficients.astype(np.float32)) * 255.0
        return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).reshape(len(data), *self.shape)


def _rows(images: np.ndarray) -> np.ndarray:
    """A batch as one row of 0..1 floats per image."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def pca_sweep(
    train_images: np.ndarray, images: np.ndarray, ks: Sequence[int]
) -> list[dict[str, Any]]:
    """Rate-distortion points of PCA with k components for each k (reported as `quality`).

    Fitting is not timed; encode_s and decode_s cover the projection and reconstruction.
    """
    points = []
    for k in ks:
        codec = PCACodec.fit(train_images, k)
        points.append(_measure("pca", k, images, codec.encode, codec.decode))
    return points


@dataclass(frozen=True)
class ByteBaseline:
    """A general-purpose lossless compressor; `default_level` is the one benchmarks use."""

    name: str
    default_level: int
    pack: Callable[[bytes, int], bytes] = field(repr=False)
    unpack: Callable[[bytes], bytes] = field(repr=False)

    def compress(self, data: bytes, level: int | None = None) -> bytes:
        return self.pack(bytes(data), self.default_level if level is None else level)

    def decompress(self, data: bytes) -> bytes:
        return self.unpack(bytes(data))


BYTE_BASELINES: dict[str, ByteBaseline] = {
    b.name: b
    for b in (
        # xz -9e: an .xz file with CRC64, as the xz tool writes. The level is an lzma preset.
        ByteBaseline(
            "xz",
            9 | lzma.PRESET_EXTREME,
            lambda data, level: lzma.compress(data, preset=level),
            lzma.decompress,
        ),
        # bzip2 -9 (900 kB blocks).
        ByteBaseline("bzip2", 9, lambda data, level: bz2.compress(data, level), bz2.decompress),
        # zstd -19, one frame with the content size in its header.
        ByteBaseline(
            "zstd",
            19,
            lambda data, level: zstandard.ZstdCompressor(level=level).compress(data),
            lambda data: zstandard.ZstdDecompressor().decompress(data),
        ),
        # brotli quality 11 with the largest standard window (2^24), as the brotli tool uses.
        ByteBaseline(
            "brotli",
            11,
            lambda data, level: brotli.compress(data, quality=level, lgwin=24),
            brotli.decompress,
        ),
    )
}


# --- peers of the applications: classical denoisers and anomaly scores -------------------


@dataclass(frozen=True)
class Denoiser:
    """A classical denoiser and the parameter values it is tuned over on validation images.

    `run` takes one float image in [0, 1] ((H, W), or (H, W, C) with channel_axis -1), the
    parameter and the true noise sigma (the denoisers that take one are told it)."""

    name: str
    run: Callable[[np.ndarray, float, float, int | None], np.ndarray] = field(repr=False)
    parameters: tuple[float, ...]

    def __call__(self, images: Images, parameter: float, sigma: float) -> np.ndarray:
        """Cleaned uint8 images, each in its input's layout, rounded as a user would save them."""
        out = []
        for image in images:
            x = np.asarray(image, dtype=np.float64) / 255.0
            plane = x[..., 0] if x.ndim == 3 and x.shape[-1] == 1 else x
            out.append(self.run(plane, parameter, sigma, None if plane.ndim == 2 else -1).reshape(x.shape))
        return np.clip(np.rint(np.stack(out) * 255.0), 0, 255).astype(np.uint8)

    def tune(self, clean: Images, noisy: Images, sigma: float) -> tuple[float, float]:
        """(best parameter, its mean PSNR) on validation images: never tune on test images."""
        psnr, best = max((metrics.mean_psnr(clean, self(noisy, p, sigma)), p) for p in self.parameters)
        return best, psnr


def _median(image: np.ndarray, size: float, sigma: float, channel_axis: int | None) -> np.ndarray:
    from scipy import ndimage

    footprint = (int(size), int(size)) + ((1,) if channel_axis is not None else ())
    return ndimage.median_filter(image, size=footprint)


def _nl_means(image: np.ndarray, h: float, sigma: float, channel_axis: int | None) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(
        image, h=h * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True, channel_axis=channel_axis
    )


def _tv(image: np.ndarray, weight: float, sigma: float, channel_axis: int | None) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(image, weight=weight, channel_axis=channel_axis)


DENOISERS: dict[str, Denoiser] = {
    d.name: d
    for d in (
        Denoiser("median", _median, (3, 5)),  # window size
        Denoiser("nl-means", _nl_means, (0.4, 0.6, 0.8, 1.0, 1.2)),  # filter strength h, in units of sigma
        Denoiser("tv-chambolle", _tv, (0.02, 0.05, 0.1, 0.2, 0.4)),  # total-variation weight
    )
}


def pca_anomaly_scores(normal: np.ndarray, images: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Per-image MSE of the reconstruction by the top-k PCA basis of the normal images."""
    rows, test = _rows(normal), _rows(images)
    pca = PCA(n_components=min(k, *rows.shape), random_state=seed).fit(rows)
    return ((pca.inverse_transform(pca.transform(test)) - test) ** 2).mean(axis=1)


def isolation_forest_scores(normal: np.ndarray, images: np.ndarray, seed: int = 0) -> np.ndarray:
    """scikit-learn's IsolationForest on pixels, fitted on the normal images; higher = odder."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=200, random_state=seed).fit(_rows(normal))
    return -forest.score_samples(_rows(images))


# --- the peer of colourisation: mean chroma per grey level ---------------------------------


class ChromaTable:
    """Colourisation's classical peer: the mean chroma (CIELAB a and b) of each grey level
    over the pixels of the training images, looked up pixel by pixel. It knows which
    colours bright and dark things tend to have (sky, skin, foliage), nothing of where.

    Grey levels are those of `latentzip.apps.as_grey`, and colours are made as the network's
    are (same lightness, chroma pulled into sRGB), so the two differ in the chroma alone."""

    LEVELS = 256

    def __init__(self, table: np.ndarray):
        self.table = np.asarray(table, dtype=np.float64)  # (LEVELS, 2): a and b of each grey level

    @classmethod
    def fit(cls, images: Images) -> "ChromaTable":
        """The table of the colour images among `images` (uint8 (H, W, C)); a level no
        pixel has takes the chroma of its neighbours, interpolated."""
        from latentzip.apps.lab import as_grey, as_tensor, is_grey, to_lab

        sums, counts = np.zeros((cls.LEVELS, 2)), np.zeros(cls.LEVELS)
        for image in images:
            if is_grey(image):
                continue
            levels = as_grey(image).ravel()
            chroma = to_lab(as_tensor(image[..., :3]))[0, 1:].reshape(2, -1).numpy()
            counts += np.bincount(levels, minlength=cls.LEVELS)
            for k in range(2):
                sums[:, k] += np.bincount(levels, weights=chroma[k], minlength=cls.LEVELS)
        if not counts.any():
            raise ValueError("a chroma table needs colour images")
        seen = np.flatnonzero(counts)
        table = np.stack([np.interp(np.arange(cls.LEVELS), seen, sums[seen, k] / counts[seen]) for k in range(2)], 1)
        return cls(table)

    def colorize(self, images: Images) -> list[np.ndarray]:
        """RGB uint8 images of the grey images' lightness (colour inputs are made grey first)."""
        import torch

        from latentzip.apps.colorize import with_chroma
        from latentzip.apps.lab import as_grey

        out = []
        for image in images:
            grey = as_grey(np.asarray(image))
            chroma = torch.from_numpy(self.table[grey[..., 0]]).permute(2, 0, 1)[None]
            out.append(with_chroma(grey, chroma))
        return out


def grey_as_colour(images: Images) -> list[np.ndarray]:
    """The grey images themselves as RGB: colourisation's do-nothing baseline."""
    from latentzip.apps.lab import as_grey

    return [np.repeat(as_grey(np.asarray(im)), 3, axis=-1) for im in images]


# --- peers of watermark removal -----------------------------------------------------------


def median_filtered(images: Images, size: int) -> list[np.ndarray]:
    """Each (H, W, C) uint8 image median-filtered channel by channel: a peer that removes
    thin marks without knowing where they are, and blurs the image with them."""
    from scipy import ndimage

    return [ndimage.median_filter(np.asarray(im), size=(size, size, 1)) for im in images]


def inpainted(images: Images, masks: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each (H, W, C) uint8 image with the pixels of its mask (H, W, True where a mark
    is) painted anew by scikit-image's biharmonic inpainting: a peer told where the marks
    are, which a real user seldom knows."""
    from skimage.restoration import inpaint_biharmonic

    out = []
    for image, mask in zip(images, masks, strict=True):
        painted = inpaint_biharmonic(np.asarray(image), np.asarray(mask, bool), channel_axis=-1)
        out.append(np.clip(np.rint(painted * 255.0), 0, 255).astype(np.uint8))
    return out
