"""The alpha bounds an encoder chooses: loose where alpha is most of the bytes and its
error little of what shows, exact where the colour is, image by image."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .conftest import in_process
from latentzip import metrics
from latentzip.image import alphabound, tiling, zoo
from latentzip.image.alpha import rounded
from latentzip.image.alphabound import BOUNDS, Planes, shown_errors
from latentzip.image.catalog import PER_IMAGE
from latentzip.image.codec import file_catalog


def _feathered(photos: np.ndarray) -> np.ndarray:
    """The photographs as cut-outs with a wide soft edge (a feathered selection), so the
    alpha stream is a large share of a low-quality file."""
    yy, xx = np.mgrid[:48, :48]
    edge = np.clip((21 - np.hypot(yy - 23.5, xx - 23.5)) * 20, 0, 255).astype(np.uint8)
    return np.concatenate([photos, np.broadcast_to(edge[..., None], (*photos.shape[:3], 1))], axis=-1)


def _mixed(self: Planes, bound: int | None, most: int | None = None, write: bool = False) -> alphabound.Coded:
    """A chooser that gives images 0, 1, 2, 3, ... bounds 4, 8, 16, 4, ...: every chunk mixes bounds."""
    return self._run(np.array(BOUNDS)[np.arange(len(self.values)) % 3 + 3], True, write)


def test_shown_errors_are_the_metric_at_each_bound(monkeypatch):
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 256, (3, 20, 24, 4)).astype(np.uint8)
    truth[0, ..., 3] = 255  # opaque: no bound changes it
    decoded = np.clip(truth[..., :3] + rng.integers(-9, 10, truth[..., :3].shape), 0, 255).astype(np.uint8)
    errors = shown_errors(decoded, truth[..., :3], truth[..., 3])
    monkeypatch.setattr(alphabound, "PIECE_PIXELS", 100)  # in bands of 4 rows, as large images go
    assert np.allclose(shown_errors(decoded, truth[..., :3], truth[..., 3]), errors)
    for k, bound in enumerate(BOUNDS):
        for i in range(3):
            shown = np.dstack([decoded[i], rounded(truth[i, ..., 3], bound)])
            assert np.isclose(errors[i, k], metrics.mse(truth[i], shown) * truth[i].size)
    assert np.allclose(errors[0], errors[0, 0]) and (np.diff(errors[1:], axis=1)[:, :2] > 0).all()


def test_the_bound_loosens_as_quality_falls_and_is_decoded_within(photos, model_only):
    cutouts = list(_feathered(photos[:4]))
    chosen = {}
    for preset in ("q1", "q8"):
        codec = zoo.load(f"photo:{preset}").at_effort(0)
        blob = codec.encode(cutouts)
        chosen[preset] = file_catalog(blob).alpha_error
        decoded = codec.decode(blob)
        for image, out in zip(cutouts, decoded):
            assert np.abs(out[..., 3].astype(int) - image[..., 3]).max() <= chosen[preset]
            for kept in (0, 255):  # transparent and opaque stay so
                assert (out[..., 3][image[..., 3] == kept] == kept).all()
        images, bits = codec.reconstruct_with_bits(cutouts)  # what an encoder would write, without writing
        assert all(np.array_equal(a, b) for a, b in zip(images, decoded))
        assert abs(bits.sum() / 8 - len(blob)) < 80
    assert chosen["q1"] > chosen["q8"] and chosen["q1"] in BOUNDS
    codec = zoo.load("photo:q1").at_effort(0)
    exact, chosen_blob = codec.encode(cutouts, alpha_error=0), codec.encode(cutouts)
    assert len(chosen_blob) < 0.8 * len(exact)  # alpha was most of the file
    assert file_catalog(codec.encode(cutouts, max_error=1)).alpha_error <= 1  # never looser than the colour
    assert all(np.array_equal(a[..., 3], b[..., 3]) for a, b in zip(codec.reconstruct(cutouts, alpha_error=0), cutouts))


def test_an_image_whose_colour_decodes_exactly_keeps_its_alpha_exact():
    """Each image's alpha error is weighed against its own colour's error, so a file's
    noisy images cannot outvote an icon that decodes exactly."""
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 256, (2, 32, 32, 4)).astype(np.uint8)
    truth[..., 3] = np.clip(rng.normal(128, 60, (2, 32, 32)), 1, 254).astype(np.uint8)  # soft everywhere
    noisy = truth.copy()
    noisy[..., :3] = np.clip(truth[..., :3] + rng.integers(-40, 41, truth[..., :3].shape), 0, 255)

    def choice(*pairs: tuple[np.ndarray, np.ndarray], lmbda: float | None = 0.2) -> int:  # photo presets' top
        planes = Planes(len(pairs), lmbda)
        for i, (want, got) in enumerate(pairs):
            planes.add(i, want[None], got[None], None)
        return int(planes.code(None).bounds.max())

    assert choice((truth[0], noisy[0])) > 0
    assert choice((truth[0], noisy[0]), (truth[1], truth[1])) == 0
    assert choice((truth[0], noisy[0]), lmbda=None) == 0  # no lmbda to weigh error against bits: lossless
    assert choice((truth[0], truth[0]), (truth[1], truth[1])) < max(BOUNDS)  # all exact: no error comes free


def test_encode_says_the_bound_it_chose(tmp_path, capsys, monkeypatch, photos):
    folder = tmp_path / "cutouts"
    folder.mkdir()
    for i, image in enumerate(_feathered(photos[:2])):
        Image.fromarray(image).save(folder / f"{i}.png")
    code, err = in_process(capsys, "encode", "-m", "photo:q1", str(folder), "-o", str(tmp_path / "out.ltz"))
    bound = file_catalog((tmp_path / "out.ltz").read_bytes()).alpha_error
    assert code == 0 and bound > 0 and f"alpha within {bound} levels" in err
    monkeypatch.setattr(Planes, "code", _mixed)
    code, err = in_process(capsys, "encode", "-m", "photo:q1", str(folder), "-o", str(tmp_path / "mixed.ltz"))
    assert code == 0 and "alpha within a bound chosen for each image" in err


def test_an_image_the_files_bound_would_cost_more_than_exact_alpha_takes_its_own():
    """Noisy images take a loose bound; one whose colour decodes exactly keeps its alpha
    exact, and the file names each image's bound."""
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 256, (6, 32, 32, 4)).astype(np.uint8)
    truth[..., 3] = np.clip(rng.normal(128, 60, (6, 32, 32)), 1, 254).astype(np.uint8)  # soft everywhere
    decoded = truth.copy()
    decoded[1:, ..., :3] = np.clip(truth[1:, ..., :3] + rng.integers(-40, 41, truth[1:, ..., :3].shape), 0, 255)
    planes = Planes(6, 0.03)
    for i in range(6):
        planes.add(i, truth[i : i + 1], decoded[i : i + 1], None)
    coded = planes.code(None)
    assert coded.per_image and coded.bounds[0] == 0 and (coded.bounds[1:] > 0).all()
    assert planes.code(None, most=0).bounds.max() == 0  # never looser than the colour's bound
    assert not planes.code(3).per_image and (planes.code(3).bounds == 3).all()


def test_a_file_of_per_image_bounds_decodes_as_the_encoder_reconstructs(monkeypatch, photos):
    """The format of per-image bounds, chunk by chunk and tile by tile."""
    monkeypatch.setattr(tiling, "SIDE", 256)
    wide = np.concatenate([np.tile(photos[i], (1, 7, 1)) for i in range(2)], axis=0)  # 96 x 336: tiled
    cutouts = [*_feathered(photos[:3]), np.dstack([wide, np.tile(_feathered(photos[:1])[0, ..., 3], (2, 7))])]
    monkeypatch.setattr(Planes, "code", _mixed)
    codec = zoo.load("photo:q4").at_effort(0)
    blob = codec.encode(cutouts)
    assert file_catalog(blob).alpha_error == PER_IMAGE and file_catalog(blob).tile == 256
    decoded = codec.decode(blob)
    assert all(np.array_equal(a, b) for a, b in zip(codec.reconstruct(cutouts), decoded))
    for i, (image, out) in enumerate(zip(cutouts, decoded)):
        assert np.array_equal(out[..., 3], rounded(image[..., 3], BOUNDS[i % 3 + 3]))
