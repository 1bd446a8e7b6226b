"""Verbs of the lossless codec: compress, decompress."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this family's sub-commands (filled in with the lossless codec)."""
