"""Independent pieces of work on the cores this process may use, in threads: numpy, scipy.ndimage and zlib let
go of the interpreter while they compute, so two threads keep two cores busy."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor


def usable_cores() -> int:
    """CPUs this process may run on (its affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextlib.contextmanager
def sigint_deferred():
    """Hold back Ctrl-C for a few system calls (then raise it): a thread being started, a folder swap."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def run_all(calls: Sequence[Callable[[], object]], max_workers: int = 4) -> list:
    """Each call's result, in order; serially on one core. The first error is raised once all have ended.

    Interrupted (Ctrl-C), no further call starts and the running ones end before the interrupt goes on: a
    caller that then removes what they write finds nothing landing after it. (A thread pool cannot promise
    that: Ctrl-C during its lazy thread start leaves a thread it never joins.)"""
    workers = min(usable_cores(), max_workers, len(calls))
    if workers < 2:
        return [call() for call in calls]
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for i in range(len(calls)):
        todo.put(i)
    results: list = [None] * len(calls)
    errors: list = [None] * len(calls)
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[i] = calls[i]()
            except BaseException as error:  # noqa: BLE001 - handed on in order once all have ended
                errors[i] = error

    pool = [threading.Thread(target=work, name=f"medregionct-{k}", daemon=True) for k in range(workers)]
    try:
        with sigint_deferred():
            for thread in pool:
                thread.start()
        for thread in pool:
            thread.join()
    except BaseException:
        stop.set()
        for thread in pool:
            if thread.is_alive():
                thread.join()
        raise
    for error in errors:
        if error is not None:
            raise error
    return results


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
