"""The shipped models: quality presets over a few trained networks."""

from __future__ import annotations

import numpy as np
import pytest

import latentzip
from latentzip import data, metrics
from latentzip.image import zoo

from .conftest import run_cli, write_images


def _images(count: int) -> np.ndarray:
    """28x28 grey images with smooth shapes and noise (real pixels, any content)."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[:28, :28]
    out = []
    for _ in range(count):
        cy, cx, r = rng.uniform(8, 20), rng.uniform(8, 20), rng.uniform(4, 9)
        blob = 220 * (((y - cy) ** 2 + (x - cx) ** 2) < r * r)
        out.append(np.clip(blob + rng.normal(0, 12, (28, 28)), 0, 255).astype(np.uint8))
    return np.stack(out)


@pytest.fixture(scope="module")
def ladder() -> list[str]:
    names = [n for n in zoo.names() if n.startswith("mnist:")]
    if len(names) < 4:
        pytest.skip("no shipped MNIST presets in this checkout")
    return names


def test_every_preset_names_its_network_and_bound(ladder):
    for name in zoo.names():
        chosen = zoo.preset(name)
        assert chosen.path.is_file() and chosen.description and len(chosen.fingerprint) == 16
    assert zoo.networks("mnist") == [n for n in ladder if zoo.preset(n).max_error is None]
    assert {zoo.preset(n).path for n in zoo.networks("mnist")} == {zoo.preset(n).path for n in ladder}
    bounds = [zoo.preset(n).max_error for n in ladder]
    plain = [b for b in bounds if b is None]
    refined = [b for b in bounds if b is not None]
    assert bounds[: len(plain)] == plain and refined == sorted(refined, reverse=True)  # quality rises with q


def test_a_preset_codes_within_its_bound_and_any_call_can_override_it(ladder, model_only):
    name = next(n for n in ladder if zoo.preset(n).max_error)
    bound = zoo.preset(name).max_error
    codec = latentzip.load_model(name)
    images = _images(20)
    decoded = np.stack(codec.decode(codec.encode(images)))
    error = np.abs(decoded.astype(int) - images.astype(int)).max()
    assert 0 < error <= bound
    assert np.array_equal(decoded, np.stack(codec.reconstruct(images)))
    assert np.array_equal(np.stack(codec.decode(codec.encode(images, max_error=0))), images)


def test_presets_of_one_network_read_each_others_files(ladder):
    by_network: dict[str, list[str]] = {}
    for name in ladder:
        by_network.setdefault(zoo.preset(name).fingerprint, []).append(name)
    names = max(by_network.values(), key=len)
    assert len(names) > 1
    first, last = (latentzip.load_model(n) for n in (names[0], names[-1]))
    images = _images(5)
    assert np.array_equal(np.stack(first.decode(last.encode(images))), np.stack(last.decode(last.encode(images))))
    assert zoo.find(first.fingerprint) == names[0] and zoo.preset(names[0]).max_error is None


def test_cli_encodes_at_the_preset_bound_and_decodes_without_naming_a_model(ladder, tmp_path):
    name = min((n for n in ladder if zoo.preset(n).max_error is not None), key=lambda n: zoo.preset(n).max_error)
    bound = zoo.preset(name).max_error
    images = _images(4)
    write_images(tmp_path / "in", images, 4)
    assert run_cli("encode", "-m", name, str(tmp_path / "in"), "-o", str(tmp_path / "x.ltz")).returncode == 0
    proc = run_cli("decode", str(tmp_path / "x.ltz"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr.decode()
    back = np.stack([image for _, image in data.read_images([tmp_path / "out"])])
    assert np.abs(back.reshape(images.shape).astype(int) - images.astype(int)).max() <= bound


def test_applications_use_the_network_alone(ladder):
    from latentzip.apps import AnomalyDetector, denoise

    name = next(n for n in ladder if zoo.preset(n).max_error)
    preset = latentzip.load_model(name)
    plain = preset.bounded(None)
    assert preset.max_error == zoo.preset(name).max_error and plain.max_error is None  # a view, not a change
    assert plain.fingerprint == preset.fingerprint
    images = _images(6)
    cleaned = np.stack(denoise(preset, images))
    assert np.array_equal(cleaned, np.stack(plain.reconstruct(images)))
    assert not np.array_equal(cleaned, np.stack(preset.reconstruct(images)))
    assert AnomalyDetector(preset).codec.max_error is None


def test_photo_presets_climb_in_rate_and_quality_and_take_grey_photographs(tmp_path):
    names = [n for n in zoo.names() if n.startswith("photo:")]
    if len(names) < 6:
        pytest.skip("no shipped photo presets in this checkout")
    from skimage import data as skdata

    photo = skdata.chelsea()[:160, :224]  # held out of the presets' training
    points = []
    for name in (names[0], names[len(names) // 2], names[-1]):
        codec = latentzip.load_model(name)
        blob = codec.encode([photo])
        points.append((len(blob), metrics.psnr(photo, codec.decode(blob)[0])))
    assert [p[0] for p in points] == sorted(p[0] for p in points)
    assert [p[1] for p in points] == sorted(p[1] for p in points)
    assert len({zoo.preset(n).fingerprint for n in names}) == 1 and all(zoo.preset(n).max_error is None for n in names)
    grey = photo.mean(-1).astype(np.uint8)
    write_images(tmp_path / "in", grey[None], 1)
    assert run_cli("encode", "-m", names[2], str(tmp_path / "in"), "-o", str(tmp_path / "g.ltz")).returncode == 0
    proc = run_cli("decode", str(tmp_path / "g.ltz"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr.decode()
    back = data.read_images([tmp_path / "out"])[0][1]
    assert back.shape == (160, 224, 1) and metrics.psnr(grey, back[..., 0]) > 25


def test_fitting_latents_lowers_each_photographs_own_cost(monkeypatch):
    """A higher effort fits each image's latents to it: the real file's cost, bits per
    pixel + lmbda * 255^2 * MSE at the preset's own lmbda, falls, and the same decoder
    reads it. Fitting a large image in bands (here forced small) lowers it too, if less
    (each band's edge rows are fitted without the rows beyond). At photo:q7, and at
    photo:q2, where the fit finds nothing better than the analysis's latents unless it
    holds their side latents (objective.fit_latents)."""
    names = [n for n in zoo.names() if n.startswith("photo:")]
    if len(names) < 6:
        pytest.skip("no shipped photo presets in this checkout")
    from skimage import data as skdata

    from latentzip.errors import LatentzipError
    from latentzip.image import codec as image_codec

    photo = skdata.chelsea()[:160, :224]
    codec, low = latentzip.load_model(names[6]), latentzip.load_model(names[1])

    def cost(preset: image_codec.ImageCodec, blob: bytes) -> float:
        return 8 * len(blob) / (160 * 224) + preset._lmbda(preset.quality) * metrics.mse(photo, preset.decode(blob)[0])

    plain = cost(codec, codec.encode([photo], effort=0))
    assert cost(codec, codec.encode([photo])) < 0.99 * plain  # the default effort fits
    assert cost(low, low.encode([photo])) < 0.995 * cost(low, low.encode([photo], effort=0))
    monkeypatch.setattr(image_codec, "FIT_PIXELS", 64 * 64)  # three bands of four latent rows
    # bands this thin leave much of the gain at their edges (0.4-0.7% here, 1.4% unbanded)
    assert cost(codec, codec.at_effort(2).encode([photo])) < 0.998 * plain
    with pytest.raises(LatentzipError, match="effort is 0 to 2"):
        codec.encode([photo], effort=3)
