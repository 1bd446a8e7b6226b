"""Latentzip files built field by field, with valid checksums, so that parsing goes deep:
the raw material of the hostile-input tests and of scripts/fuzz.py.

The strategies draw every header, catalog and record field from ranges that include
the valid values, the limits and far beyond them, so a reader meets files that are
almost right as often as files that are plainly wrong.
"""

from __future__ import annotations

import zlib
from typing import Sequence

from hypothesis import strategies as st

from latentzip import container
from latentzip.container import crc32, put_varint
from latentzip.image import catalog
from latentzip.lossless import PREDICTOR_REVISION, SEGMENT_SIZE

NAMES, UNIFORM, DEFLATED, REFINED, QUALITY, ALPHA = 1, 2, 4, 8, 16, 32


def deflate(body: bytes) -> bytes:
    squeezer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return squeezer.compress(body) + squeezer.flush()


def ltz(fingerprint: bytes, catalog_part: bytes, payload: bytes = b"", version: int = 1) -> bytes:
    """A whole image file, checksum included."""
    return container.pack(container.Kind.IMAGES, fingerprint + catalog_part, payload, version)


def image_catalog(count: int, shape: Sequence[int] | None = (28, 28, 1), body: bytes = b"", names: bool = False,
                  deflated: bool = False, max_error: int | None = None, extra_flags: int = 0,
                  quality: int | None = None, alpha_error: int | None = None, more_flags: int | None = None,
                  direct: tuple[int, bytes] | None = None) -> bytes:
    """A catalog: UNIFORM with `shape` (else the shapes are in `body`), then `body`.
    `more_flags` makes it a version-2 catalog, whose DIRECT flag (1) takes `direct`: the
    direct stream's length and the bitmap of the images coded directly."""
    flags = extra_flags | (NAMES if names else 0) | (UNIFORM if shape is not None else 0)
    flags |= (DEFLATED if deflated else 0) | (REFINED if max_error is not None else 0)
    flags |= (QUALITY if quality is not None else 0) | (ALPHA if alpha_error is not None else 0)
    fixed = put_varint(count) + b"".join(put_varint(v) for v in (max_error, quality, alpha_error) if v is not None)
    if direct is not None:
        fixed += put_varint(direct[0]) + direct[1]
    fixed += b"".join(put_varint(v) for v in shape) if shape is not None else b""
    second = bytes([more_flags]) if more_flags is not None else b""
    return bytes([flags]) + second + fixed + (deflate(body) if deflated else body)


def name_record(common: int, suffix: bytes) -> bytes:
    """A name: `common` bytes of the previous one, then `suffix`."""
    return b"\0" + put_varint(common) + put_varint(len(suffix)) + suffix


def delta_record(deltas: Sequence[int]) -> bytes:
    """A name: the previous one with each number moved by its delta (zigzag-coded)."""
    return b"\1" + b"".join(put_varint(d * 2 if d >= 0 else -d * 2 - 1) for d in deltas)


def lzc_header(revision: int = PREDICTOR_REVISION, level: int = 1, block_size: int = 1 << 20, primer: int = 0,
               segment_blocks: int | None = None) -> bytes:
    """A byte file's header; from revision 6 on with the segment field, by default right for `block_size`."""
    values = [revision, level, block_size, primer]
    if revision >= 6:
        values.append(-(-SEGMENT_SIZE // max(block_size, 1)) if segment_blocks is None else segment_blocks)
    return container.bytes_header(b"".join(put_varint(v) for v in values))


def block_record(n: int, mode: int, payload: bytes, data_crc: int | None = None) -> bytes:
    """A block record whose own checksum is right; the data checksum is too unless given."""
    body = put_varint(n) + bytes([mode]) + put_varint(len(payload)) + payload
    body += (crc32(payload) if data_crc is None else data_crc).to_bytes(4, "little")
    return body + crc32(body).to_bytes(4, "little")


# --- strategies ------------------------------------------------------------------------


def _mostly(usual: st.SearchStrategy, other: st.SearchStrategy) -> st.SearchStrategy:
    """`usual` most of the time, so most files get past a field and the next one is tried
    (7 is no value Hypothesis favours, as it does 0 and the ends of a range)."""
    return st.integers(0, 15).flatmap(lambda k: other if k == 7 else usual)


_varints = st.one_of(st.integers(0, 40), st.integers(0, 1 << 16), st.integers(0, (1 << 64) - 1),
                     st.sampled_from([catalog.MAX_IMAGES, catalog.MAX_IMAGE_PIXELS, 1 << 20, (1 << 12) + 1]))
_sides = st.sampled_from([0, 1, 8, 28, 9000]) | st.integers(0, 1 << 30)
_shapes = st.tuples(_sides, _sides, st.sampled_from([1, 3]) | st.integers(0, 300))
_suffixes = st.one_of(st.binary(max_size=40), st.sampled_from([b"a.png", b"../x", b"/etc", b".h", b"\x1b[2J",
                                                               b"a/" * 40, b"x" * 300, b"\xff\xfe", b"\0"]))
_name_records = _mostly(
    st.builds(name_record, st.integers(0, 3), st.sampled_from([b"img_007.png", b"b/c1.png", b"7", b"_x"])) |
    st.builds(delta_record, st.lists(st.integers(-3, 3), min_size=1, max_size=1)),
    st.builds(name_record, st.integers(0, 60) | st.integers(0, 1 << 20), _suffixes) |
    st.builds(delta_record, st.lists(st.integers(-(1 << 62), 1 << 62), max_size=4)) |
    st.binary(max_size=6),
)


@st.composite
def catalogs(draw: st.DrawFn, shape: tuple[int, int, int] = (8, 8, 1), images: int = 4, version: int = 1) -> bytes:
    """A catalog of container `version` with random flags and fields; its counts mostly
    up to `images`, its shapes mostly `shape` (what the model at hand codes)."""
    count = draw(_mostly(st.integers(0, images), _varints))
    uniform = draw(st.none() | _mostly(st.just(shape), _shapes))
    shapes = b"".join(b"".join(put_varint(v) for v in draw(_mostly(st.just(shape), _shapes)))
                      for _ in range(min(count, images + 2))) if uniform is None else b""
    named = draw(st.booleans())
    names = b"".join(draw(st.lists(_name_records, min_size=count if count <= images else 0,
                                   max_size=images + 2))) if named else b""
    body = shapes + names + draw(_mostly(st.just(b""), st.binary(max_size=4)))
    max_error = draw(st.none() | _mostly(st.integers(0, 127), _varints))
    quality, alpha_error = (draw(st.none() | _mostly(st.integers(0, 7), _varints)) for _ in range(2))
    more = draw(_mostly(st.just(1), st.integers(0, 255))) if version >= 2 else None
    direct = None
    if more is not None and more & 1:
        bitmap = draw(_mostly(st.binary(min_size=-(-count // 8), max_size=-(-count // 8)), st.binary(max_size=3))) \
            if count <= images else draw(st.binary(max_size=3))
        direct = (draw(_mostly(st.integers(0, 64), _varints)), bitmap)
    return image_catalog(count, uniform, body, named, draw(st.booleans()), max_error,
                         draw(_mostly(st.just(0), st.sampled_from([64, 128]))), quality, alpha_error, more, direct)


@st.composite
def ltz_files(draw: st.DrawFn, fingerprint: bytes, shape: tuple[int, int, int] = (8, 8, 1)) -> bytes:
    """An image file for the model with `fingerprint` (or, rarely, another model) that
    codes images of `shape`."""
    head = draw(_mostly(st.just(fingerprint), st.binary(max_size=9)))
    version = draw(st.sampled_from([1, 2]))
    return ltz(head, draw(catalogs(shape, version=version)), draw(st.binary(max_size=64)), version)


@st.composite
def lzc_files(draw: st.DrawFn) -> bytes:
    """A byte file at level 1 mostly (a fresh model per file costs little there), with
    random header fields and a run of records whose checksums are right."""
    level = draw(_mostly(st.just(1), st.integers(0, 12)))
    primer = draw(_mostly(st.just(0), _varints.filter(lambda p: p != 1 or level < 6)))
    header = lzc_header(draw(_mostly(st.just(PREDICTOR_REVISION), st.integers(0, 9))), level, draw(_mostly(st.just(64), _varints)),
                        primer, draw(_mostly(st.none(), _varints)))
    records, total, stored = [], 0, b""
    for _ in range(draw(st.integers(0, 3))):
        mode = draw(_mostly(st.sampled_from([0, 1]), st.integers(0, 255)))
        words = st.binary(max_size=20).map(lambda b: b * 4)  # a coded payload is whole 32-bit words
        payload = draw(_mostly(words, st.binary(max_size=81)) if mode == 1 else st.binary(max_size=80))
        n = draw(_mostly(st.just(len(payload)) if mode == 0 else st.integers(1, 64), _varints))
        records.append(block_record(n, mode, payload, draw(_mostly(st.none(), st.integers(0, (1 << 32) - 1)))))
        total, stored = total + n, stored + payload
    end = put_varint(0) + put_varint(draw(_mostly(st.just(total), _varints)))
    end += draw(_mostly(st.just(crc32(stored)), st.integers(0, (1 << 32) - 1))).to_bytes(4, "little")
    records.append(end + crc32(end).to_bytes(4, "little"))
    return header + b"".join(records) + draw(_mostly(st.just(b""), st.binary(max_size=3)))
