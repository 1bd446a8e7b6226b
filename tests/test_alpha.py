"""The alpha coder: exact within its bound, adaptive, and safe on damaged streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentzip.errors import FormatError
from latentzip.image import transparent
from latentzip.image.alpha import BOUNDS, AlphaCoder, levels, rounded
from latentzip.image.codec import ImageCodec

DATA = Path(__file__).parent / "data"


def _planes(digits, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Alpha planes shaped like cut-outs (real digit strokes: opaque inside, transparent
    outside, a soft rim), and network-like guesses of them (blurred, off by a little)."""
    rng = np.random.default_rng(seed)
    strokes = digits.images[:count, :, :, 0].astype(np.int64)
    planes = np.kron(strokes, np.ones((3, 3), np.int64))  # 24 x 24, so rims repeat
    planes = np.clip((planes - 40) * 2, 0, 255).astype(np.uint8)
    guides = np.clip(planes.astype(np.int64) + rng.integers(-20, 21, planes.shape), 0, 255).astype(np.uint8)
    return planes, guides


@pytest.mark.parametrize("bound", [0, 1, 7, 127])
def test_round_trip_keeps_every_value_within_the_bound(digits, bound):
    planes, guides = _planes(digits, 40)
    coder = AlphaCoder()
    bits = coder.encode(planes[:25], guides[:25], bound)
    bits = np.concatenate([bits, coder.encode(planes[25:], guides[25:], bound)])
    stream = coder.finish()
    reader = AlphaCoder(stream)
    decoded = np.concatenate([reader.decode(guides[:25], bound), reader.decode(guides[25:], bound)])  # two chunks
    assert np.array_equal(decoded, rounded(planes, bound))
    assert np.abs(decoded.astype(int) - planes).max() <= bound
    assert (decoded[planes == 0] == 0).all() and (decoded[planes == 255] == 255).all()
    assert abs(len(stream) - bits.sum() / 8) < 8  # the ideal cost is what the stream takes
    assert np.allclose(AlphaCoder().costs(planes, guides, bound), bits)  # pricing learns as coding does


def test_planes_of_different_bounds_decode_each_within_its_own(digits):
    """A file whose images take different bounds names them in the stream, chunk by
    chunk, and each plane comes back rounded to its own."""
    planes, guides = _planes(digits, 30)
    bounds = np.array(BOUNDS)[np.arange(30) % len(BOUNDS)]
    coder = AlphaCoder(per_image=True)
    bits = np.concatenate([coder.encode_bounds(bounds[:12]) + coder.encode(planes[:12], guides[:12], bounds[:12]),
                           coder.encode_bounds(bounds[12:]) + coder.encode(planes[12:], guides[12:], bounds[12:])])
    stream = coder.finish()
    reader = AlphaCoder(stream, per_image=True)
    decoded = []
    for part in (slice(0, 12), slice(12, 30)):
        found = reader.decode_bounds(len(bounds[part]))
        assert np.array_equal(found, bounds[part])
        decoded.append(reader.decode(guides[part], found))
    for plane, out, bound in zip(planes, np.concatenate(decoded), bounds):
        assert np.array_equal(out, rounded(plane, bound))
    assert abs(len(stream) - bits.sum() / 8) < 8
    pricing = AlphaCoder(per_image=True)
    priced = pricing.encode_bounds(bounds, write=False) + pricing.costs(planes, guides, bounds)
    assert np.isclose(priced.sum(), bits.sum(), rtol=0.01)


def test_levels_keep_transparent_and_opaque_exact():
    assert levels(0).tolist() == list(range(256))
    assert levels(2).tolist()[:3] == [0, 5, 10] and levels(2)[-1] == 255
    assert levels(127).tolist() == [0, 255]


def test_the_coder_learns_within_a_file(digits):
    """A plane seen before in the file costs a fraction of its first time: the contexts
    adapt as they code."""
    planes, guides = _planes(digits, 12)
    coder = AlphaCoder()
    first = coder.costs(planes, guides, 0).sum()
    again = coder.costs(planes, guides, 0).sum()
    assert again < 0.5 * first


def test_a_large_noisy_plane_grows_the_stream(digits):
    """Noise is the worst case: the stream outgrows its first buffer many times."""
    rng = np.random.default_rng(3)
    plane = rng.integers(0, 256, (1, 300, 257)).astype(np.uint8)
    coder = AlphaCoder()
    coder.encode(plane, plane, 0)
    stream = coder.finish()
    assert len(stream) > 300 * 257 // 2
    assert np.array_equal(AlphaCoder(stream).decode(plane, 0), plane)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([0, 3, None]))
def test_a_damaged_stream_decodes_to_levels_or_is_refused(data, bound):
    """None: a stream of per-image bounds, which must name bounds of BOUNDS."""
    guides = np.full((2, 16, 16), 128, np.uint8)
    try:
        reader = AlphaCoder(data, per_image=bound is None)
        bounds = reader.decode_bounds(2) if bound is None else np.array([bound, bound])
        decoded = reader.decode(guides, bounds)
    except FormatError:
        return
    assert all(np.isin(plane, levels(b)).all() for plane, b in zip(decoded, bounds))


def test_files_from_before_the_alpha_coder_still_decode():
    """Alpha was a refinement layer in the range-coded stream before the alpha coder:
    such a file (with its model, which holds the alpha tables) decodes as it did."""
    codec = ImageCodec.load(DATA / "alpha-layer.model")
    decoded = np.stack(codec.decode((DATA / "alpha-layer.ltz").read_bytes()))
    assert np.array_equal(decoded, np.load(DATA / "alpha-layer-decoded.npy"))
    assert codec.alpha_refinement is not None


def test_colour_under_transparent_pixels_is_filled_from_the_visible_edge():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (32, 40, 4)).astype(np.uint8)  # noise under the hidden part
    image[..., 3] = 0
    image[8:20, 10:30, 3] = 255
    image[8:20, 10:30, :3] = (200, 40, 90)
    filled = transparent.fill(image)
    shown = image[..., 3] > 0
    assert np.array_equal(filled[shown], image[shown]) and np.array_equal(filled[..., 3], image[..., 3])
    assert np.abs(filled[~shown][:, :3].astype(int) - (200, 40, 90)).max() <= 1  # the edge continued outwards
    faint = np.dstack([image[..., :3], np.full((32, 40), 9, np.uint8)])  # nothing fully transparent
    opaque = np.ascontiguousarray(image[..., :3])
    assert transparent.fill(faint) is faint and transparent.fill(opaque) is opaque
    assert not transparent.fill(np.zeros((4, 4, 2), np.uint8)).any()  # nothing shows: all zero


def test_a_model_without_alpha_codes_images_with_alpha_beside_its_network(photos):
    """The photo presets (RGB) take cut-outs: the network codes colour, the alpha coder
    alpha, within its bound. Only chunks of images with alpha carry alpha, so a file
    may mix RGB, RGBA and grey + alpha, and each decodes with its own channels."""
    from latentzip import metrics
    from latentzip.image import zoo

    codec = zoo.load("photo:q4")
    yy, xx = np.mgrid[:48, :48]
    disc = np.clip((20.5 - np.hypot(yy - 23.5, xx - 23.5)) * 128, 0, 255).astype(np.uint8)  # a soft rim
    rgba = np.concatenate([photos[:2], np.broadcast_to(disc[..., None], (2, 48, 48, 1))], axis=-1)
    grey_alpha = np.stack([photos[2, ..., 0], disc], axis=-1)
    batch = [photos[3], *rgba, grey_alpha]
    # effort 0: the latent fit weighs the whole image's error, the colour filled in under
    # transparent pixels included, so it trades what shows for bits differently in a
    # cut-out than in the opaque image; the analysis's latents compare on what shows alone
    decoded = codec.decode(codec.encode(batch, alpha_error=0, effort=0))
    assert [im.shape for im in decoded] == [(48, 48, 3), (48, 48, 4), (48, 48, 4), (48, 48, 2)]
    assert all(np.array_equal(im[..., -1], disc) for im in decoded[1:])
    visible = disc > 0
    plain = codec.decode(codec.encode(list(photos[:2]), effort=0))
    for i in range(2):  # the colour that shows is coded about as well as without alpha
        with_alpha = metrics.psnr(rgba[i][visible][:, :3], decoded[1 + i][visible][:, :3])
        assert with_alpha > metrics.psnr(photos[i][visible], plain[i][visible]) - 1.0
    loose = codec.decode(codec.encode(batch, alpha_error=8))
    assert all(np.abs(im[..., -1].astype(int) - disc).max() <= 8 for im in loose[1:])
    assert codec.decode(codec.encode([photos[3]]))[0].shape == (48, 48, 3)  # no alpha: no alpha stream


def test_eval_counts_the_largest_error_of_what_shows(photos):
    """Under alpha 0 the codec codes the visible edge's colour, not the file's, so the
    largest error over every colour value was 200-odd levels for any cut-out, even
    with --max-error 2: `eval` now counts colour where it shows, and alpha."""
    from latentzip import metrics
    from latentzip.image import zoo
    from latentzip.image.evaluate import evaluate

    a = np.zeros((4, 4, 4), np.uint8)
    b = a.copy()
    b[0, 0, :3] = 250  # under alpha 0: shows nowhere
    assert metrics.max_abs_error(a, b) == 0
    a[..., 3] = 255
    b[..., 3] = 253
    assert metrics.max_abs_error(a, b) == 250  # now it shows
    cut = np.concatenate([photos[:3], np.zeros((3, 48, 48, 1), np.uint8)], axis=-1)
    cut[:, 8:40, 8:40, 3] = 255
    result = evaluate(zoo.load("photo:q4"), cut, singles=1, max_error=2)
    assert result.max_abs_error <= 2
