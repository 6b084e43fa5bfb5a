"""Stopping ``generate()`` from outside: a cancel flag or a deadline is checked after every decode step.

``transformers`` calls a :class:`~transformers.StoppingCriteria` once per generated token, so a cancel (the
user's, a server job's) or a per-job timeout ends generation within one decode step instead of after
``max_new_tokens`` tokens.
"""

from __future__ import annotations

import time

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from ..errors import CancelledError
from ..progress import is_cancelled


class CancelCriteria(StoppingCriteria):
    """True for every row once ``cancel`` is set or ``deadline`` (``time.monotonic()`` seconds) has passed."""

    def __init__(self, cancel=None, deadline: float | None = None):
        self.cancel = cancel
        self.deadline = deadline
        self.stopped = False
        self.steps = 0

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        self.steps += 1
        stop = is_cancelled(self.cancel) or (self.deadline is not None and time.monotonic() >= self.deadline)
        self.stopped = self.stopped or stop
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

    def raise_if_stopped(self, what: str = "report generation") -> None:
        if self.stopped:
            reason = "cancelled" if is_cancelled(self.cancel) else "stopped at its time limit"
            raise CancelledError(f"{what} was {reason} after {self.steps} decode steps; nothing was written. "
                                 "Run it again to redo it.")


def stopping_criteria(cancel=None, deadline: float | None = None) -> tuple[StoppingCriteriaList, CancelCriteria]:
    criteria = CancelCriteria(cancel, deadline)
    return StoppingCriteriaList([criteria]), criteria
