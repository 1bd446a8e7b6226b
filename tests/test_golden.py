"""Golden hashes: fixed inputs give fixed bytes at every lossless level and with every
shipped model, so a change to any bitstream is a deliberate one.

When a change to a bitstream is intended, bump the predictor revision (lossless) or
ship new models (lossy), and replace the hashes here in the same commit.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import latentzip
from latentzip import data
from latentzip.image import zoo
from latentzip.lossless import LEVELS, Compressor, decompress, primer

BLOCK = 1 << 14  # small blocks: the input spans three, one of them stored, the last one short


def lossless_input() -> bytes:
    """40 KiB: English text from the primer, then bytes no model can shrink, then text again."""
    text = primer.text()
    noise = b"".join(hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(BLOCK // 32))
    return text[1_500_000 : 1_500_000 + BLOCK] + noise + text[1_900_000 : 1_900_000 + BLOCK // 2]


def golden_images() -> np.ndarray:
    """The first 16 test images of scikit-learn's digits, scaled 3x and padded to 28x28."""
    small = data.load("digits:test").images[:16, :, :, 0]
    return np.pad(np.kron(small, np.ones((3, 3), np.uint8)), ((0, 0), (2, 2), (2, 2)))


def _sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


# Revision 5 changed levels 1-3; at levels 4-9 only the header's revision field (and CRC) changed.
LOSSLESS = {
    (1, False): "510c18f50d56cb1e39a870777f4a32200b0e8a0114cbf2c4c405df0a13f7f6f7",
    (2, False): "cf7f80e9824e57754dddfab968387fcdf0a509dde515618611dc30c5bda8520b",
    (3, False): "38b89f9ce8d786b4d709d29b136670264d1099887f72a7d4c9af78c6d648efa1",
    (4, False): "330bd9cc3daf6ab836586a3ad3dcef6baeda335a38d1cda49e16e16a062f7fed",
    (5, False): "8a7b1c37114bb327416774a458b4bf1c1811a6142512bc13de4ab8d3538383d7",
    (6, False): "3b44655fa09bb8dd1b528614beb22614bcbd3b85b67fd4357a803df3ca2a038a",
    (6, True): "b39a72f1520e01146a6dbe56314dd010964a21bd145b58b9c7959f880bb4b9d7",
    (7, False): "d7d9dc26dd90ea1e8eb06402f8d44becded3c15089946f9467cf29833a69b96d",
    (7, True): "144a805ea4f401c0d37bd6dfc895c5fd526a9a34f69fe35d90f506898798e212",
    (8, False): "d28192d343b4089b5fb7bd41d47a2326e44f3cecbc24ac022d2b485423864260",
    (8, True): "d6ae86500aa4e6255a580e2d357922724279a184614d5f21061af03ae493bec7",
    (9, False): "68bbdf2c07c100c4c3fc9e686519f8d23ffe66c0a14e8fd87810669b7ed8919e",
    (9, True): "77fe6826ce34901398970deb6447a91c4106dc5a581ac5bc13afaad0be57c007",
}

IMAGES = {
    "fashion-mnist:q0": "dfeacde5efdcd30e137cd7c8789fc51f3b9b0b809d3118ca6fcc52a2d0462fe1",
    "fashion-mnist:q1": "321655bec0e738e56fe1b25bf4b3135966ccd5ba640b16b059ca4b6d8a578164",
    "fashion-mnist:q2": "6ef0de10629f973166fd2a47982d3686671dfdbde59ca099b0b9b1ed6a932e2b",
    "fashion-mnist:q3": "7dee8de291622800ebca37a1037b27744a2ce3171a7cb4a7d5f3d89a486e7d8e",
    "fashion-mnist:q4": "30b2f5208067678d380d8a4fe0e6427b90b838ddc4bc10659597d7ab801d8246",
    "fashion-mnist:q5": "93f32d117eba781fcbf3550f90666a2b93c0a6828710d76cfe5fac4570d4f677",
    "fashion-mnist:q6": "83f6bfef62e44045730f8ae2471722d693a604e6155db3e06d5f8f7d6840c6f7",
    "fashion-mnist:q7": "ec5cf53564c6c9ebebc45224e191bce052da8c0b9f4e42cecd2e39d9ff3d9757",
    "fashion-mnist:q8": "bbe655670d4f88f4bfa01425bbfd3779878b497a073925af9015b72396044667",
    "mnist:q0": "e399448b24f984da8e776304c0273129c1b9c17f2d72de4aa7a00fa0b9bc854e",
    "mnist:q1": "4c79a995efdccb198c9e68acde01f31bf216dfa77b14d7836e5a25297dd74919",
    "mnist:q2": "c90b4af3ddab1902e2c59b3143f5ace4b16f95fd52240aabfffe9b6a70cee84d",
    "mnist:q3": "ba4aee18e100d8d7d2424ec4ffb4695073106cf3b8dd9819873ea1df22cab187",
    "mnist:q4": "a7853044117f07a5fd86fde18184aaca78a208ba0d27bff2893e6a6ff19e86e4",
    "mnist:q5": "6131c03028a1afbea0d9c5a513734141fa138c3c7f5e76c503736b87f6873724",
    "mnist:q6": "e5bc9b21f748a677177560cc4fb85f6e999740a6f004f2d668e69b41aa019ca9",
    "mnist:q7": "80b9dcfce4ba1198f04ec3840feece0ff4c55a86058d8dff254fcc5fb53514d5",
    "mnist:q8": "be34d9a7323dca00496e2b41cdf96e03d368525ba2c4b9cd3530bc88959b547c",
}


def _lossless_cases() -> list[tuple[int, bool]]:
    return [(level, primed) for level in sorted(LEVELS) for primed in (False, True)
            if primed is False or LEVELS[level].primed]


@pytest.fixture(scope="module")
def text() -> bytes:
    return lossless_input()


@pytest.mark.parametrize(("level", "primed"), _lossless_cases())
def test_lossless_bitstream_is_fixed(text: bytes, level: int, primed: bool) -> None:
    c = Compressor(level, block_size=BLOCK, primer=primed)
    blob = c.compress(text) + c.flush()
    assert (c.blocks, c.stored_blocks) == (3, 1)
    assert _sha(blob) == LOSSLESS[level, primed]
    if level in (1, 6):
        assert decompress(blob) == text


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_shipped_model_bitstream_is_fixed(name: str) -> None:
    if name not in zoo.names():
        pytest.skip(f"{name} is not shipped in this checkout")
    blob = latentzip.load_model(name).encode(golden_images(), [f"digit_{i:02d}.png" for i in range(16)])
    assert _sha(blob) == IMAGES[name]


def test_every_shipped_model_has_a_golden_hash() -> None:
    assert set(zoo.names()) <= set(IMAGES)
