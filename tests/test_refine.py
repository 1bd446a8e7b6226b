"""The refinement layer: every pixel within the promised bound, exact rates, integer parsing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from torch import nn

from latentzip import container
from latentzip.errors import FormatError, LatentzipError, ModelError
from latentzip.image import catalog, fixed, refine
from latentzip.image.codec import ImageCodec
from latentzip.image.modelfile import ModelFile
from latentzip.image.zoo import load_model
from latentzip.image.entropy import TOTAL
from latentzip.image.evaluate import evaluate


@pytest.mark.parametrize("max_error", [0, 1, 3, 20, refine.MAX_ERROR])
def test_every_pixel_within_the_bound_and_decode_matches_reconstruct(dense_codec, digits_test, max_error, model_only):
    images = digits_test.images[:60]
    blob = dense_codec.encode(images, max_error=max_error)
    decoded = np.stack(dense_codec.decode(blob))
    error = np.abs(decoded.astype(int) - images[..., 0].astype(int))
    assert error.max() <= max_error
    if max_error == 0:
        np.testing.assert_array_equal(decoded, images[..., 0])
    np.testing.assert_array_equal(decoded, np.stack(dense_codec.reconstruct(images, max_error=max_error)))


def test_a_tighter_bound_costs_more_and_gives_more(dense_codec, digits_test):
    images = digits_test.images
    plain = evaluate(dense_codec, images, singles=5)
    loose = evaluate(dense_codec, images, singles=5, max_error=24)
    tight = evaluate(dense_codec, images, singles=5, max_error=4)
    assert plain.file_bytes < loose.file_bytes < tight.file_bytes
    assert plain.psnr < loose.psnr < tight.psnr
    assert loose.max_abs_error <= 24 and tight.max_abs_error <= 4 and plain.max_abs_error > 24


@pytest.mark.parametrize("max_error", [0, 5])
def test_rate_of_the_tables_is_what_the_coder_spends(dense_codec, digits_test, max_error, model_only):
    images = digits_test.images
    blob = dense_codec.encode(images, max_error=max_error)
    _, payload = container.unpack(blob, container.Kind.IMAGES)
    ideal = dense_codec.code_bits(images, max_error=max_error).sum() / 8
    assert abs(len(payload) - ideal) <= 0.02 * ideal + 8
    estimate = dense_codec.estimate_bits(images, max_error=max_error) / 8
    assert len(payload) <= 1.02 * estimate + 8


def test_conv_refines_mixed_sizes_and_colour(digits):
    from latentzip.image.train import TrainConfig, train

    rng = np.random.default_rng(5)
    rgb = np.repeat(digits.images[:300], 3, axis=3)
    rgb = np.clip(rgb.astype(int) + rng.integers(-20, 20, size=rgb.shape), 0, 255).astype(np.uint8)
    codec = train(rgb, TrainConfig(arch="conv", latent=4, hidden=(8,), epochs=1, seed=2), progress=False).codec
    images = [rgb[0], rng.integers(0, 256, size=(13, 5, 3), dtype=np.uint8), rgb[1][:3, :7]]
    decoded = codec.decode(codec.encode(images, max_error=2))
    for original, back in zip(images, decoded):
        assert back.shape == original.shape
        assert np.abs(back.astype(int) - original.astype(int)).max() <= 2


def test_saved_model_keeps_its_refinement(dense_codec, model_file, digits_test):
    loaded = load_model(model_file)
    images = digits_test.images[:40]
    blob = dense_codec.encode(images, max_error=6)
    assert loaded.encode(images, max_error=6) == blob
    assert all(np.array_equal(a, b) for a, b in zip(loaded.decode(blob), dense_codec.decode(blob)))


def test_refinement_is_part_of_the_fingerprint(dense_codec, digits):
    stored = dense_codec.file
    tensors = {k: v for k, v in stored.tensors.items() if not k.startswith("refine.")}
    bare = ImageCodec(dense_codec.model, ModelFile(stored.version, stored.net, tensors, stored.meta))
    assert bare.fingerprint != dense_codec.fingerprint
    with pytest.raises(ModelError, match="no refinement tables"):
        bare.encode(digits.images[:3], max_error=4)
    refitted = bare.with_refinement(digits.images)
    assert refitted.fingerprint == bare.with_refinement(digits.images).fingerprint  # fitting is deterministic
    assert refitted.fingerprint not in (bare.fingerprint, dense_codec.fingerprint)  # other images, other tables


@pytest.mark.parametrize("bad", [-1, refine.MAX_ERROR + 1])
def test_out_of_range_bound_is_refused(dense_codec, digits_test, bad):
    with pytest.raises(LatentzipError, match="max error"):
        dense_codec.encode(digits_test.images[:3], max_error=bad)


def test_file_claiming_an_impossible_bound_is_refused(dense_codec, digits_test, model_only):
    blob = dense_codec.encode(digits_test.images[:3], max_error=3)
    header, payload = container.unpack(blob, container.Kind.IMAGES)
    cat = catalog.unpack(header[8:], len(blob))
    cat.max_error = refine.MAX_ERROR + 1
    forged = container.pack(container.Kind.IMAGES, header[:8] + catalog.pack(cat), payload)
    with pytest.raises(FormatError, match="max error"):
        dense_codec.decode(forged)


def test_dense_decoding_is_exact_integer_arithmetic(dense_codec, digits_test):
    """Decoded pixels (and so the refinement's choice of tables) must not depend on float
    rounding: compare them with the same fixed-point network run in Python's integers."""
    images = digits_test.images[:4]
    lat = np.stack(dense_codec.latents(images))
    synthesis = dense_codec.model.synthesis
    layers = [m for m in synthesis.net if isinstance(m, nn.Linear)]

    def affine(h, layer):
        w = [[round(float(v) * 2**fixed.WEIGHT_BITS) for v in row] for row in layer.weight.double().tolist()]
        b = [round(float(v) * 2 ** (fixed.WEIGHT_BITS + fixed.ACT_BITS)) for v in layer.bias.double().tolist()]
        return [(sum(x * wi for x, wi in zip(h, row)) + bi + 2 ** (fixed.WEIGHT_BITS - 1)) >> fixed.WEIGHT_BITS for row, bi in zip(w, b)]

    def gelu(v):
        if abs(v) > fixed.GELU_LIMIT:
            return max(v, 0)
        return round(0.5 * v * (1 + math.erf(v / 2**fixed.ACT_BITS / math.sqrt(2))))

    decoded = np.stack(dense_codec.decode(dense_codec.encode(images)))
    for n in range(len(images)):
        x = [int(v) << fixed.ACT_BITS for v in lat[n]]
        h = x
        for i, layer in enumerate(layers):
            h = affine(h, layer)
            if i < len(layers) - 1:
                h = [gelu(v) for v in h]
        out = [a + b for a, b in zip(h, affine(x, synthesis.linear))]
        expected = [min(max((v * 255 + 2 ** (fixed.ACT_BITS - 1)) >> fixed.ACT_BITS, 0), 255) for v in out]
        assert decoded[n].ravel().tolist() == expected


def test_integer_decoding_matches_the_float_network(dense_codec, digits_test):
    import torch

    images = digits_test.images
    lat = torch.from_numpy(np.stack(dense_codec.latents(images))).float()
    with torch.no_grad():
        floats = dense_codec.model.synthesise(lat, (8, 8))[:, 0].numpy() * 255
    integer = np.stack(dense_codec.reconstruct(images)).astype(float)
    assert np.abs(integer - floats).max() <= 1.0  # within one level of the unrounded float output


def test_gelu_table_is_far_from_every_rounding_boundary():
    """So any libm's erf, correct to 1e-12, builds the same table."""
    scale = 2**fixed.ACT_BITS
    values = [0.5 * i * (1 + math.erf(i / scale / math.sqrt(2))) for i in range(-fixed.GELU_LIMIT, fixed.GELU_LIMIT + 1)]
    assert min(abs(v - math.floor(v) - 0.5) for v in values) > 1e-6


@pytest.mark.parametrize("max_error", [0, 1, 7, refine.MAX_ERROR])
def test_derived_tables_are_valid_integer_distributions(dense_codec, max_error):
    counts = refine._counts(dense_codec.refinement.histogram, max_error)
    assert counts.shape[1] == 2 * refine.radius(max_error) + 1
    assert counts.min() >= 1 and (counts.sum(1) == TOTAL).all()


def test_quantizer_bound_holds_for_every_residual():
    residual = np.arange(-255, 256)
    for d in range(0, refine.MAX_ERROR + 1):
        q = refine.quantize(residual, d)
        assert np.abs(residual - q * (2 * d + 1)).max() <= d
        assert np.abs(q).max() <= refine.radius(d)


def test_tables_adapt_to_the_file(dense_codec, digits):
    """Images unlike the training set (here: noisy) teach the tables as a file is coded:
    together they cost clearly fewer bits than one per file, where only the stored
    tables are used."""
    rng = np.random.default_rng(0)
    noisy = np.clip(digits.images[:300].astype(int) + rng.normal(0, 25, digits.images[:300].shape), 0, 255).astype(np.uint8)
    together = dense_codec.code_bits(noisy, max_error=2).sum()
    apart = sum(dense_codec.code_bits(noisy[i : i + 1], max_error=2).sum() for i in range(len(noisy)))
    assert together < 0.95 * apart


def test_every_pass_and_chunk_boundary_round_trips(dense_codec, digits):
    for count in (1, 2, 3, 7, 8, 9):
        images = digits.images[:count]
        decoded = np.stack(dense_codec.decode(dense_codec.encode(images, max_error=1)))
        assert np.abs(decoded.astype(int) - images[..., 0].astype(int)).max() <= 1
