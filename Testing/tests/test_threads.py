"""Work in threads: results in order, errors handed on, and the single-core path the same."""

import _thread
import threading
import time
from functools import partial

import pytest

from MedRegionCTLib import threads


def test_run_all_keeps_order_and_uses_threads(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    names = []

    def job(i):
        time.sleep(0.02 * (3 - i))  # the first finishes last
        names.append(threading.current_thread().name)
        return i * i

    assert threads.run_all([lambda i=i: job(i) for i in range(3)]) == [0, 1, 4]
    assert all(n != threading.main_thread().name for n in names)


def test_run_all_and_in_background_on_one_core(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 1)
    seen = []
    assert threads.run_all([lambda: seen.append(threading.current_thread().name) or 7]) == [7]
    assert seen == [threading.main_thread().name]
    assert threads.in_background(lambda: 5).result() == 5


@pytest.mark.parametrize("cores", [1, 2])
def test_errors_are_handed_on(monkeypatch, cores):
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)

    def boom():
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        threads.run_all([lambda: 1, boom])
    with pytest.raises(ValueError, match="bad input"):
        threads.in_background(boom).result()


def test_interrupt_ends_the_running_calls_and_starts_no_more(monkeypatch):
    """Ctrl-C while calls run: those running end before the interrupt goes on (a caller removing what they
    write finds nothing landing after it) and no further call starts."""
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    started, finished = [], []

    def call(i):
        started.append(i)
        if i == 0:
            _thread.interrupt_main()  # as Ctrl-C: KeyboardInterrupt in the main thread
        time.sleep(0.2)
        finished.append(i)

    with pytest.raises(KeyboardInterrupt):
        threads.run_all([partial(call, i) for i in range(6)], max_workers=2)
    assert sorted(finished) == sorted(started)
    assert len(started) <= 2
