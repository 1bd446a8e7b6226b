"""The exceptions latentzip raises for problems a user can fix, and how messages quote
what a file or a user supplied.

The CLI prints any LatentzipError as one line and exits non-zero; anything else is a bug.
"""

from __future__ import annotations


class LatentzipError(Exception):
    """Base class: a problem with the user's input, files or environment."""


class FormatError(LatentzipError, ValueError):
    """A file is not a latentzip file, is of the wrong kind, or is damaged."""


class LimitError(FormatError):
    """A file declares, or a stream would produce, more than a stated limit allows
    (see "Resource policy" in docs/format.md, and `max_length` of the lossless API)."""


class DataError(LatentzipError):
    """A dataset or image could not be found, fetched, verified or read."""


class ModelError(LatentzipError):
    """A model is unknown, damaged, or does not fit the data or file at hand."""


def printable(text: str, limit: int = 1000) -> str:
    """`text` fit for one line of a terminal: characters that are not printable (newlines,
    escape sequences, bidirectional controls) escaped, and cut to `limit` characters."""
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text[:limit])
    return out + ("…" if len(text) > limit else "")


def shown(name: str, limit: int = 60) -> str:
    """A name from a file or a user, quoted for a message: escaped, and only a short prefix
    of a long one, so no name can flood or steer the terminal."""
    return f"'{printable(name, limit)}'" + (f" ({len(name)} characters)" if len(name) > limit else "")
