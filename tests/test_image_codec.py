"""The lossy codec through its Python API: exact coding, honest rates, clean failures."""

from __future__ import annotations

import constriction
import numpy as np
import pytest
import torch

from latentzip import container
from latentzip.container import put_varint
from latentzip.errors import FormatError, LatentzipError, LimitError, ModelError
from latentzip.image import catalog
from latentzip.image.codec import ImageCodec
from latentzip.image.modelfile import SCALE, pack, unpack
from latentzip.image.zoo import load_model
from latentzip.image.entropy import FactorizedPrior, finish, read_channels, reader, write_channels
from latentzip.image.evaluate import evaluate


def _encode(tables, models, values) -> bytes:
    encoder = constriction.stream.queue.RangeEncoder()
    write_channels(encoder, tables, models, values)
    return finish(encoder)


def test_entropy_coder_round_trip_with_escapes():
    torch.manual_seed(3)
    tables = FactorizedPrior(5).freeze()
    models = tables.models()
    rng = np.random.default_rng(0)
    values = [rng.integers(-30, 30, size=n) for n in (0, 1, 17, 500, 2000)]
    values[3][:4] = [10_000, -32_768, 32_767, -9_999]  # far outside every table: escapes
    blob = _encode(tables, models, values)
    back = read_channels(reader(blob), tables, models, [len(v) for v in values])
    for a, b in zip(values, back):
        np.testing.assert_array_equal(a, b)


def test_table_costs_match_what_the_coder_spends_escapes_included():
    torch.manual_seed(3)
    tables = FactorizedPrior(5).freeze()
    rng = np.random.default_rng(1)
    values = [rng.integers(-30, 30, size=3000) for _ in range(5)]
    values[2][:50] = 20_000  # escapes: the escape symbol plus a uniform 16-bit code each
    costs = [tables.costs(v, c) for c, v in enumerate(values)]
    assert all(cost.shape == v.shape and (cost > 0).all() for cost, v in zip(costs, values))
    assert (costs[2][:50] > 16).all()
    blob = _encode(tables, tables.models(), values)
    assert abs(8 * len(blob) - sum(cost.sum() for cost in costs)) < 64


def test_frozen_tables_are_integers_summing_to_the_precision():
    tables = FactorizedPrior(4).freeze()
    assert tables.counts.dtype == np.int32
    for c in range(4):
        row = tables.counts[c, : tables.lengths[c] + 1]
        assert row.min() >= 1 and int(row.sum()) == 1 << 16


def test_catalog_round_trip_and_cost():
    names = [f"scan_{i:04d}.png" for i in range(1000)]
    cat = catalog.Catalog(names, [(28, 28, 1)] * 1000)
    packed = catalog.pack(cat)
    assert catalog.unpack(packed, len(packed)) == cat
    assert len(packed) < 100
    mixed = catalog.Catalog(["a.png", "dir/b c.png", "x9y08.png", "x10y09.png", "é.png"], [(5, 6, 3), (28, 28, 1), (2, 2, 1), (3, 3, 3), (1, 1, 1)])
    packed = catalog.pack(mixed)
    assert catalog.unpack(packed, len(packed)) == mixed


@pytest.mark.parametrize("name", ["../evil.png", "/etc/x.png", "a/../../b.png", ".", "", ".hidden.png", "a/.git/x",
                                  "a\\..\\b.png", "a//b.png", "nul\0.png", "line\nbreak.png", "\x1b[31mred.png",
                                  "x" * 256 + ".png", "d/" * 40 + "x.png", "y" * 1025])
def test_unsafe_names_are_refused_by_both_sides(dense_codec, digits_test, name):
    """The encoder refuses what the decoder would, so it never writes a file that fails."""
    assert catalog.name_problem(name)
    with pytest.raises(LatentzipError):
        dense_codec.encode(digits_test.images[:1], [name])
    body = b"\0" + put_varint(0) + put_varint(len(name.encode())) + name.encode()
    packed = bytes([1]) + put_varint(1) + bytes([8, 8, 1]) + body  # NAMES, one non-uniform shape
    with pytest.raises(FormatError, match="image name|longer than"):
        catalog.unpack(packed, len(packed))


def test_dense_round_trip_is_deterministic(dense_codec, digits_test):
    images = digits_test.images[:50]
    blob = dense_codec.encode(images)
    assert blob == dense_codec.encode(images)
    decoded = dense_codec.decode(blob)
    assert len(decoded) == 50 and decoded[0].shape == (8, 8) and decoded[0].dtype == np.uint8
    # Decoding reproduces exactly what the encoder's own reconstruction path gives (the
    # integer network: test_refine checks it against the float one).
    np.testing.assert_array_equal(np.stack(decoded), np.stack(dense_codec.reconstruct(images)))


def test_names_survive(dense_codec, digits_test):
    names = [f"digit-{i}.png" for i in range(7)]
    blob = dense_codec.encode(digits_test.images[:7], names)
    assert [n for n, _ in dense_codec.decode_named(blob)] == names


def test_saved_and_loaded_model_gives_identical_bitstreams(dense_codec, model_file, digits_test):
    loaded = load_model(model_file)
    assert loaded.fingerprint == dense_codec.fingerprint
    images = digits_test.images[:100]
    blob = dense_codec.encode(images)
    assert loaded.encode(images) == blob
    assert all(np.array_equal(a, b) for a, b in zip(loaded.decode(blob), dense_codec.decode(blob)))


def test_estimated_and_real_rate_agree(dense_codec, digits_test):
    images = digits_test.images
    blob = dense_codec.encode(images)
    _, payload = container.unpack(blob, container.Kind.IMAGES)
    estimate = dense_codec.estimate_bits(images) / 8
    overhead = len(blob) - len(payload)
    assert len(payload) <= 1.02 * estimate + 4
    assert len(blob) <= 1.02 * estimate + overhead + 4
    assert len(payload) >= 0.9 * estimate


def test_overhead_per_image_in_a_file_of_1000(dense_codec, digits):
    images = digits.images[:1000]
    names = [f"img_{i:04d}.png" for i in range(1000)]
    blob = dense_codec.encode(images, names)
    _, payload = container.unpack(blob, container.Kind.IMAGES)
    assert (len(blob) - len(payload)) / 1000 <= 4


def test_conv_codes_any_size_without_padding_in_output(conv_codec):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(8, 8), (13, 9), (1, 1), (5, 17)]]
    decoded = conv_codec.decode(conv_codec.encode(images))
    assert [d.shape for d in decoded] == [im.shape for im in images]


def test_conv_model_refuses_rgb_when_trained_on_grey(conv_codec):
    with pytest.raises(ModelError, match="grey"):
        conv_codec.encode([np.zeros((8, 8, 3), np.uint8)])


def test_dense_model_refuses_other_sizes(dense_codec):
    with pytest.raises(ModelError, match="8x8"):
        dense_codec.encode([np.zeros((9, 8), np.uint8)])


def test_wrong_model_is_an_error_not_noise(dense_codec, conv_codec, digits_test):
    blob = dense_codec.encode(digits_test.images[:3])
    with pytest.raises(ModelError, match="made with model"):
        conv_codec.decode(blob)


def test_every_flipped_bit_and_every_truncation_is_caught(dense_codec, digits_test):
    blob = dense_codec.encode(digits_test.images[:4])
    for i in range(len(blob)):
        for bit in (0, 7):
            damaged = bytearray(blob)
            damaged[i] ^= 1 << bit
            with pytest.raises(LatentzipError):
                dense_codec.decode(bytes(damaged))
        with pytest.raises(LatentzipError):
            dense_codec.decode(blob[:i])


def test_foreign_and_wrong_kind_files(dense_codec):
    with pytest.raises(FormatError, match="not a latentzip file"):
        dense_codec.decode(b"\x89PNG\r\n\x1a\n" + bytes(40))
    other = container.pack(container.Kind.BYTES, b"", b"data")
    with pytest.raises(FormatError, match="bytes"):
        dense_codec.decode(other)


def test_damaged_model_file_is_refused(model_file, tmp_path):
    raw = model_file.read_bytes()
    (tmp_path / "cut.model").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelError):
        ImageCodec.load(tmp_path / "cut.model")
    (tmp_path / "text.model").write_bytes(b"hello")
    with pytest.raises(ModelError):
        ImageCodec.load(tmp_path / "text.model")


def test_transform_weights_are_stored_as_int8_rows(dense_codec, model_file):
    from safetensors import safe_open

    with safe_open(str(model_file), "pt") as stored:
        keys = set(stored.keys())
        matrices = [k for k in keys if k.startswith(("net.analysis.", "net.synthesis.")) and k.endswith(".weight")]
        assert matrices
        for key in matrices:
            assert stored.get_tensor(key).dtype == torch.int8 and key + SCALE in keys
    # The weights in use are exactly what the file holds: storing them again changes nothing.
    for key, value in dense_codec.model.state_dict().items():
        if value.is_floating_point():
            assert torch.equal(unpack(*pack("net." + key, value)), value), key


def test_model_of_another_format_version_is_refused(model_file, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load, save

    raw = model_file.read_bytes()
    with safe_open(str(model_file), "pt") as stored:
        meta = dict(stored.metadata())
    (tmp_path / "old.model").write_bytes(save(load(raw), metadata={**meta, "version": "1"}))
    with pytest.raises(ModelError, match="format version 1"):
        ImageCodec.load(tmp_path / "old.model")
    tensors = load(raw)
    del tensors[next(k for k in tensors if k.endswith(SCALE))]
    (tmp_path / "unscaled.model").write_bytes(save(tensors, metadata=meta))
    with pytest.raises(ModelError, match="damaged"):
        ImageCodec.load(tmp_path / "unscaled.model")


def test_evaluate_counts_real_bytes(dense_codec, digits_test):
    told: list[tuple[str, int, int]] = []
    ev = evaluate(dense_codec, list(digits_test.images[:60]), singles=5, progress=lambda *a: told.append(a))
    assert ev.images == 60 and ev.pixels == 60 * 64
    for stage, work in (("encoding", 60 * 64), ("decoding", 60 * 64), ("one image per file", 5)):
        assert sum(done for s, done, _ in told if s == stage) == work
        assert {total for s, _, total in told if s == stage} == {work}
    assert [s for s, _, _ in told] == sorted((s for s, _, _ in told), key=["encoding", "decoding", "one image per file"].index)
    assert ev.bytes_per_image * 60 == ev.file_bytes
    assert ev.single_file_bytes > ev.bytes_per_image
    assert 5 < ev.psnr < 60 and 0 < ev.ssim <= 1


@pytest.mark.parametrize(
    "options",
    [
        {"arch": "dense"},
        {"arch": "vae"},
        {"arch": "conv", "hidden": (8,), "levels": 1},
        {"arch": "deep", "reg": "sparse"},
        {"arch": "dense", "reg": "contractive"},
        {"arch": "dense", "noise": 0.2},
        {"arch": "dense", "noise": 0.1, "noise_kind": "salt-pepper"},
    ],
)
def test_every_variant_is_a_real_codec(digits, digits_test, options):
    from latentzip.image.train import TrainConfig, train

    cfg = TrainConfig(latent=6, epochs=1, batch_size=100, **{"hidden": (32,), **options})
    result = train(digits.images[:400], cfg, progress=False)
    assert np.isfinite(result.history[-1].loss)
    images = digits_test.images[:20]
    decoded = result.codec.decode(result.codec.encode(images))
    assert len(decoded) == 20 and decoded[0].shape == (8, 8)


def test_hostile_image_count_is_refused(dense_codec):
    header = dense_codec.fingerprint + bytes([2]) + bytes.fromhex("ffffffff0f") + bytes([8, 8, 1])
    blob = container.pack(container.Kind.IMAGES, header, b"")
    with pytest.raises(LimitError, match="4294967295 images"):
        dense_codec.decode(blob)


def test_packing_a_stored_weight_again_changes_nothing_even_for_tiny_rows():
    """Rows whose float16 scale is subnormal are where one packing is not idempotent."""
    weights = torch.randn(64, 16, generator=torch.Generator().manual_seed(3))
    weights *= torch.logspace(-8, 0, 64).view(-1, 1)
    stored = pack("net.synthesis.linear.weight", weights)
    again = pack("net.synthesis.linear.weight", unpack(*stored))
    assert torch.equal(stored[0], again[0]) and torch.equal(stored[1], again[1])
