"""Progress reporting and cancellation shared by every long-running step.

A *progress* callback receives ``(fraction, message)`` with fraction in [0, 1]. A *cancel* argument is
anything with an ``is_set()`` method (``threading.Event``, :class:`CancelToken`) or a plain callable
returning True when the work should stop. Both may be ``None``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .errors import CancelledError

ProgressCallback = Callable[[float, str], Any]


class CancelToken(threading.Event):
    """A thread-safe cancel flag: call :meth:`set` from any thread to stop the work."""


def is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def check_cancel(cancel, what: str = "the operation") -> None:
    """Raise :class:`CancelledError` when ``cancel`` asks to stop."""
    if is_cancelled(cancel):
        raise CancelledError(f"{what} was cancelled; nothing was written. Run it again to redo it.")


class Steps:
    """Maps the sub-steps of one job onto a single progress callback.

    >>> steps = Steps(callback, total=4)
    >>> steps.advance("segmenting")      # 0.25
    """

    def __init__(self, progress: ProgressCallback | None, total: int, cancel=None, start: float = 0.0,
                 end: float = 1.0, what: str = "the operation"):
        self.progress = progress
        self.total = max(int(total), 1)
        self.done = 0
        self.cancel = cancel
        self.start = start
        self.end = end
        self.what = what

    def report(self, fraction_of_current: float, message: str) -> None:
        check_cancel(self.cancel, self.what)
        if self.progress is not None:
            frac = (self.done + min(max(fraction_of_current, 0.0), 1.0)) / self.total
            self.progress(self.start + (self.end - self.start) * frac, message)

    def advance(self, message: str = "") -> None:
        self.done = min(self.done + 1, self.total)
        self.report(0.0, message)


class TqdmProgress:
    """A progress callback that drives a tqdm bar (command line)."""

    def __init__(self, desc: str = "", disable: bool | None = None):
        from tqdm import tqdm

        self._bar = tqdm(total=1000, desc=desc, unit="‰", disable=disable,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def __call__(self, fraction: float, message: str = "") -> None:
        target = int(round(min(max(fraction, 0.0), 1.0) * 1000))
        if target > self._bar.n:
            self._bar.update(target - self._bar.n)
        if message:
            self._bar.set_postfix_str(message, refresh=True)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
