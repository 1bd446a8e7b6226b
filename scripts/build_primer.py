"""Build the lossless codec's built-in primer: src/latentzip/lossless/{primer,prior}.xz.

    python scripts/build_primer.py            # both files
    python scripts/build_primer.py --prior    # only the prior, after a predictor change

The primer is text both sides learn before coding (see latentzip/lossless/primer.py).
It is cut from the benchmark's tuning corpora only (bench/corpora.py), never from the
held-out samples: Python standard library packages first, English prose last, so that
prose, the hardest case for the codec, is freshest in the model. Changing its bytes
changes every primed file: bump PRIMER_ID and PRIMER_SHA256 in primer.py with it.

The prior is what coding the primer in full teaches the mixers and maps. It must be
rebuilt whenever the mixing predictor changes (its REVISION is stored in it); it takes
about a minute. The shipped prior was built before predictor revision 7, when every
byte of the primer taught the mixers; coding now skips bytes deep in long repeats, so a
rebuild gives slightly different weights, and a new prior changes every primed file:
bump PRIMER_ID with it.
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save as save_tensors

from latentzip.fsio import atomic_writer
from latentzip.lossless import DEFAULT_LEVEL, LEVELS, primer
from latentzip.lossless.coder import encode_block
from latentzip.lossless.predict import REVISION, Model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import corpora  # noqa: E402

HERE = ROOT / "src" / "latentzip" / "lossless"


def _write(name: str, data: bytes) -> None:
    path = HERE / name
    with atomic_writer(path) as handle:
        handle.write(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    print(f"{path.relative_to(ROOT)}: {len(data):,} bytes, {path.stat().st_size:,} stored")


def build_prior(text: bytes) -> dict[str, np.ndarray]:
    """The mixer weights and maps of a model that has coded the primer, as int32 where they fit."""
    model = Model(LEVELS[DEFAULT_LEVEL])
    encode_block(model, text)
    tensors = {}
    for name in primer.PRIOR_ARRAYS:
        value = getattr(model, name)
        tensors[name] = value.astype(np.int32) if np.abs(value).max() < 2 ** 31 else value
    tensors["revision"] = np.array([REVISION], dtype=np.int64)
    return tensors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", action="store_true", help="rebuild only the prior from the shipped primer")
    args = parser.parse_args()
    if args.prior:
        text = primer.text()
    else:
        text = corpora.primer_text()
        _write("primer.xz", text)
        print(f"primer sha256 {hashlib.sha256(text).hexdigest()} (PRIMER_SHA256 in primer.py)")
    _write("prior.xz", save_tensors(build_prior(text)))


if __name__ == "__main__":
    main()
