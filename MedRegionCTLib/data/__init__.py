"""Data files shipped with the library (label tables, region schemas, thresholds).

Data lives in JSON next to this module, not in code; :func:`load_json` is the one way to read it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources


@cache
def _load_text(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def load_json(name: str):
    """Parse the shipped data file ``name`` (a fresh object on every call, so callers may mutate it)."""
    return json.loads(_load_text(name))


def totalsegmentator_class_indices() -> dict[str, int]:
    """Class name -> label index in this project's label maps (TotalSegmentator `total` plus task blocks)."""
    table = load_json("totalsegmentator_classes.json")
    out: dict[str, int] = {}
    for task in table["tasks"].values():
        for offset, name in enumerate(task["classes"]):
            out.setdefault(name, task["first_index"] + offset)
    return out
