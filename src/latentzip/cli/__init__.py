"""The `latentzip` command: parse arguments, call the public API, print.

Each family of verbs lives in its own module and registers its sub-commands here.
Problems the user can fix (LatentzipError) are printed as one line with a non-zero
exit status; no traceback reaches the terminal for them.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import LatentzipError
from . import apps, image, lossless, report

FAMILIES = (image, lossless, report, apps)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latentzip",
        description="Neural data compression: learned lossy image codecs and lossless neural compression.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"latentzip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for family in FAMILIES:
        family.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LatentzipError as exc:
        print(f"latentzip: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("latentzip: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
