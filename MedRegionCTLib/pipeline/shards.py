"""``--shard i/N``: a deterministic split of a cohort's cases for SLURM array jobs (no engine, no coordination).

A case belongs to shard ``crc32(name) mod N``: the same on every machine and Python version, and a case keeps its
shard when cases are added to or removed from the input folder (a split by position would move most of them, so
a resumed array job would redo and skip the wrong ones). Shards are numbered 0..N-1, like ``$SLURM_ARRAY_TASK_ID``
of ``--array=0-(N-1)``.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from ..errors import InputError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, case_name: str) -> bool:
        return shard_of(case_name, self.count) == self.index


def shard_of(case_name: str, count: int) -> int:
    return zlib.crc32(case_name.encode("utf-8")) % count


def parse_shard(text) -> Shard | None:
    """``"3/100"`` -> Shard(3, 100); None or "" -> None. Raises :class:`InputError` for anything else."""
    if text is None or isinstance(text, Shard):
        return text
    if isinstance(text, tuple | list) and len(text) == 2:
        text = f"{text[0]}/{text[1]}"
    if not str(text).strip():
        return None
    match = _SHARD.match(str(text))
    if not match:
        raise InputError(f"--shard {text!r}: give INDEX/COUNT, e.g. --shard 0/10 (indices 0 to COUNT-1; with a "
                         "SLURM array --array=0-9 use --shard $SLURM_ARRAY_TASK_ID/10).")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise InputError(f"--shard {text}: the index must be 0 to {max(count - 1, 0)} and the count 1 or more "
                         f"(shards are numbered from 0; with --array=1-{count} pass $((SLURM_ARRAY_TASK_ID-1))).")
    return Shard(index, count)
