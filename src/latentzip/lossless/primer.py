"""The built-in primer: about 2 MB of text the model learns before it codes anything.

A model that learns online starts knowing nothing, and pays for it on the first few
hundred kilobytes of every file. Both sides can instead start from the same prior by
learning a text they both have: this one ships with the package, in the spirit of
brotli's built-in dictionary. It is Python standard library source (the email, json,
http and xml packages) followed by the Canterbury corpus's English texts (alice29,
asyoulik, lcet10, plrabn12); see primer.md for its sources and their licences.

Two files hold it: `primer.xz`, the text, whose context statistics the model counts at
start-up (Model.prime, a few seconds), and `prior.xz`, the mixer weights and learned
maps the model had after coding that text in full, which would take far longer to
recompute. The two together give the state a model has after coding the primer,
except for its SSE tables. Priming is used from level 6 up and, unless asked for, only
on inputs large enough to earn the seconds back and not made mostly of runs and
repeats (`worth_priming`).

The header of a primed file names the primer by PRIMER_ID, and both files are checked
(the text against PRIMER_SHA256, the prior against the predictor revision and the
model's shapes), so a file can never be decoded from a different start.
"""

from __future__ import annotations

import functools
import hashlib
import lzma
import zlib
from pathlib import Path

import numpy as np
from safetensors.numpy import load as load_tensors

from ..errors import FormatError

PRIMER_ID = 1
PRIMER_SHA256 = "d53c30a91f6d82506974fcd24980212b58d8bbea5f9c80f77382b03180b78b11"
# Inputs smaller than this (as far as the compressor has seen when it starts the first
# block) are not primed unless asked: learning the primer takes about as long as coding
# 150-250 KB, which small inputs would not earn back.
AUTO_MIN_BYTES = 1 << 16
# Nor when deflate already shrinks the input's first MiB REDUNDANT_RATIO times or more
# (runs, a few lines over and over): the model codes most of such data in long
# repeats, many times faster than text, so learning the primer would take most of the
# run, and what it knows of text is worth a few hundred bytes there.
REDUNDANCY_SAMPLE = 1 << 20
REDUNDANT_RATIO = 64
_PATH = Path(__file__).with_name("primer.xz")
_PRIOR = Path(__file__).with_name("prior.xz")
# The arrays of a Model that the prior holds: small, and slow to learn.
PRIOR_ARRAYS = ("weights", "final_weights", "history_map", "match_sm", "order0")


@functools.cache
def text() -> bytes:
    """The primer's bytes, read once per process and checked."""
    try:
        data = lzma.decompress(_PATH.read_bytes())
    except (OSError, lzma.LZMAError) as exc:
        raise FormatError(f"the built-in primer {_PATH.name} is missing or damaged ({exc}); reinstall latentzip") from None
    if hashlib.sha256(data).hexdigest() != PRIMER_SHA256:
        raise FormatError(f"the built-in primer {_PATH.name} does not match this build; reinstall latentzip")
    return data


@functools.cache
def prior(revision: int) -> dict[str, np.ndarray]:
    """The prior's arrays (int64), read once per process; refused unless made for `revision`."""
    try:
        tensors = load_tensors(lzma.decompress(_PRIOR.read_bytes()))
    except Exception as exc:  # OSError, LZMAError, or safetensors' own error for damaged bytes
        raise FormatError(f"the built-in prior {_PRIOR.name} is missing or damaged ({exc}); reinstall latentzip") from None
    made_for = tensors.pop("revision", np.zeros(1, np.int64))
    if int(made_for[0]) != revision or set(tensors) != set(PRIOR_ARRAYS):
        raise FormatError(f"the built-in prior {_PRIOR.name} was made for another predictor; reinstall latentzip")
    return {name: value.astype(np.int64) for name, value in tensors.items()}


def worth_priming(received: bytes | bytearray) -> bool:
    """The automatic choice, from the input seen so far: prime when it is large enough,
    and not so redundant that nearly all of it is coded a byte per decision."""
    if len(received) < AUTO_MIN_BYTES:
        return False
    sample = bytes(received[:REDUNDANCY_SAMPLE])
    return len(zlib.compress(sample, 1)) * REDUNDANT_RATIO > len(sample)
