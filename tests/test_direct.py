"""Files bounded by a max error code images directly, pixel by pixel within the bound,
where that costs fewer bytes than the model's code (direct.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from latentzip import container
from latentzip.errors import FormatError, LimitError
from latentzip.image import alpha, catalog, direct
from latentzip.image.codec import file_catalog

from .conftest import never_direct


def _page(seed: int, height: int = 64, width: int = 96) -> np.ndarray:
    """A bilevel 'scan': black strokes and words on white."""
    rng = np.random.default_rng(seed)
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    for row in range(4, height - 10, 12):
        draw.text((int(rng.integers(2, 10)), row), "".join(rng.choice(list("latentzip scans"), 12)), fill=0)
    draw.line((0, height - 3, width, height - 3), fill=0, width=2)
    return np.asarray(page)


def _model_only(codec, images, monkeypatch, **kwargs) -> bytes:
    """The file `codec` writes when no image may be coded directly."""
    with monkeypatch.context() as patch:
        patch.setattr(direct, "encode", never_direct)
        return codec.encode(images, **kwargs)


def _dear_noise(monkeypatch) -> None:
    """Make coding directly dearer than the model's code for the noise images (those with
    a value of 1 in the corner), whatever either costs on them."""
    coded = direct.encode

    def dear(images: list[np.ndarray], max_error: int, step=None) -> tuple[bytes, np.ndarray]:
        stream, bits = coded(images, max_error, step)
        return stream, np.where([im.reshape(-1)[0] == 1 for im in images], np.inf, bits)

    monkeypatch.setattr(direct, "encode", dear)


def _noise(seed: int, shape: tuple[int, ...] = (64, 96)) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    noise.reshape(-1)[0] = 1
    return noise


def test_a_scan_is_coded_directly_in_fewer_bytes_than_the_models_code(conv_codec, monkeypatch):
    pages = [_page(seed) for seed in range(3)]
    blob, bits = conv_codec.encode_with_bits(pages, max_error=0)
    assert file_catalog(blob).direct == [True, True, True]
    assert container.version_of(blob) == 2
    assert all(np.array_equal(a, b) for a, b in zip(pages, conv_codec.decode(blob)))  # lossless
    plain = _model_only(conv_codec, pages, monkeypatch, max_error=0)
    assert container.version_of(plain) == 1 and file_catalog(plain).direct is None
    assert len(blob) < len(plain)
    assert abs(bits.sum() / 8 - len(blob)) < 60  # the costs returned are the file's


def test_a_lossless_photograph_takes_whichever_code_is_smaller(photos, monkeypatch):
    import latentzip

    codec = latentzip.load_model("photo:q2")
    images = list(photos[:3])
    blob = codec.encode(images, max_error=0)
    assert all(np.array_equal(a, b) for a, b in zip(images, codec.decode(blob)))
    assert len(blob) <= len(_model_only(codec, images, monkeypatch, max_error=0)) + 8  # the catalog's bitmap


def test_a_file_mixes_direct_and_model_coded_images_in_order(conv_codec, monkeypatch):
    _dear_noise(monkeypatch)
    images = [_noise(1), _page(4), _noise(2)[:40, :50], _page(5)[:48]]
    names = ["a/noise.png", "b/page.png", "c/small noise.png", "d/half page.png"]
    blob = conv_codec.encode(images, names, max_error=0)
    assert file_catalog(blob).direct == [False, True, False, True]
    decoded = conv_codec.decode_named(blob)
    assert [name for name, _ in decoded] == names
    assert all(np.array_equal(image, back) for image, (_, back) in zip(images, decoded))


def test_a_file_a_reader_would_refuse_for_its_few_bytes_is_the_models(conv_codec, monkeypatch):
    checked = catalog.check

    def strict(cat, size):  # as if the pages were so blank that their direct code was too small
        if cat.direct is not None:
            raise LimitError("image file declares too many pixel values")
        checked(cat, size)

    monkeypatch.setattr(catalog, "check", strict)
    pages = [_page(0), _page(1)]
    blob = conv_codec.encode(pages, max_error=0)
    assert file_catalog(blob).direct is None and container.version_of(blob) == 1
    assert all(np.array_equal(a, b) for a, b in zip(pages, conv_codec.decode(blob)))


def test_encode_says_how_many_images_it_coded_directly(conv_codec, capsys, tmp_path):
    from .conftest import in_process

    model = tmp_path / "scans.model"
    conv_codec.save(model)
    pages = tmp_path / "pages"
    pages.mkdir()
    for seed in range(2):
        Image.fromarray(_page(seed)).convert("1").save(pages / f"page{seed}.png")
    status, said = in_process(capsys, "encode", "-m", str(model), "--max-error", "0", "-q", str(pages),
                              "-o", str(tmp_path / "pages.ltz"))
    assert status == 0 and "2 coded directly" in said
    status, said = in_process(capsys, "decode", "-m", str(model), "-q", str(tmp_path / "pages.ltz"),
                              "-o", str(tmp_path / "back"))
    assert status == 0
    for seed in range(2):
        scanned = np.asarray(Image.open(pages / f"page{seed}.png").convert("L"))
        assert np.array_equal(np.asarray(Image.open(tmp_path / "back" / f"page{seed}.png")), scanned)


@pytest.mark.parametrize("max_error", [1, 4])
def test_near_lossless_photographs_are_coded_directly_within_the_bound(photos, monkeypatch, max_error):
    import latentzip

    codec = latentzip.load_model("photo:q2")
    images = list(photos[:2])
    blob = codec.encode(images, max_error=max_error)
    assert file_catalog(blob).direct == [True, True]  # fewer bytes than the model and its refinement layer
    assert len(blob) < len(_model_only(codec, images, monkeypatch, max_error=max_error))
    for image, back in zip(images, codec.decode(blob)):
        assert np.abs(back.astype(int) - image).max() <= max_error
        assert np.array_equal(back, alpha.rounded(image, max_error))  # the levels of the bound, as documented


def test_near_lossless_keeps_alpha_exact_and_colour_within_the_bound():
    import latentzip

    codec = latentzip.load_model("photo:q4")
    icon = np.zeros((40, 40, 4), dtype=np.uint8)
    icon[:, :20, :3], icon[:, 20:, :3] = (200, 31, 90), (17, 120, 250)
    icon[..., 3] = 40 + 5 * np.arange(40)  # a soft ramp, off the levels of the bound
    blob = codec.encode([icon], max_error=3)
    assert file_catalog(blob).direct == [True]
    back = codec.decode(blob)[0]
    shown = icon[..., 3] > 0
    assert np.array_equal(back[..., 3], icon[..., 3])
    assert np.abs(back[shown][:, :3].astype(int) - icon[shown][:, :3]).max() <= 3


def test_progress_follows_the_pricing_and_ends_at_its_total(conv_codec, monkeypatch):
    """An encode bounded by a max error prices both codes before it codes anything: the
    steps told cover that work too, and end exactly at the last total told."""
    _dear_noise(monkeypatch)
    images = [_page(0), _noise(1), _page(2)]
    for max_error in (0, 2):
        told: list[tuple[int, int]] = []
        conv_codec.encode(images, max_error=max_error, progress=lambda *a: told.append(a))
        pixels = sum(im.shape[0] * im.shape[1] for im in images)
        assert told[0][0] == pixels  # the direct code priced first (one run: the images share a shape)
        assert sum(done for done, _ in told) == told[-1][1] > pixels  # the noise priced and coded by the model too


def test_a_direct_code_is_never_chosen_for_more_bytes(monkeypatch):
    """A lone digit: coded directly it would take more bytes (the direct coder learns as
    it codes, and has seen nothing) for less error; the model's code is kept."""
    import latentzip
    from latentzip import data

    codec = latentzip.load_model("mnist:q4")
    for digits in (data.load("mnist:test").images[:1, :, :, 0], data.load("mnist:test").images[:100, :, :, 0]):
        blob = codec.encode(digits)
        assert len(blob) <= len(_model_only(codec, list(digits), monkeypatch))
        assert np.abs(np.stack(codec.decode(blob)).astype(int) - digits).max() <= codec.max_error


def test_pricing_leaves_the_callers_images_as_they_were():
    import latentzip
    from latentzip import data

    codec = latentzip.load_model("mnist:q4")
    digits = data.load("mnist:test").images[:20, :, :, 0]
    kept = digits.copy()
    codec.encode(list(digits))
    codec.encode(digits[:1])
    assert np.array_equal(digits, kept)


@pytest.mark.parametrize("max_error", [1, 4, 16])
@pytest.mark.parametrize("piece", [100, direct.PIECE_PIXELS])  # 100: each image counted in pieces
def test_the_priced_error_is_what_a_decoder_gives(max_error, piece, monkeypatch):
    from latentzip import metrics
    from latentzip.image import transparent

    monkeypatch.setattr(direct, "PIECE_PIXELS", piece)
    rng = np.random.default_rng(max_error)
    cut_out = rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)
    cut_out[:6, :, 3] = 0  # colour under alpha 0 is filled, and does not show
    cut_out[6:12, :, 3] = 255
    images = [rng.integers(0, 256, (24, 32, 1), dtype=np.uint8), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
              cut_out, cut_out[..., 2:]]
    filled = [transparent.fill(im) for im in images]
    stream, _ = direct.encode(filled, max_error)
    reader = direct.Reader(stream, max_error)
    truth = [metrics.mse(im[..., 0] if im.shape[-1] == 1 else im, reader.next(im.shape)) for im in images]
    np.testing.assert_allclose(direct.errors(filled, max_error), truth, rtol=1e-12)


def test_lossy_files_never_code_images_directly(conv_codec):
    blob = conv_codec.encode([_page(0), _page(1)])
    assert file_catalog(blob).direct is None and container.version_of(blob) == 1


def test_colour_and_alpha_are_coded_directly_with_the_colour_under_transparent_pixels_filled():
    import latentzip

    codec = latentzip.load_model("photo:q4")
    icon = np.zeros((48, 48, 4), dtype=np.uint8)
    icon[8:40, 8:40] = (200, 30, 30, 255)
    icon[16:32, 16:32] = (250, 250, 250, 255)
    icon[20:28, :, 3] = 128
    blob = codec.encode([icon, icon[:, :, :3]], max_error=0)
    assert file_catalog(blob).direct == [True, True]
    back = codec.decode(blob)
    shown = icon[..., 3] > 0
    assert np.array_equal(back[0][..., 3], icon[..., 3]) and np.array_equal(back[0][shown], icon[shown])
    assert np.array_equal(back[1], icon[:, :, :3])


def test_a_model_with_alpha_writes_no_alpha_stream_when_every_image_is_coded_directly(digits, monkeypatch):
    from latentzip.image.train import TrainConfig, train

    _dear_noise(monkeypatch)
    grey = digits.images[:64]
    cfg = TrainConfig(arch="conv", levels=2, latent=8, hidden=(8,), qualities=1, epochs=1, seed=2)
    codec = train(np.concatenate([grey, grey, grey, (grey > 40).astype(np.uint8) * 255], axis=-1), cfg,
                  progress=False).codec
    icon = np.zeros((32, 32, 4), dtype=np.uint8)
    icon[4:28, 4:28] = (200, 30, 30, 255)
    noise = _noise(3, (32, 32, 4))
    for batch, expected in (([icon], [True]), ([noise, icon], [False, True])):
        blob = codec.encode(batch, max_error=0)
        cat = file_catalog(blob)
        assert cat.direct == expected and (cat.alpha_bytes is None) == all(expected)
        for image, back in zip(batch, codec.decode(blob)):
            shown = image[..., 3] > 0
            assert np.array_equal(back[..., 3], image[..., 3]) and np.array_equal(back[shown], image[shown])


def _repacked(blob: bytes, edit) -> bytes:
    """`blob` with its catalog's bytes changed by `edit`, checksum repaired."""
    header, payload = container.unpack(blob, container.Kind.IMAGES)
    return container.pack(container.Kind.IMAGES, header[:8] + edit(bytearray(header[8:])), payload,
                          container.version_of(blob))


def _set(offset: int, value: int):
    def edit(part: bytearray) -> bytes:
        part[offset] = value
        return bytes(part)
    return edit


def _changed(**fields):
    def edit(part: bytearray) -> bytes:
        cat = catalog.unpack(bytes(part), 1 << 20, 2)
        for name, value in fields.items():
            setattr(cat, name, value)
        return catalog.pack(cat)
    return edit


@pytest.mark.parametrize("edit, words", [
    (_set(1, 3), "unknown flags"),  # a second-flags bit no version-2 reader knows
    # the bitmap of the three pages (before their shape, 64, 96, 1), bits past them set
    (_set(-4, 0xFF), "bits set past the last image"),
    (_changed(direct_bytes=1 << 20), "direct stream is longer than the file"),
    (_changed(max_error=None), "images coded directly in a file without a max error"),
])
def test_damaged_direct_fields_are_refused_in_one_line(conv_codec, edit, words):
    blob = conv_codec.encode([_page(seed) for seed in range(3)], max_error=0)
    header, _ = container.unpack(blob, container.Kind.IMAGES)
    assert header[8 + 1] == 1 and header[-4] == 0b111  # flags2 DIRECT; the bitmap
    with pytest.raises(FormatError, match=words):
        conv_codec.decode(_repacked(blob, edit))


def test_unknown_versions_are_refused_and_a_version_2_catalog_is_not_read_as_version_1(conv_codec):
    blob = conv_codec.encode([_page(0)], max_error=0)
    for version, kind in ((3, container.Kind.IMAGES), (2, container.Kind.BYTES)):
        body = bytearray(blob[:-4])
        body[4], body[5] = version, kind
        forged = bytes(body) + container.crc32(bytes(body)).to_bytes(4, "little")
        with pytest.raises(FormatError):
            container.unpack(forged, kind)
    v1 = bytearray(blob[:-4])
    v1[4] = 1  # a version-2 catalog read as version 1 is not taken for something else
    with pytest.raises(FormatError):
        conv_codec.decode(bytes(v1) + container.crc32(bytes(v1)).to_bytes(4, "little"))
