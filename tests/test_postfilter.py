"""The post-filter: added to a trained model it changes no byte, trained alone it lowers
the error at every quality, and it decodes in integers like the rest of the synthesis:
the same pixels tiled or whole and on any thread count."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentzip import metrics
from latentzip.errors import ModelError
from latentzip.image import postfilter, tiling
from latentzip.image.codec import ImageCodec
from latentzip.image.train import TrainConfig, _startable, train

from .test_conv_codec import _colour, _large, same_but_fingerprint


@pytest.fixture(scope="module")
def base_codec(digits):
    cfg = TrainConfig(arch="conv", levels=2, latent=24, hidden=(16,), qualities=3, epochs=2, seed=3, context=False)
    return train(_colour(digits, 300), cfg, progress=False).codec.at_effort(0)


@pytest.fixture(scope="module")
def post_codec(base_codec, digits):
    model = postfilter.with_post_filter(base_codec.model, 8)
    stats = postfilter.fit(model, list(_large(digits, 128, 128, seed=s) for s in range(6)), minutes=0.15, pieces=24)
    assert stats.steps > 0 and len(stats.gain_db) == 3
    return ImageCodec.from_model(model, dict(base_codec.meta)).at_effort(0)


def test_a_new_post_filter_changes_no_byte_and_no_pixel(base_codec, digits):
    grown = ImageCodec.from_model(postfilter.with_post_filter(base_codec.model, 8), dict(base_codec.meta)).at_effort(0)
    assert grown.cfg.post == 8 and grown.fingerprint != base_codec.fingerprint
    images = _colour(digits, 12, seed=7)
    for quality in (1, 3):
        blob = grown.encode(images, quality=quality)
        assert same_but_fingerprint(base_codec.encode(images, quality=quality), blob)
        assert np.array_equal(np.stack(grown.decode(blob)), np.stack(base_codec.decode(base_codec.encode(images, quality=quality))))


def test_a_trained_post_filter_lowers_the_error_at_every_quality(base_codec, post_codec, digits):
    image = _large(digits, 160, 192, seed=40)  # not among the pieces it trained on
    for quality in (1, 2, 3):
        before = base_codec.decode(base_codec.encode([image], quality=quality))[0]
        after = post_codec.decode(post_codec.encode([image], quality=quality))[0]
        assert metrics.psnr(image, after) > metrics.psnr(image, before)


def test_post_filtered_integer_decoding_matches_the_float_network(post_codec, digits):
    images = _colour(digits, 20, seed=10)
    exact = np.stack(post_codec.reconstruct(images, quality=2)).astype(float)
    symbols = post_codec.model.latents.quantize(post_codec._analyse(images), 1)
    with torch.no_grad():
        floats = post_codec.model.synthesise(post_codec.model.latents.dequantize(symbols, 1), (16, 16), quality=1)
    assert np.abs(exact - floats.permute(0, 2, 3, 1).numpy() * 255).max() <= 1.0
    with torch.no_grad():  # and the filter is in use: without it the pixels differ
        plain = post_codec.model.synthesise(post_codec.model.latents.dequantize(symbols, 1), (16, 16))
    assert np.abs(exact - plain.permute(0, 2, 3, 1).numpy() * 255).max() > 1.0


def test_post_filtered_tiles_decode_to_the_pixels_of_one_piece(post_codec, digits, monkeypatch):
    """The filter reads 6 px across a tile's edge, so tiles are synthesised with a wider
    margin of latents (two more blocks of 4 px here): still no seam, by construction."""
    assert post_codec.cfg.halo == 1 + 2
    image = _large(digits, 300, 600)
    whole = post_codec.decode(post_codec.encode([image], quality=2))[0]
    monkeypatch.setattr(tiling, "SIDE", 256)
    tiled = post_codec.encode([image], quality=2)
    assert np.array_equal(post_codec.decode(tiled)[0], whole)


def test_post_filtered_pixels_do_not_depend_on_the_thread_count(post_codec, digits):
    blob = post_codec.encode([_large(digits, 96, 160, seed=8)], quality=3)
    before = torch.get_num_threads()
    try:
        found = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            found.append(post_codec.decode(blob)[0])
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(found[0], found[1])


def test_a_model_file_with_a_post_filter_round_trips_and_a_forged_one_is_refused(post_codec, digits):
    from safetensors.torch import save

    loaded = ImageCodec.from_bytes(post_codec.file.to_bytes()).at_effort(0)
    image = _large(digits, 64, 96, seed=9)
    assert np.array_equal(loaded.decode(post_codec.encode([image], quality=1))[0],
                          post_codec.decode(post_codec.encode([image], quality=1))[0])
    stored = post_codec.file
    for post in (-1, 10**6, 2.5, "8", True, 0, 16):  # 0 and 16: the stored tensors are not that network's
        meta = {"format": "latentzip-image-model", "version": "3", "net": json.dumps({**stored.net, "post": post}),
                "meta": "{}"}
        with pytest.raises(ModelError, match="damaged"):
            ImageCodec.from_bytes(save(stored.tensors, metadata=meta))


def test_training_starts_from_a_model_with_a_post_filter_without_it(post_codec):
    network = post_codec.cfg
    assert _startable(type(network)(**{**vars(network), "post": 0}), network)
    assert _startable(network, type(network)(**{**vars(network), "post": 0}))
    assert not _startable(type(network)(**{**vars(network), "post": 0, "hidden": (32,)}), network)


@pytest.mark.parametrize("groups", [12, 60, 192, 240])
def test_the_filter_in_bands_gives_the_integers_of_one_piece(post_codec, groups, monkeypatch):
    """Bands read their neighbours' rows as far as the filter reaches: the same integers,
    in bands of 1, 5 and 16 rows of one image (12 groups a row), or an image at a time."""
    post = post_codec._fixed.post
    rng = np.random.default_rng(groups)
    pixels = torch.from_numpy(rng.integers(-(1 << 11), 1 << 11, size=(3, 2, 40, 24))).double()
    whole = post(pixels.clone(), 1)
    monkeypatch.setattr(type(post), "GROUPS", groups)
    assert torch.equal(post(pixels.clone(), 1), whole)
    if groups < 240:
        monkeypatch.setattr(type(post), "MARGIN", 2)  # a margin short of the filter's reach is not enough
        assert not torch.equal(post(pixels.clone(), 1), whole)


def test_a_model_with_a_post_filter_encodes_at_effort_1_unless_asked(base_codec, post_codec, digits):
    """Fitting runs through the filter at full resolution, so a filtered model's steps
    cost about twice as much: its default effort is 1, a plain model's 2."""
    fresh, plain = (ImageCodec.from_bytes(c.file.to_bytes()) for c in (post_codec, base_codec))
    assert (fresh.effort, plain.effort) == (1, 2)
    images = _colour(digits, 4, seed=12)
    assert fresh.encode(images, quality=2) == fresh.at_effort(1).encode(images, quality=2)
    assert fresh.encode(images, quality=2, effort=2) == fresh.at_effort(2).encode(images, quality=2)


def test_training_with_post_trains_the_filter_and_goes_on_with_a_trained_one(post_codec, digits, tmp_path):
    """TrainConfig.post trains a filter with the rest of the network; starting from a
    model that has one of that width keeps its weights as the start."""
    cfg = TrainConfig(arch="conv", levels=2, latent=24, hidden=(16,), qualities=3, epochs=1, seed=3, context=False,
                      post=8)
    fresh = train(_colour(digits, 60), cfg, progress=False).codec
    assert fresh.cfg.post == 8 and fresh.model.synthesis.post.rest[-1].weight.abs().sum() > 0  # it starts at zero
    path = tmp_path / "filtered.model"
    post_codec.save(path)
    still = TrainConfig(**{**vars(cfg), "start": str(path), "lr": 1e-9})  # steps far below the weights' grid
    goes_on = train(_colour(digits, 60), still, progress=False).codec
    for name, value in post_codec.model.synthesis.post.state_dict().items():
        assert torch.allclose(goes_on.model.synthesis.post.state_dict()[name], value, atol=1e-6), name
