"""The `latentzip` command: parse arguments, call the public API, print.

Each family of verbs lives in its own module and registers its sub-commands here.
Whatever goes wrong reaches the user as one line on stderr and a non-zero exit status,
never a traceback: problems the user can fix (LatentzipError, bad arguments) say what to
do; SIGINT, SIGTERM and SIGHUP stop the command the same way, running every cleanup
(temporary files, staging directories) before exiting with 128 + the signal number.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import NoReturn

from ..errors import LatentzipError, printable
from . import apps, bulk, image, lossless, report

FAMILIES = (image, lossless, report, apps, bulk)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
DEBUG_ENV = "LATENTZIP_DEBUG"  # set to see the traceback of an internal error


class Interrupted(KeyboardInterrupt):
    """A stop signal, raised where the program is, as Ctrl-C is, so that cleanups run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other error."""

    def error(self, message: str) -> NoReturn:
        _say(f"error: {message} (see {self.prog} --help)")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="latentzip",
        description="Neural data compression: learned lossy image codecs and lossless neural compression.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"latentzip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for family in FAMILIES:
        family.register(sub)
    return parser


def _say(text: str) -> None:
    """One line on stderr; a closed terminal (SIGHUP) is no reason for a second error."""
    try:
        print(f"latentzip: {printable(text)}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


_received: list[int] = []  # the stop signal that arrived, if one did


def _stop(signum: int, frame: object) -> NoReturn:
    for other in STOP_SIGNALS:  # a second signal must not cut the cleanup short
        signal.signal(other, signal.SIG_IGN)
    _received.append(signum)
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    _received.clear()
    previous = {signum: signal.signal(signum, _stop) for signum in STOP_SIGNALS}
    try:
        given = sys.argv[1:] if argv is None else list(argv)
        args = build_parser().parse_args(lossless.attach_values(given))
        args.argv = given  # for a verb that runs itself again (train --procs)
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:
        return _failed(exc)
    except BaseException as exc:  # SystemExit from argparse, or a library's panic
        if not _received:
            raise
        return _failed(exc)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _failed(exc: BaseException) -> int:
    """Say what stopped the command, in one line, and return its exit status."""
    if _received:
        # Interrupted, or what a compiled library made of it when the signal landed in a
        # callback of its own (PyO3 makes a panic of it): the cleanups have run either way.
        _say(f"interrupted ({signal.Signals(_received[0]).name})")
        return 128 + _received[0]
    if isinstance(exc, LatentzipError):
        _say(f"error: {exc}")
        return 1
    if isinstance(exc, BrokenPipeError):
        return 1
    if isinstance(exc, MemoryError):
        _say("error: out of memory")
        return 1
    if os.environ.get(DEBUG_ENV) or not isinstance(exc, Exception):  # a bug, unless asked for the traceback
        raise exc
    _say(f"internal error: {type(exc).__name__}: {exc} (a bug in latentzip; {DEBUG_ENV}=1 shows where)")
    return 70


if __name__ == "__main__":
    sys.exit(main())
