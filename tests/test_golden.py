"""Golden hashes: fixed inputs give fixed bytes at every lossless level and with every
shipped model, so a change to any bitstream is a deliberate one; and the photo presets'
files decode to fixed pixels, which pins their integer synthesis.

When a change to a bitstream is intended, bump the predictor revision (lossless) or
ship new models (lossy), and replace the hashes here in the same commit. Images are
coded at effort 0: fitting latents (a higher effort) is the encoder's choice and runs
eight steps of float optimisation, whose last bits may differ between machines; the
format and the decoder are what these hashes hold still.
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


def golden_strip() -> np.ndarray:
    """An 84x1100 colour strip of the golden digits, tinted: wider than a tile, so it is
    coded in two."""
    row = np.concatenate(list(np.kron(golden_images(), np.ones((3, 3), np.uint8))), axis=1)[:, :1100]
    return np.stack([row, 255 - row, row // 2 + 64], axis=-1)


def _sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


# Revision 7 gave levels 4-9 the compiled coder of levels 1-3 and one decision a byte deep
# in a repeat (the header's revision field changed at every level); the records of levels
# 1-3 are those of revision 5.
LOSSLESS = {
    (1, False): "0c515b0a9056e9892a63856c3be05cd99ebf686eddc845b49382f69fc4afc50c",
    (2, False): "4618d3cd7fee2ccd022ce6de95990a83dfc563a61d4270847d04803ffeb65b82",
    (3, False): "7f20c16d09a4074e4e67c8aa1378b8910bbf8d5ada60432f2fed1fe92758ba1d",
    (4, False): "8448b82f0caa3626f673e66927ea5c304dc26ca01064bc6143689385918b9ea8",
    (5, False): "9dfe10ed1202b6af67a03a4c9d1ca54c5a8e115bd357c84b67ae5addf0582378",
    (6, False): "390e78e04ce847ab48e1ff6ce8b0f15ccc4c3738cb244dd862b676e67a479570",
    (6, True): "d2100687b1d71f16e79c40ab7465facaf2c2bdc50c3ed4f33c0fe4964e04a0a1",
    (7, False): "5c2cbfacdafe37d0b5f931d9509405139048fef947bcac86200eaa6e634eae01",
    (7, True): "106f3d51b184bee4302439b38047a82a9638d4e7fa4f5ea05b01ee0164f7be0b",
    (8, False): "b07fed3e9ab4b15bb96f29ded96768674c9ada9f20b5fd72e21174f77bb1644d",
    (8, True): "f206489b9b7b1e8fc29f2f389f157e7202205d4e502fb49606f325b883e8a2e3",
    (9, False): "0220a3aec4930fb19b9248f13245e5065ac9c4cc9670d67fc807f179c1c7a8fd",
    (9, True): "c1b0771ccbe8a144072b6cd33c41beb515071b4776eaa0373640320f43181168",
}

# Runs and long repeats (a byte one decision, at levels 4-9 from a match of 256 bytes):
# unchanged since revision 7, when the mixing levels' path for them began.
LONG_REPEATS = {
    1: "f4eb62e40152479b3b01e328581cee291d9b964ac08794c3928d604e6bd5af20",
    4: "d2bae8baa55602f78a98eed140f81a1b0c388b175a082f1391a0d46c87043e08",
    5: "300ca01609fdfe7f073f851f94e86964493985c741280d2cee90d4604eeba354",
    6: "ba7fa0a08061f79c16d77e73b55ac3b4d740addb1deffdd504eee022f23217c9",
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
    "photo:q1": "9539f449ad94f5f769566ce7894ecadf79f3f4bca35cd6cd2e0b0cffde448058",
    "photo:q2": "2e2b27d37b1d7d6f89d41193482c4061029994bd6f289d7a364af0e3c0f520e7",
    "photo:q3": "dfff66ad00ed3844bba8c1f1ebdc6f7fe3be8e13a570a2256a6b33b494c19970",
    "photo:q4": "673133e5280290c8545916068e0670c61d5c47d10a7c84dc7018ed54433cff47",
    "photo:q5": "a98c8680ada78e7246337ac1df5b9a9fd0f3d1b17aaffbf1da575c2070ed962b",
    "photo:q6": "e209854806a37de9cdb7fcce4b4741fe3d6205929ce9f39f00d2d8b4e0b267c4",
    "photo:q7": "f81adcb39d93e1919132aa998cba18bc26b8d97d9a91d6914445acae7eed9a04",
    "photo:q8": "ae07b1436ed0a93683d494c54c34ebc93734f8d7a596e39cc10d6859a3c7ef90",
}

# The same files as the presets with a max error write them: the golden digits are flat
# and blocky, and every one of them is coded directly (image/direct.py). IMAGES holds the
# model's own code of them, which older files hold.
DIRECT = {
    "fashion-mnist:q2": "9210c7c6f73779792eff918dae636f9d2dd13e3d23889b602759c6279e465516",
    "fashion-mnist:q3": "881eaee71ed68c3822c9c16612e31909b8d55aea50b0794d04f005b0940053b4",
    "fashion-mnist:q4": "e29611f492d4d2e7fe34b1041fb013e48eaba25ab23725e068934631cbcec873",
    "fashion-mnist:q5": "5b79b90d6fa91d4167123a0a7a2d9d02fcda4c63d42fe5b3b86291c7c9dbd1f1",
    "fashion-mnist:q6": "2689f134ac81095bf1b54ce246590487950a36c6f13155da65e34148d7130634",
    "fashion-mnist:q7": "bdbfa080fc6de25c22d889dc1a4502591837eca02d5851816b6c788b07146c94",
    "fashion-mnist:q8": "1fc83daa5fb1b876143fb723e50291c3d59c708cb9b40e91a3403ea275cd878e",
    "mnist:q2": "8b90d6725c0cd6001f03a5b7c1ba78f271e2c3bba35fb6b2ada581b3f100b948",
    "mnist:q3": "64ff7aa5515d603847bf9162cd88823a958e6621908f52655ae0d719c8c430f4",
    "mnist:q4": "a9a97dfb9fc22e8108286a248443193279ca1bf7f7bb9b605b0b2645c292be65",
    "mnist:q5": "1a704d2ac87b2d6c82b05ce5fa9f285f3a6d1969a96e5e8e71753d23e1656c80",
    "mnist:q6": "7f3092cfaae609327eac956016b3bbfc780d2a721ca2390c9c9f9eace8c650e0",
    "mnist:q7": "5b60a5e6d10bd59eb95785b2ade343245c4fc30c0f70044da67776890d810e11",
    "mnist:q8": "870992c3015ae559603c9e92c503d2620f493c71ac7302bb7827cdef14cf4ac0",
}

TILED_PRESET = "photo:q3"
TILED = "77001bcb4a9ebebe44f3ec10c31c9df6845aad632ae8eebab9ebe70145c82a3b"

# The pixels those files decode to: the photo presets' integer synthesis and post-filter.
PHOTO_DECODED = {
    "photo:q2": "7f8f1d4ebd8ceee348cf081a90cf64ae6dea2cccf4cbe51b39c1a99752a7214c",
    "photo:q5": "6c4b2fd30c8d95efcc146a5d739e0f71d820fb20b809884801405b25dbb82124",
    "photo:q8": "d786588624187914329a07ed2666cc338e7ad26519751189c058a64b08318818",
}
TILED_DECODED = "0845371993e4980ae783fa6dcedeca6b3cdaae77e40b0f5a960e30b5409daade"


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


@pytest.mark.parametrize("level", sorted(LONG_REPEATS))
def test_long_repeats_bitstream_is_fixed(level: int) -> None:
    """4 KiB of text, 20,000 zeros, the text three times more: one block of 64 KiB, which
    levels 4-5 code as two lock-step segments."""
    text = primer.text()[1_500_000 : 1_500_000 + 4096]
    data = text + bytes(20_000) + text * 3 + text[:1000] + bytes(range(256)) * 8
    c = Compressor(level, block_size=1 << 16, primer=False)
    blob = c.compress(data) + c.flush()
    assert _sha(blob) == LONG_REPEATS[level]
    assert decompress(blob) == data


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_shipped_model_bitstream_is_fixed(name: str, model_only) -> None:
    if name not in zoo.names():
        pytest.skip(f"{name} is not shipped in this checkout")
    blob = latentzip.load_model(name).encode(golden_images(), [f"digit_{i:02d}.png" for i in range(16)], effort=0)
    assert _sha(blob) == IMAGES[name]


@pytest.mark.parametrize("name", sorted(DIRECT))
def test_direct_bitstream_is_fixed(name: str) -> None:
    if name not in zoo.names():
        pytest.skip(f"{name} is not shipped in this checkout")
    codec = latentzip.load_model(name)
    blob = codec.encode(golden_images(), [f"digit_{i:02d}.png" for i in range(16)], effort=0)
    assert _sha(blob) == DIRECT[name]
    assert all(np.abs(a.astype(int) - b).max() <= codec.max_error for a, b in zip(golden_images(), codec.decode(blob)))


@pytest.mark.parametrize("name", sorted(PHOTO_DECODED))
def test_shipped_photo_presets_decode_to_fixed_pixels(name: str) -> None:
    if name not in zoo.names():
        pytest.skip(f"{name} is not shipped in this checkout")
    codec = latentzip.load_model(name)
    decoded = codec.decode(codec.encode(golden_images(), effort=0))
    assert _sha(b"".join(im.tobytes() for im in decoded)) == PHOTO_DECODED[name]


def test_every_shipped_model_has_a_golden_hash() -> None:
    assert set(zoo.names()) <= set(IMAGES)


def test_tiled_bitstream_is_fixed() -> None:
    if TILED_PRESET not in zoo.names():
        pytest.skip(f"{TILED_PRESET} is not shipped in this checkout")
    codec = latentzip.load_model(TILED_PRESET)
    blob = codec.encode([golden_strip()], effort=0)
    assert _sha(blob) == TILED
    assert _sha(codec.decode(blob)[0].tobytes()) == TILED_DECODED
