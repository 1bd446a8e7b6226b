"""numba's `njit`, for every compiled kernel of latentzip, imported so that a command
does not pay for a BLAS check it never uses.

On its first compile or cache load numba imports numba.np.arraymath, which imports
scipy.linalg (about a tenth of a second, a tenth of a whole `latentzip compress -1` of
1 MB) only to learn whether np.dot could call BLAS. No latentzip kernel does linear
algebra, so when scipy.linalg is not loaded yet, arraymath is loaded here with
scipy.linalg hidden for that moment: numba then records that it has no BLAS, and
scipy.linalg imports as usual afterwards for whoever needs it (scikit-learn does).
"""

from __future__ import annotations

import importlib
import sys

from numba import njit

if "scipy.linalg" not in sys.modules and "numba.np.arraymath" not in sys.modules:
    sys.modules["scipy.linalg"] = None  # type: ignore[assignment]  # makes its import fail at once
    try:
        importlib.import_module("numba.np.arraymath")
    finally:
        del sys.modules["scipy.linalg"]

__all__ = ["njit"]
