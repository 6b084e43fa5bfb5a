"""Independent pieces of work on the cores this process may use, in threads: numpy, scipy.ndimage and zlib let
go of the interpreter while they compute, so two threads keep two cores busy."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor


def usable_cores() -> int:
    """CPUs this process may run on (its affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_all(calls: Sequence[Callable[[], object]], max_workers: int = 4) -> list:
    """Each call's result, in order; serially on one core. The first error is raised once all have ended."""
    workers = min(usable_cores(), max_workers, len(calls))
    if workers < 2:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.result() for f in futures]


def in_background(call: Callable[[], object]) -> Future:
    """Start ``call`` on another thread (at once, on this one, with a single core); ``.result()`` gives its value
    or raises its error. The caller keeps the progress reports: a progress bar is only touched from its thread."""
    if usable_cores() < 2:
        done: Future = Future()
        try:
            done.set_result(call())
        except BaseException as error:  # noqa: BLE001 - handed on at .result(), as a thread would
            done.set_exception(error)
        return done
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(call)
    pool.shutdown(wait=False)  # the thread ends with its call
    return future
