"""The Dask cluster a bulk job runs on: a local one of N worker processes, or a
running scheduler the job joins."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator

from ..errors import LatentzipError

CONNECT_SECONDS = 30


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise LatentzipError("bulk jobs run on Dask: pip install 'latentzip[dask]'") from None
    return distributed


@contextlib.contextmanager
def connect(client: Any = None, workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A Dask client: `client` itself when given; else one joined to `scheduler`'s
    address; else a local cluster of `workers` processes (default: one per core), one
    thread each, closed on the way out."""
    if client is not None:
        yield client
        return
    distributed = _distributed()
    if workers is not None and workers < 1:
        raise LatentzipError("--workers must be at least 1")
    if scheduler is not None:
        try:
            joined = distributed.Client(scheduler, timeout=CONNECT_SECONDS)
        except (OSError, TimeoutError, ValueError) as exc:
            raise LatentzipError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with joined:
            yield joined
        return
    with distributed.LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=logging.CRITICAL) as local, \
            distributed.Client(local) as started:
        yield started


def as_completed(futures: list[Any]) -> Iterator[Any]:
    return _distributed().as_completed(futures)
