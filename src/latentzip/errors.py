"""The exceptions latentzip raises for problems a user can fix.

The CLI prints any LatentzipError as one line and exits non-zero; anything else is a bug.
"""


class LatentzipError(Exception):
    """Base class: a problem with the user's input, files or environment."""


class FormatError(LatentzipError, ValueError):
    """A file is not a latentzip file, is of the wrong kind, or is damaged."""


class DataError(LatentzipError):
    """A dataset or image could not be found, fetched, verified or read."""


class ModelError(LatentzipError):
    """A model is unknown, damaged, or does not fit the data or file at hand."""
