"""Coding a stream's segments on several threads, with results in stream order.

The compiled kernels release the GIL, so threads run them side by side. Each job gets a
`Watch`: its progress callback, which also stops the job within a call of the kernel once
the stream is abandoned (an error, Ctrl-C, SIGTERM), so no thread outlives it by more.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable, Generic, TypeVar

Result = TypeVar("Result")
Progress = Callable[[int], None]
_POLL = 0.2  # seconds between the main thread's checks for signals while it waits


class Cancelled(Exception):
    """Raised inside a job whose stream was abandoned."""


class Watch:
    """A job's progress callback: reports bytes, and stops the job once cancelled."""

    def __init__(self, progress: Progress | None, cancelled: threading.Event) -> None:
        self._progress = progress
        self._cancelled = cancelled

    def __call__(self, n: int) -> None:
        if self._cancelled.is_set():
            raise Cancelled
        if self._progress is not None:
            self._progress(n)


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def total_memory() -> int:
    """Physical memory in bytes (0 when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0


class Pipeline(Generic[Result]):
    """Runs jobs on up to `threads` threads (in the caller's thread when 1) and hands back
    their results in the order they were submitted, holding at most `threads` in flight."""

    def __init__(self, threads: int, progress: Progress | None) -> None:
        self.threads = threads
        self._cancelled = threading.Event()
        self.watch = Watch(progress, self._cancelled)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="latentzip") if threads > 1 else None
        self._running: deque[Future[Result]] = deque()

    def submit(self, job: Callable[[Watch], Result]) -> list[Result]:
        """Start `job(watch)`; return the results that are ready, oldest first."""
        if self._pool is None:
            return [job(self.watch)]
        self._running.append(self._pool.submit(job, self.watch))
        ready = []
        while len(self._running) > self.threads or (self._running and self._running[0].done()):
            ready.append(self._oldest())
        return ready

    def drain(self) -> list[Result]:
        """Every result still to come, in order."""
        return [self._oldest() for _ in range(len(self._running))]

    def close(self) -> None:
        """Stop every job still running and wait for their threads."""
        self._cancelled.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._running.clear()

    def _oldest(self) -> Result:
        future = self._running[0]
        try:
            while True:
                try:
                    result = future.result(timeout=_POLL)  # a timed wait: signals reach the main thread
                    break
                except FutureTimeout:
                    continue
        except BaseException:
            self.close()
            raise
        self._running.popleft()
        return result
