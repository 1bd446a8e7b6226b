"""The convolutional codec: any size and channel count, the hyperprior, the quality
ladder, and decoding in exact integer arithmetic."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentzip import metrics
from latentzip.errors import FormatError, LatentzipError, ModelError
from latentzip.image import fixed, latents
from latentzip.image.model import Autoencoder
from latentzip.image.transforms import NetConfig
from latentzip.image.train import Batches, TrainConfig, choose, split, train

from .crafted import ltz_files


def _colour(digits, count, seed=0):
    """Colour images of several sizes made from real digits: tinted, noisy and tiled."""
    rng = np.random.default_rng(seed)
    tiles = digits.images[:count * 4, :, :, 0].reshape(count, 2, 2, 8, 8).transpose(0, 1, 3, 2, 4).reshape(count, 16, 16)
    tint = rng.uniform(0.3, 1.0, size=(count, 1, 1, 3))
    rgb = tiles[..., None] * tint + rng.normal(0, 6, size=(count, 16, 16, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def hyper_codec(digits):
    cfg = TrainConfig(arch="conv", levels=2, latent=24, hidden=(16,), qualities=3, epochs=2, seed=3)
    return train(_colour(digits, 300), cfg, progress=False).codec


@pytest.fixture(scope="module")
def alpha_codec(digits):
    images = _colour(digits, 200, seed=1)
    alpha = (images.max(axis=-1, keepdims=True) > 60).astype(np.uint8) * 255
    cfg = TrainConfig(arch="conv", levels=2, latent=16, hidden=(8,), qualities=2, epochs=1, seed=4)
    return train(np.concatenate([images, alpha], axis=-1), cfg, progress=False).codec


def test_hyperprior_round_trip_at_every_quality(hyper_codec, digits):
    images = list(_colour(digits, 12, seed=7))
    images.append(images[0][:13, :7])  # a size no block divides
    sizes = []
    for quality in (1, 2, 3):
        blob = hyper_codec.encode(images, quality=quality)
        decoded = hyper_codec.decode(blob)
        assert [d.shape for d in decoded] == [im.shape for im in images]
        assert all(np.array_equal(a, b) for a, b in zip(decoded, hyper_codec.reconstruct(images, quality=quality)))
        sizes.append(len(blob))
    assert sizes[0] < sizes[1] < sizes[2]  # higher quality, more bytes


def test_exact_bits_match_the_file(hyper_codec, digits):
    images = _colour(digits, 40, seed=8)
    blob = hyper_codec.encode(images, quality=2)
    header_and_crc = 60
    assert abs(len(blob) - hyper_codec.code_bits(images, quality=2).sum() / 8) < header_and_crc


def test_scale_indices_do_not_depend_on_the_thread_count(hyper_codec, digits):
    codec = hyper_codec.model.latents
    y = hyper_codec._analyse(_colour(digits, 30, seed=9))
    symbols = codec.quantize(y, 1)
    before = torch.get_num_threads()
    try:
        found = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            found.append(codec.indices(symbols["z"], symbols["y"], 1))
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(found[0], found[1])
    assert found[0].min() >= 0 and found[0].max() < latents.SCALES


def test_conv_synthesis_is_exact_integer_arithmetic(hyper_codec):
    """Each fixed-point convolution equals the same sum over Python integers."""
    _check_against_python_sums(hyper_codec, seed=0, at=1)


def _check_against_python_sums(codec, seed: int, at: int) -> None:
    """Output (at, at) of the synthesis's integer 3x3 convolution on a random 3x3 input
    equals the same sum over Python integers, reading positions past the edge as the
    nearest edge value (the model's replicate padding; (1, 1) reads none)."""
    layer = fixed._Conv(next(m for m in codec.model.synthesis.net if getattr(m, "kernel_size", None) == (3, 3)))
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.integers(-(1 << 16), 1 << 16, size=(1, layer.weight.shape[1], 3, 3)))
    out = layer(x.transpose(0, 1).double()).transpose(0, 1)  # layers take channel-major float64
    w, b = layer.weight.to(torch.int64), layer.bias.to(torch.int64)
    near = [min(max(at + d, 0), 2) for d in (-1, 0, 1)]  # the input row (or column) tap 0, 1, 2 reads
    for o in range(w.shape[0]):
        acc = int(b[o]) + sum(int(w[o, i, ky, kx]) * int(x[0, i, near[ky], near[kx]])
                              for i in range(w.shape[1]) for ky in range(3) for kx in range(3))
        assert int(out[0, o, at, at]) == (acc + (1 << (fixed.CONV_WEIGHT_BITS - 1))) >> fixed.CONV_WEIGHT_BITS


def test_edges_are_replicated_exactly_and_older_models_keep_zero_padding(hyper_codec):
    """A trained model's 3x3 convolutions repeat the edge value past it (in the transform
    and in the hyperprior), the integer form included; a model file without the key
    (written before it existed) is rebuilt with the zero padding it was trained with.
    The context's filters see a map where zero means "not decoded yet", so zero past
    the edge says the same."""
    context = set(hyper_codec.model.latents.context.modules())
    convs = [m for m in hyper_codec.model.modules() if getattr(m, "kernel_size", None) == (3, 3) and m not in context]
    assert convs and all(m.padding_mode == "replicate" for m in convs)
    assert context and all(m.padding_mode == "zeros" for m in context if isinstance(m, torch.nn.Conv2d))
    _check_against_python_sums(hyper_codec, seed=1, at=0)  # the corner: rows and columns -1 read as 0
    net = {k: v for k, v in hyper_codec.file.net.items() if k != "padding"}
    older = Autoencoder(NetConfig(**net))
    assert all(m.padding_mode == "zeros" for m in older.modules() if getattr(m, "kernel_size", None) == (3, 3))


@pytest.mark.parametrize("grid", [(7, 9), (1, 5), (4, 4), (2, 1)])
def test_checkerboard_context_is_the_grouped_convolution_of_the_anchors(grid):
    """The context reads four taps at the non-anchors only; at those positions it must be
    the grouped convolution of the anchors exactly, edges (zero padding) included. Other
    grouped convolutions have no integer form and are refused."""
    torch.manual_seed(0)
    layer = torch.nn.Conv2d(6, 12, 3, padding=1, groups=6, bias=False)
    x = torch.randint(-(1 << 18), 1 << 18, (2, 6, *grid))
    anchors = latents.checkerboard(grid, torch.device("cpu"))
    weight = torch.round(layer.weight.detach().double() * (1 << fixed.CONV_WEIGHT_BITS))
    exact = F.conv2d((x * anchors).double(), weight, padding=1, groups=6).to(torch.int64)
    expected = ((exact + (1 << (fixed.CONV_WEIGHT_BITS - 1))) >> fixed.CONV_WEIGHT_BITS)[:, :, ~anchors[0, 0]]
    context = fixed.CheckerboardContext(layer)(x.transpose(0, 1).double(), ~anchors[0, 0])  # channel-major
    assert torch.equal(context.transpose(0, 1).to(torch.int64), expected)
    with pytest.raises(ValueError, match="checkerboard"):
        fixed._Conv(layer)


def test_fixed_layers_give_the_integers_of_int64_arithmetic():
    """The frozen layers run on channel-major float64 and round with a float64 floor;
    that must give the integers of plain int64 arithmetic (negative sums included):
    1x1 and 3x3 convolutions, inverse GDN, ReLU and pixel shuffle, with and without
    skipped inputs."""
    from latentzip.image.transforms import GDN

    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(10, 16, 3, padding=1, padding_mode="replicate"), GDN(16, inverse=True),
                              torch.nn.Conv2d(16, 16, 1), torch.nn.ReLU(), torch.nn.PixelShuffle(2))
    with torch.no_grad():
        net[1].beta.add_(torch.rand(16)), net[1].gamma.add_(torch.rand(16, 16) * 0.1)
    frozen = fixed.FixedNet(net)
    x = torch.randint(-(1 << 16), 1 << 16, (3, 10, 5, 4))

    def shifted(acc: torch.Tensor, bits: int) -> torch.Tensor:
        return ((acc.to(torch.int64) + (1 << (bits - 1))) >> bits).clamp(-fixed.CONV_LIMIT, fixed.CONV_LIMIT)

    conv, gdn, last = frozen.layers[0], frozen.layers[1], frozen.layers[2]
    h = shifted(torch.nn.functional.conv2d(torch.nn.functional.pad(x.double(), (1, 1, 1, 1), mode="replicate"),
                                           conv.weight, conv.bias), fixed.CONV_WEIGHT_BITS)
    coarse = (h + 8) >> 4
    norm = torch.einsum("ij,njyx->niyx", gdn.gamma.to(torch.int64), coarse * coarse) + gdn.beta.to(torch.int64)[:, None, None]
    h = shifted((h * fixed._isqrt(norm)).double(), 14)
    h = shifted(torch.einsum("ij,njyx->niyx", last.weight[:, :, 0, 0], h.double()) + last.bias[:, None, None],
                fixed.CONV_WEIGHT_BITS)
    assert torch.equal(frozen(x), torch.nn.functional.pixel_shuffle(h.clamp_min(0), 2))
    head = fixed.FixedNet(torch.nn.Sequential(torch.nn.Conv2d(10, 8, 1)))
    x[:, 6:] = 0  # the last four inputs are zero everywhere: a layer may skip them
    assert torch.equal(head(x[:, :6], torch.arange(6)), head(x))
    roots = fixed._isqrt(torch.tensor([0.0, 15.0, 16.0, float((1 << 52) - 1)], dtype=torch.float64))
    assert roots.tolist() == [0.0, 3.0, 4.0, float(math.isqrt((1 << 52) - 1))]


def test_integer_square_root_is_exact():
    values = torch.tensor([0, 1, 2, 3, 4, 15, 16, 17, (1 << 52) - 1, (1 << 40) + 12345, 99_999_999_999], dtype=torch.int64)
    roots = fixed._isqrt(values)
    for v, r in zip(values.tolist(), roots.tolist()):
        assert r * r <= v < (r + 1) * (r + 1)


def test_integer_decoding_matches_the_float_network(hyper_codec, digits):
    images = _colour(digits, 20, seed=10)
    exact = np.stack(hyper_codec.at_effort(0).reconstruct(images, quality=3)).astype(float)
    symbols = hyper_codec.model.latents.quantize(hyper_codec._analyse(images), 2)
    latents_float = hyper_codec.model.latents.dequantize(symbols, 2)
    with torch.no_grad():
        floats = hyper_codec.model.synthesise(latents_float, (16, 16)).permute(0, 2, 3, 1).numpy() * 255
    assert np.abs(exact - floats).max() <= 1.0


def test_context_training_path_sees_what_the_decoder_sees(hyper_codec, digits):
    """The float pass training and validation use gives the latents the exact integer
    walk decodes (means, context and all), up to fixed-point rounding: were the two to
    order inputs or passes differently, training would optimise another codec."""
    codec = hyper_codec.model.latents
    assert isinstance(codec, latents.ContextLatents)
    y = hyper_codec._analyse(_colour(digits, 20, seed=11))
    for quality in range(hyper_codec.cfg.qualities):
        symbols = codec.quantize(y, quality)
        exact = codec.dequantize(symbols, quality)
        floats = codec(y, quality, "rounded")[0]
        assert symbols["mean"].any()  # the trained heads do predict means
        close = (exact - floats).abs() < 1e-2
        assert close.float().mean() > 0.99


@pytest.mark.parametrize("context", [True, False])
def test_held_side_latents_are_the_ones_coded(hyper_codec, plain_codec, digits, context):
    """`side_of` is what `quantize` codes on its own; given other side latents (an
    encoder fitting y holds them), `quantize` codes those, and `forward` judges with them."""
    codec = hyper_codec if context else plain_codec
    model = codec.model.latents
    y = codec._analyse(_colour(digits, 6, seed=12))
    side = model.side_of(y, 1)
    assert np.array_equal(model.quantize(y, 1)["z"], side.numpy())
    held = model.side_of(2 * y, 1)
    assert not torch.equal(held, side)
    assert np.array_equal(model.quantize(y, 1, held)["z"], held.numpy())
    found, given = model(y, 1, "rounded"), model(y, 1, "rounded", side)
    assert torch.equal(found[0], given[0]) and torch.allclose(found[1], given[1])
    assert not torch.allclose(model(y, 1, "rounded", held)[1], found[1])


def test_grey_images_go_through_a_colour_model(hyper_codec, digits):
    grey = digits.images[:5, :, :, 0]
    decoded = hyper_codec.decode(hyper_codec.encode(grey))
    assert all(d.shape == (8, 8) for d in decoded)


def test_alpha_is_lossless_or_bounded_on_request(alpha_codec, digits):
    images = _colour(digits, 10, seed=11)
    alpha = np.where(images.max(axis=-1, keepdims=True) > 60, 255, 128).astype(np.uint8)
    rgba = np.concatenate([images, alpha], axis=-1)
    decoded = np.stack(alpha_codec.decode(alpha_codec.encode(rgba, alpha_error=0)))
    np.testing.assert_array_equal(decoded[..., 3], rgba[..., 3])
    loose = np.stack(alpha_codec.decode(alpha_codec.encode(rgba, alpha_error=8)))
    assert np.abs(loose[..., 3].astype(int) - rgba[..., 3]).max() <= 8
    # Opaque RGB images go through a model with alpha and come back as RGB.
    assert alpha_codec.decode(alpha_codec.encode(images[:2]))[0].shape == (16, 16, 3)


def test_alpha_psnr_counts_what_shows():
    a = np.zeros((4, 4, 4), np.uint8)
    b = a.copy()
    b[..., :3] = 200  # colour under fully transparent pixels does not show
    assert metrics.psnr(a, b) == float("inf")
    a[..., 3] = b[..., 3] = 255
    assert metrics.psnr(a, b) < 20


def test_quality_out_of_range_and_forged_quality_are_refused(hyper_codec, digits):
    images = _colour(digits, 3)
    with pytest.raises(LatentzipError, match="quality"):
        hyper_codec.encode(images, quality=4)
    cat, rebuild = _catalog(hyper_codec.encode(images, quality=1))
    cat.quality = 7
    with pytest.raises(FormatError, match="quality"):
        hyper_codec.decode(rebuild(cat))



def test_the_encoder_refuses_a_file_larger_than_the_decoder_accepts(hyper_codec, digits, monkeypatch, tmp_path,
                                                                     capsys):
    """A file's latents are bounded (a hostile file must not declare gigapixels); the
    encoder used to write such a file all the same (thirty 12-megapixel photographs at
    photo:q4), which the decoder then refused: the user's images were in a file that
    could not be read. Now the encoder refuses first, by the same count, and `encode`
    before it reads the images (a folder of a thousand photographs would not fit in memory)."""
    from latentzip import data
    from latentzip.image import codec as codec_module

    from .conftest import in_process

    images = _colour(digits, 3)
    per_image = hyper_codec._latent_count([images[0].shape])
    monkeypatch.setattr(codec_module, "MAX_LATENTS", 2 * per_image)
    assert len(hyper_codec.decode(hyper_codec.encode(images[:2]))) == 2  # at the bound: written and read
    with pytest.raises(LatentzipError, match="more than one file may.*several files"):
        hyper_codec.encode(images)
    (tmp_path / "in").mkdir()
    for k, image in enumerate(images):
        data.write_png(tmp_path / "in" / f"{k}.png", image)
    hyper_codec.save(tmp_path / "m.model")
    monkeypatch.setattr(data, "read_images", None)  # never reached
    status, err = in_process(capsys, "encode", "-m", str(tmp_path / "m.model"), str(tmp_path / "in"),
                             "-o", str(tmp_path / "all.ltz"))
    assert status != 0 and "several files" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "all.ltz").exists()

def test_presets_name_the_ladder(hyper_codec, tmp_path):
    from latentzip.image.zoo import load_model

    presets = hyper_codec.presets()
    assert list(presets) == ["q1", "q2", "q3"] and all("bpp" in p["description"] for p in presets.values())
    path = tmp_path / "colour.model"
    hyper_codec.save(path)
    assert load_model(f"{path}:q2").quality == 2
    with pytest.raises(ModelError, match="no preset"):
        load_model(f"{path}:q9")


def test_model_file_asking_for_a_huge_network_is_refused_before_building_it(hyper_codec, tmp_path):
    import json

    from safetensors.torch import save

    from latentzip.image.codec import ImageCodec

    stored = hyper_codec.file
    for change in ({"hidden": [20_000]}, {"levels": 100}, {"latent": 10**9}, {"context": "yes"}, {"context": False}):
        meta = {"format": "latentzip-image-model", "version": "3", "net": json.dumps({**stored.net, **change}), "meta": "{}"}
        with pytest.raises(ModelError, match="damaged"):
            ImageCodec.from_bytes(save(stored.tensors, metadata=meta))
    tensors = dict(stored.tensors)
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    meta = {"format": "latentzip-image-model", "version": "3", "net": json.dumps(stored.net), "meta": "{}"}
    with pytest.raises(ModelError, match="not finite"):
        ImageCodec.from_bytes(save(tensors, metadata=meta))
    meta["meta"] = "not json"
    with pytest.raises(ModelError, match="JSON"):
        ImageCodec.from_bytes(save(stored.tensors, metadata=meta))


def test_decoded_pixels_do_not_depend_on_the_thread_count(hyper_codec, digits):
    images = _colour(digits, 25, seed=12)
    blob = hyper_codec.encode(images, quality=3, max_error=3)
    before = torch.get_num_threads()
    try:
        found = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            found.append(np.stack(hyper_codec.decode(blob)))
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(found[0], found[1])
    assert np.abs(found[0].astype(int) - images).max() <= 3


def test_training_says_what_it_chose(digits):
    """Every setting left open is filled in from the images and recorded in the model."""
    images = list(_colour(digits, 60, seed=13))
    images += [np.pad(im, ((0, 9), (0, 4), (0, 0)), mode="edge") for im in images[:20]]  # mixed sizes
    seen = []
    result = train(images, TrainConfig(epochs=1, seed=5), progress=False, on_start=lambda cfg, n, dev: seen.append(cfg))
    cfg = result.config
    assert seen and seen[0].arch == cfg.arch == "conv" and cfg.prior == "hyperprior"
    assert cfg.latent == 3 * 4 ** cfg.levels and cfg.qualities == 6  # every value of an RGB block
    assert result.codec.meta["train"]["arch"] == "conv"
    assert len(result.codec.presets()) == 6


def test_a_budget_keeps_what_its_end_is_timed_to_take(digits, monkeypatch):
    """A run by the clock times its end (refinement tables and presets) on the starting
    network before it trains, without touching that network, and stops training in
    time for it: here a reserve larger than the budget leaves a single step."""
    from latentzip.image import train as training

    images = _colour(digits, 60, seed=14)
    cfg = choose(TrainConfig(arch="conv"), images)
    model = Autoencoder(cfg.net(3, 16, 16))
    before = copy.deepcopy(model.state_dict())
    assert training._finishing_time(model, cfg, list(images[:50]), list(images[50:])) > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    monkeypatch.setattr(training, "_finishing_time", lambda *args: 3600.0)
    steps = []
    monkeypatch.setattr(training, "_losses", lambda *args, real=training._losses: steps.append(1) or real(*args))
    result = train(images, TrainConfig(arch="conv", minutes=1.0, seed=6), progress=False)
    assert len(steps) == 1 and len(result.codec.presets()) == 6


def test_small_images_of_one_size_go_dense_only_when_grey():
    """Grey thumbnails of one size get the deep dense model; colour or alpha ones of the
    same size, a convolutional model (levels and crops fitted to them)."""
    assert choose(TrainConfig(), [np.zeros((28, 28, 1), np.uint8)] * 4).arch == "deep"
    for channels in (2, 3, 4):
        cfg = choose(TrainConfig(), [np.zeros((16, 16, channels), np.uint8)] * 4)
        assert (cfg.arch, cfg.levels, cfg.crop) == ("conv", 2, 16)
    assert choose(TrainConfig(), [np.zeros((40, 40, 1), np.uint8)] * 4).arch == "conv"


def test_crops_follow_the_pixels_not_the_count_of_images():
    """Thirty thumbnails among three photographs leave the crops at 128 px; once the
    thumbnails hold more than a tenth of the pixels, the crops shrink to fit them."""
    thumbnails = [np.zeros((16, 16, 3), np.uint8)] * 30
    photographs = [np.zeros((256, 384, 3), np.uint8)] * 3
    assert choose(TrainConfig(), thumbnails + photographs).crop == 128
    assert choose(TrainConfig(), thumbnails * 10 + photographs).crop == 16


def test_crops_fit_the_images_training_cuts_them_from():
    """Two images, the larger one set aside for validation: crops chosen from both
    (128) fitted no training image, and training stopped asking for a smaller --crop
    the user never gave."""
    images = [np.zeros((200, 200, 3), np.uint8), np.zeros((56, 56, 3), np.uint8)]
    cfg = choose(TrainConfig(), images)
    val, fit = split(images, cfg)
    assert [im.shape[0] for im in val] == [200]  # the case this test is about
    assert cfg.crop <= 56 and Batches(fit, cfg).usable == [0]


def _photos(count: int, side: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth colour images (random gradients with noise) of `side` pixels."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, side)
    out = []
    for _ in range(count):
        a, b, c = rng.uniform(0, 255, (3, 3))
        image = a + np.outer(ramp, np.ones(side))[..., None] * (b - a) + np.outer(np.ones(side), ramp)[..., None] * (c - a) / 2
        out.append(np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8))
    return out


@pytest.mark.parametrize("post", [None, 0])
def test_a_colour_collection_starts_from_the_shipped_photo_model(post):
    """With every setting left open, colour images of 64 px or more train the photo
    model's network from the photo model's weights, its post-filter included (lr 0 keeps
    them as they are, and what a model without context lacks starts at zero: the same
    files, decoded to the same pixels). With --post-filter 0 the filter is left out."""
    from latentzip.image import postfilter, zoo
    from latentzip.image.codec import ImageCodec

    images = _photos(12, 64)
    result = train(images, TrainConfig(epochs=1, batch_size=2, lr=0.0, post=post), progress=False)
    photo = zoo.load_model(result.config.start)
    assert result.config.start == zoo.networks("photo")[0] and result.codec.meta["train"]["start"] == result.config.start
    assert result.config.qualities == photo.cfg.qualities and result.config.lmbda == photo.meta["train"]["lmbda"]
    assert result.codec.model.cfg.context and result.codec.cfg.post == (photo.cfg.post if post is None else 0)
    if post == 0:
        photo = ImageCodec.from_model(postfilter.with_post_filter(photo.model, 0), dict(photo.meta))
    trained = result.codec.model.state_dict()
    assert all(torch.equal(trained[k][tuple(slice(0, n) for n in v.shape)], v) for k, v in photo.model.state_dict().items())
    files = [c.at_effort(0).encode(images[:3], quality=2) for c in (result.codec, photo)]
    assert same_but_fingerprint(*files)
    assert all(np.array_equal(a, b) for a, b in zip(result.codec.decode(files[0]), photo.decode(files[1])))


def test_a_grey_collection_trains_the_photo_model_as_colour_and_gets_grey_back():
    from latentzip.image import zoo

    grey = [im[..., :1] for im in _photos(12, 64, seed=3)]
    result = train(grey, TrainConfig(epochs=1, batch_size=2), progress=False)
    assert result.config.start == zoo.networks("photo")[0] and result.codec.model.cfg.channels == 3
    decoded = result.codec.decode(result.codec.encode([im[..., 0] for im in grey[:3]]))
    assert [d.shape for d in decoded] == [(64, 64)] * 3
    assert metrics.mean_psnr([im[..., 0] for im in grey[:3]], decoded) > 25


def test_a_collection_with_alpha_starts_from_the_photo_model_with_alpha_added():
    """RGBA images train the photo network with an alpha channel: colour's weights as
    shipped (lr 0 codes colour exactly as the photo model does), alpha's inputs unused
    and its output opaque; the alpha coder keeps alpha exact."""
    import latentzip
    from latentzip.image import zoo

    colour = _photos(6, 64, seed=5)
    alpha = [np.full((64, 64, 1), 255, np.uint8) for _ in colour]
    alpha[0][24:40, 16:32] = 0  # 0.7% of the pixels
    images = [np.dstack([c, a]) for c, a in zip(colour, alpha)]
    result = train(images, TrainConfig(epochs=1, batch_size=2, lr=0.0), progress=False)
    assert result.config.start == zoo.networks("photo")[0] and result.codec.model.cfg.channels == 4
    block = 3 * result.codec.model.cfg.stride**2
    state, photo = result.codec.model.state_dict(), zoo.load_model(result.config.start).model.state_dict()
    assert torch.equal(state["analysis.linear.weight"][:, :block], photo["analysis.linear.weight"])
    assert not state["analysis.linear.weight"][:, block:].any() and not state["synthesis.linear.weight"][block:].any()
    # At effort 0: fitting the latents runs in floating point, where alpha's zero weights
    # can move the last bits of a sum (the golden hashes are at effort 0 for that reason).
    decoded = result.codec.decode(result.codec.encode(images, quality=2, effort=0))
    assert all(np.array_equal(d[..., 3], im[..., 3]) for d, im in zip(decoded, images))  # alpha: lossless
    shipped = latentzip.load_model(zoo.networks("photo")[0])  # its post-filter too: alpha's weights in it are 0
    alike = shipped.decode(shipped.encode(colour[1:], quality=2, effort=0))
    assert all(np.array_equal(d[..., :3], s) for d, s in zip(decoded[1:], alike))


@pytest.mark.parametrize("images, cfg", [
    (_photos(3, 48), TrainConfig()),  # too small for 16x downsampling
    (_photos(3, 64), TrainConfig(hidden=(32,))),  # the user's own network
    (_photos(3, 64), TrainConfig(lmbda=0.01)),  # one rate, not the photo model's ladder
    (_photos(3, 64), TrainConfig(start="linear")),
])
def test_other_networks_start_linear(images, cfg):
    assert choose(cfg, images).start == "linear"


def test_a_factorized_prior_starts_from_the_photo_networks_transforms():
    """--prior factorized takes the photo model's transforms and gains (lr 0 keeps them
    as shipped); its densities start from the latents, so a gain that leaves nearly
    every latent zero costs nearly nothing (a logistic with a floor of 0.2 on its scale
    costs 0.24 bits a latent: about 390 bytes per 64x64 image at the lowest quality)."""
    import latentzip
    from latentzip.image import zoo

    images = _photos(6, 64, seed=7)
    result = train(images, TrainConfig(prior="factorized", epochs=1, batch_size=2, lr=0.0), progress=False)
    assert result.config.start == zoo.networks("photo")[0] and result.codec.model.cfg.prior == "factorized"
    state, photo = result.codec.model.state_dict(), zoo.load_model(result.config.start).model.state_dict()
    for key in ("analysis.linear.weight", "synthesis.linear.weight", "latents.gains.log_gain"):
        assert torch.equal(state[key], photo[key])
    blob = result.codec.encode(images, quality=1)
    assert len(blob) / len(images) < 60
    shipped = latentzip.load_model(zoo.networks("photo")[0])
    assert metrics.mean_psnr(images, result.codec.decode(blob)) > metrics.mean_psnr(
        images, shipped.decode(shipped.encode(images, quality=1))) - 1.0


def test_a_density_started_on_latents_fits_spikes_and_tails():
    """`FactorizedLatents.start_on` picks each channel's logistic by what the sample
    costs: an always-zero channel costs almost nothing, and a heavy-tailed one is coded
    within 10% of its empirical entropy."""
    rng = np.random.default_rng(0)
    y = torch.zeros(4096, 2, 1, 1, dtype=torch.float32)
    y[:, 1, 0, 0] = torch.from_numpy(rng.laplace(0, 6.0, 4096).astype(np.float32))
    codec = latents.FactorizedLatents(2, qualities=1)
    codec.start_on(y)
    with torch.no_grad():
        _, bits = codec(y, 0, "rounded")
    _, counts = np.unique(np.round(y[:, 1].numpy()), return_counts=True)
    entropy = -(counts / counts.sum() * np.log2(counts / counts.sum())).sum() * len(y)
    zero_bits = -torch.log2(codec.density(0).likelihood(torch.zeros(1, 2, 1, 1)))[0, 0].item()
    assert zero_bits < 0.01
    assert float(bits.sum()) < 1.1 * entropy + 0.01 * len(y)


def test_a_collection_mostly_transparent_starts_from_the_photo_model_too():
    from latentzip.image import zoo

    images = [np.dstack([im, np.where(im[..., :1] > 128, 255, 0).astype(np.uint8)]) for im in _photos(3, 64)]
    assert choose(TrainConfig(), images).start == zoo.networks("photo")[0]


def test_the_training_distortion_counts_colour_as_it_shows_and_not_alpha():
    """Alpha is coded exactly by the alpha coder, so the network's alpha errors cost
    nothing; colour errors count as much as the true alpha shows them."""
    from latentzip.image.objective import distortion

    x = torch.rand(2, 4, 8, 8)
    x[:, 3, :4] = 0.0  # the top half transparent
    off_alpha = x.clone()
    off_alpha[:, 3] = 1.0 - off_alpha[:, 3]
    assert torch.equal(distortion(off_alpha, x, alpha=True), torch.zeros(2))
    hidden, shown = x.clone(), x.clone()
    hidden[:, :3, :4] += 0.5
    shown[:, :3, 4:] += 0.5
    assert torch.equal(distortion(hidden, x, alpha=True), torch.zeros(2))
    expected = ((0.5 * x[:, 3:, 4:]) ** 2).sum((1, 2, 3)) * 3 / (4 * 64)
    assert torch.allclose(distortion(shown, x, alpha=True), expected)


def test_a_start_of_another_network_is_refused_clearly(tmp_path):
    from latentzip.image import zoo

    with pytest.raises(LatentzipError, match="cannot start from photo"):
        train(_photos(3, 64), TrainConfig(hidden=(32,), start=zoo.networks("photo")[0], epochs=1), progress=False)
    with pytest.raises(ModelError, match="no model named"):
        choose(TrainConfig(start=str(tmp_path / "missing.model")), _photos(3, 64))
    with pytest.raises(LatentzipError, match="only a conv model"):
        choose(TrainConfig(arch="deep", start=zoo.networks("photo")[0]), _photos(3, 16))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture])
@given(blob=st.data())
def test_crafted_files_for_a_hyperprior_model_raise_only_our_errors(hyper_codec, blob):
    """Files with valid checksums and random catalogs and payloads, for a model with a
    quality ladder and the hyperprior: the chunked decoder raises nothing foreign."""
    crafted = blob.draw(ltz_files(hyper_codec.fingerprint, (16, 16, 3)))
    try:
        hyper_codec.decode_named(crafted)
    except LatentzipError:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=3))
def test_damaged_payloads_of_an_alpha_model_raise_only_our_errors(alpha_codec, digits, flips):
    """A real file with bytes of its payload changed and its checksum repaired."""
    from latentzip import container

    images = _colour(digits, 4, seed=14)
    rgba = np.concatenate([images, np.full(images.shape[:3] + (1,), 200, np.uint8)], axis=-1)
    header, payload = container.unpack(alpha_codec.encode(rgba), container.Kind.IMAGES)
    damaged = bytearray(payload)
    for flip in flips:
        damaged[flip % len(damaged)] ^= 1 + flip % 255
    try:
        alpha_codec.decode(container.pack(container.Kind.IMAGES, header, bytes(damaged)))
    except LatentzipError:
        pass


def test_cli_trains_on_rgba_images_of_several_sizes_and_keeps_alpha(tmp_path, digits):
    """A user's folder of icons with transparency, of mixed sizes: train without flags
    (but a short budget), encode at a preset, decode, and get the alpha back exactly."""
    from PIL import Image

    from .conftest import run_cli

    icons = tmp_path / "icons"
    icons.mkdir()
    images = _colour(digits, 40, seed=15)
    for i, im in enumerate(images):
        alpha = np.where(im.max(axis=-1) > 50, 255, 0).astype(np.uint8)
        rgba = np.dstack([im, alpha])
        if i % 3 == 0:
            rgba = np.pad(rgba, ((0, 5), (0, 2), (0, 0)), mode="edge")
        Image.fromarray(rgba).save(icons / f"icon{i:02d}.png")
    model = tmp_path / "icons.model"
    trained = run_cli("train", "--data", str(icons), "--epochs", "1", "--qualities", "2", "-o", str(model))
    assert trained.returncode == 0, trained.stderr.decode()
    said = trained.stderr.decode()
    assert "training conv" in said and "hyperprior with context" in said and f"{model}:q2" in said
    out = tmp_path / "icons.ltz"
    encoded = run_cli("encode", "-m", f"{model}:q1", str(icons), "-o", str(out))
    assert encoded.returncode == 0, encoded.stderr.decode()
    decoded = run_cli("decode", str(out), "-m", str(model), "-o", str(tmp_path / "back"))
    assert decoded.returncode == 0, decoded.stderr.decode()
    for path in sorted(icons.iterdir()):
        original = np.asarray(Image.open(path))
        back = np.asarray(Image.open(tmp_path / "back" / path.name))
        assert back.shape == original.shape and np.array_equal(back[..., 3], original[..., 3])


def test_hostile_presets_and_default_quality_are_refused_by_name(hyper_codec, tmp_path):
    import json

    from safetensors.torch import save

    from latentzip.image.codec import ImageCodec
    from latentzip.image.zoo import load_model

    stored = hyper_codec.file
    for meta, problem in (({"default_quality": "9"}, "damaged"), ({"presets": {"q1": {"quality": "x"}}}, "damaged"),
                          ({"presets": ["q1"]}, "no preset")):
        path = tmp_path / "odd.model"
        path.write_bytes(save(stored.tensors, metadata={
            "format": "latentzip-image-model", "version": "3", "net": json.dumps(stored.net), "meta": json.dumps(meta)}))
        with pytest.raises(ModelError, match=problem):
            load_model(f"{path}:q1")
    with pytest.raises(ModelError, match="damaged"):
        ImageCodec.from_bytes(save(stored.tensors, metadata={
            "format": "latentzip-image-model", "version": "3", "net": json.dumps(stored.net),
            "meta": json.dumps({"default_quality": 0})}))


@pytest.mark.parametrize("latent", [1, 3, 64])
def test_a_hyperprior_never_has_more_slices_than_latents(latent):
    net = TrainConfig(arch="conv", prior="hyperprior", latent=latent, hidden=(8,)).net(3, 32, 32)
    assert net.slices == min(4, latent)


@pytest.mark.parametrize(("counts", "channels"), [({1}, 1), ({1, 3}, 3), ({2, 3}, 4), ({1, 2}, 2), ({3, 4}, 4)])
def test_a_model_gets_the_channels_that_cover_every_image(counts, channels):
    from latentzip.image.codec import covering_channels

    assert covering_channels(counts) == channels


def test_grey_with_alpha_and_opaque_colour_train_one_rgba_model(digits):
    """Neither kind has all four channels, but a model for both needs them."""
    colour = _colour(digits, 12, seed=21)
    grey = [np.dstack([im[..., :1], np.where(im[..., :1] > 60, 255, 0).astype(np.uint8)]) for im in colour[:6]]
    images = [*grey, *colour[6:]]
    codec = train(images, TrainConfig(arch="conv", hidden=(8,), qualities=1, epochs=1, seed=2), progress=False).codec
    assert codec.cfg.channels == 4
    decoded = codec.decode(codec.encode(images))
    assert [d.shape for d in decoded] == [im.shape for im in images]
    assert all(np.array_equal(d[..., 1], im[..., 1]) for d, im in zip(decoded[:6], grey))  # alpha is exact


def _large(digits, height: int, width: int, channels: int = 3, seed: int = 5) -> np.ndarray:
    """A colour image larger than the tile side used below: digits enlarged, tinted and noisy."""
    rng = np.random.default_rng(seed)
    rows, cols = -(-height // 32), -(-width // 32)
    cells = digits.images[: rows * cols, :, :, 0].reshape(rows, cols, 8, 8).transpose(0, 2, 1, 3).reshape(rows * 8, cols * 8)
    grey = np.kron(cells, np.ones((4, 4)))[:height, :width, None]
    image = grey * rng.uniform(0.3, 1.0, size=(1, 1, channels)) + rng.normal(0, 4, size=(height, width, channels))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def plain_codec(digits):
    """The hyperprior without means or context, as models before them."""
    cfg = TrainConfig(arch="conv", levels=2, latent=24, hidden=(16,), qualities=3, epochs=2, seed=3, context=False)
    return train(_colour(digits, 300), cfg, progress=False).codec


@pytest.mark.parametrize("context", [False, True])
def test_tiles_decode_to_the_pixels_of_one_piece(hyper_codec, plain_codec, context, digits, monkeypatch):
    """Tiles are coded with the margin their edge blocks see, so a tiled image decodes to
    exactly what coding it in one piece gives: no seams, by construction. With means,
    each tile's come from its own side latents and neighbours, so its latents are
    rounded about other points: the pixels differ a little, the quality does not. (At
    effort 0: fitting latents works on each tile's own pixels.) The decoder
    synthesises in pieces of its own choosing: smaller ones, across the tiles, give the
    same pixels."""
    from latentzip.image import codec as image_codec, tiling

    hyper_codec = (hyper_codec if context else plain_codec).at_effort(0)
    assert isinstance(hyper_codec.model.latents, latents.ContextLatents) == context
    image = _large(digits, 300, 600)
    whole = hyper_codec.encode([image], quality=2)
    assert _catalog(whole)[0].tile is None
    monkeypatch.setattr(tiling, "SIDE", 256)
    tiled = hyper_codec.encode([image, image[:40, :50]], quality=2)
    assert _catalog(tiled)[0].tile == 256
    out = hyper_codec.decode(tiled)
    if context:
        assert abs(metrics.psnr(image, out[0]) - metrics.psnr(image, hyper_codec.decode(whole)[0])) < 0.2
    else:
        assert np.array_equal(out[0], hyper_codec.decode(whole)[0])
    assert out[1].shape == (40, 50, 3)
    monkeypatch.setattr(image_codec, "SYNTHESIS_SIDE", 72)  # pieces that cut across the tiles
    assert all(np.array_equal(a, b) for a, b in zip(hyper_codec.decode(tiled), out))
    fitted = hyper_codec.at_effort(2).encode([image], quality=2)  # each tile fitted to its own pixels
    assert _catalog(fitted)[0].tile == 256
    assert metrics.psnr(image, hyper_codec.decode(fitted)[0]) > metrics.psnr(image, out[0]) - 1.0
    assert np.array_equal(hyper_codec.reconstruct([image], quality=2)[0], out[0])
    assert np.array_equal(hyper_codec.latents([image], quality=2)[0].shape, (24, 75, 150))
    bits = hyper_codec.code_bits([image, image[:40, :50]], quality=2)
    assert abs(bits.sum() - 8 * len(tiled)) < 8 * 64  # the header and the coder's flush, at most
    bounded = hyper_codec.decode(hyper_codec.encode([image], quality=1, max_error=2))[0]
    assert np.abs(bounded.astype(int) - image).max() <= 2


def test_a_tiled_grid_widens_where_its_values_outgrow_it(hyper_codec, digits, monkeypatch):
    """A tiled image's synthesis input is held as int32 to halve its memory; values
    beyond its range (a hostile file, an extreme quality) widen the grid, never wrap."""
    from latentzip.image import codec, tiling

    monkeypatch.setattr(tiling, "SIDE", 256)
    hyper_codec = hyper_codec.at_effort(0)
    blob = hyper_codec.encode([_large(digits, 300, 600)], quality=2)
    expected = hyper_codec.decode(blob)[0]
    monkeypatch.setattr(codec, "GRID_DTYPE", np.int8)
    assert np.array_equal(hyper_codec.decode(blob)[0], expected)
    assert hyper_codec.encode([_large(digits, 300, 600)], quality=2) == blob


def test_progress_counts_every_pixel_of_each_stage_tile_by_tile(hyper_codec, digits, monkeypatch, model_only):
    """Encoding counts the latents, and the synthesis too where it decodes (a max error);
    decoding the synthesis: each tile (each piece it is synthesised in, here a tile's
    size), then each chunk of small images, as it is done. (With a max error an encode
    also prices coding the images directly: see test_direct.py.)"""
    from latentzip.image import codec, tiling

    monkeypatch.setattr(tiling, "SIDE", 256)
    monkeypatch.setattr(codec, "SYNTHESIS_SIDE", 256)
    hyper_codec = hyper_codec.at_effort(0)
    images = [_large(digits, 300, 600), _colour(digits, 2)[0], _colour(digits, 2)[1]]
    pixels = sum(im.shape[0] * im.shape[1] for im in images)
    steps = len(tiling.tiles(300, 600, 256, hyper_codec.cfg.stride)) + 1
    for max_error, stages in ((None, 1), (4, 4)):  # with a max error the model's code is priced first
        told: dict[str, list[tuple[int, int]]] = {"encode": [], "decode": []}
        blob = hyper_codec.encode(images, max_error=max_error, progress=lambda *a: told["encode"].append(a))
        hyper_codec.decode(blob, progress=lambda *a: told["decode"].append(a))
        for verb, count in (("encode", stages), ("decode", 1)):
            done = [pixels for pixels, _ in told[verb]]
            assert sum(done) == count * pixels and len(done) == count * steps
            assert {total for _, total in told[verb]} == {count * pixels}


def test_tiles_hand_their_freed_heap_back_on_glibc():
    """Between tiles the codec returns freed heap pages (heap.py): without it a 24 MP
    encode with alpha grew by 0.7 GB of holes that glibc kept."""
    import platform

    from latentzip import heap

    if platform.libc_ver()[0] == "glibc":
        assert heap._trim() is not None
    heap.release()


def same_but_fingerprint(a: bytes, b: bytes) -> bool:
    """Whether two image files are the same but for the model fingerprint in the header."""
    from latentzip import container

    (head_a, body_a), (head_b, body_b) = (container.unpack(blob, container.Kind.IMAGES) for blob in (a, b))
    return head_a[8:] == head_b[8:] and body_a == body_b


def _catalog(blob: bytes):
    """(catalog, rebuild) of an image file: rebuild(catalog) is the file with it instead."""
    from latentzip import container
    from latentzip.image import catalog

    header, payload = container.unpack(blob, container.Kind.IMAGES)
    return (catalog.unpack(header[8:], len(blob)),
            lambda cat: container.pack(container.Kind.IMAGES, header[:8] + catalog.pack(cat), payload))


@pytest.mark.parametrize("side", [16, 255, 257, 4096, 1 << 20])
def test_a_forged_tile_side_is_refused(hyper_codec, digits, side):
    cat, rebuild = _catalog(hyper_codec.encode(_colour(digits, 2)))
    cat.tile = side
    with pytest.raises(FormatError, match="tile side"):
        hyper_codec.decode(rebuild(cat))


def test_alpha_survives_tiling(alpha_codec, digits, monkeypatch):
    from latentzip.image import tiling

    monkeypatch.setattr(tiling, "SIDE", 256)
    colour = _large(digits, 270, 520)
    rgba = np.concatenate([colour, np.where(colour[..., :1] > 80, 255, 0).astype(np.uint8)], axis=-1)
    out = alpha_codec.decode(alpha_codec.encode([rgba]))[0]
    assert np.array_equal(out[..., 3], rgba[..., 3])


def test_a_given_alpha_bound_is_coded_without_decoding_the_colour(hyper_codec, digits, monkeypatch):
    """With the bound given and no network alpha, nothing after the latents reads the
    decoded colour, so the encoder skips the synthesis, and writes the same file."""
    from latentzip.image import codec

    colour = _colour(digits, 3)
    rgba = [np.concatenate([im, np.where(im[..., :1] > 80, 255, 40).astype(np.uint8)], axis=-1) for im in colour]
    files = [hyper_codec.encode([*rgba, colour[0]], alpha_error=2)]
    planes = codec.ImageCodec._planes

    def judged(self, *args):  # a chooser's lmbda: the encoder decodes, the bound given still holds
        found = planes(self, *args)
        found.lmbda = 1.0
        return found

    monkeypatch.setattr(codec.ImageCodec, "_planes", judged)
    files.append(hyper_codec.encode([*rgba, colour[0]], alpha_error=2))
    monkeypatch.undo()
    monkeypatch.setattr(codec.ImageCodec, "_base", None)  # any synthesis now fails
    files.append(hyper_codec.encode([*rgba, colour[0]], alpha_error=2))
    monkeypatch.undo()
    assert files[0] == files[1] == files[2]
    out = hyper_codec.decode(files[0])
    assert all(np.abs(o[..., 3].astype(int) - im[..., 3]).max() <= 2 for o, im in zip(out, rgba))
    assert out[-1].shape == colour[0].shape


def test_tile_spans_start_on_blocks_and_cover_the_image():
    from latentzip.image import tiling

    for size in (1, 255, 256, 257, 1000, 4000, 6001):
        spans = tiling.spans(size, 1024, 16)
        assert spans[0].start == 0 and spans[-1].stop == size
        assert all(a.stop == b.start and b.start % 16 == 0 for a, b in zip(spans, spans[1:]))
        assert all(0 < s.stop - s.start <= 1024 for s in spans)
    tiles = tiling.tiles(3000, 1500, 1024, 16)
    assert len(tiles) == 6 and (tiles[1].rows, tiles[1].cols) == (slice(0, 992), slice(752, 1500))


def test_refinement_tables_hold_signed_residuals(hyper_codec, alpha_codec, digits):
    """Residuals are fitted as signed numbers: a negative one once wrapped to 256 - |r|,
    which left a single image (no file statistics to learn from yet) coded at about
    9 bits a value, more than its raw pixels. Alpha needs no tables (alpha.py)."""
    for tables in (hyper_codec.refinement, alpha_codec.refinement):
        counts = tables.histogram.sum(0)  # residuals -255 .. 255
        assert counts[:255].sum() > 0.1 * counts.sum() and counts[255 + 128 :].sum() < 0.01 * counts.sum()
    assert alpha_codec.alpha_refinement is None
    image = _colour(digits, 1, seed=9)
    lossless = hyper_codec.encode(image, max_error=0)
    assert np.array_equal(hyper_codec.decode(lossless)[0], image[0])
    assert 8 * (len(lossless) - len(hyper_codec.encode(image))) < 6 * image.size


@pytest.mark.parametrize("live", [0, 3])
def test_synthesis_skipping_zero_channels_gives_the_same_pixels(hyper_codec, live):
    """Exact synthesis leaves out the latent channels that are zero everywhere, all of
    them included (a flat image at a low quality): the integers are those of the full product."""
    synthesis = hyper_codec._fixed
    latents = torch.zeros((2, 24, 3, 5), dtype=torch.int64)
    latents[:, :live] = torch.randint(-3 << 12, 3 << 12, (2, live, 3, 5))
    full = synthesis.linear(latents) + synthesis.net(latents)
    shuffled = torch.nn.functional.pixel_shuffle(full, synthesis.stride)
    expected = fixed.to_pixels(shuffled + (1 << (fixed.ACT_BITS - 1))).numpy()
    assert np.array_equal(synthesis(latents, 0), expected)


def test_a_step_whose_gradient_overflows_leaves_the_weights_alone(digits, monkeypatch):
    """Every third step's loss made NaN: those steps are skipped, the model stays finite."""
    from latentzip.image import train as training

    real, calls = training._losses, []

    def sometimes_nan(*args, **kwargs):
        loss, bpp, psnr = real(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan") if len(calls) % 3 == 0 else loss), bpp, psnr

    monkeypatch.setattr(training, "_losses", sometimes_nan)
    cfg = TrainConfig(arch="conv", levels=2, latent=16, hidden=(8,), qualities=2, epochs=1, seed=4)
    codec = train(_colour(digits, 60), cfg, progress=False).codec
    assert len(calls) >= 3
    assert all(torch.isfinite(v).all() for v in codec.model.state_dict().values() if v.is_floating_point())


@pytest.mark.parametrize("lmbda", ["high", float("nan"), -1.0, None])
def test_a_model_that_does_not_record_a_usable_lmbda_codes_the_same_at_every_effort(hyper_codec, digits, lmbda):
    """Fitting needs the lmbda a model was trained with; a file without a usable one (a
    stranger's, or damaged) is coded with the analysis's latents, never with a guess."""
    images = _colour(digits, 6, seed=21)
    view = copy.copy(hyper_codec)
    view.meta = {**hyper_codec.meta, "train": {**hyper_codec.meta["train"], "lmbda": lmbda}}
    assert view._lmbda(1) is None and hyper_codec._lmbda(1) is not None
    assert view.encode(images, effort=2) == view.encode(images, effort=0) == hyper_codec.encode(images, effort=0)
