"""The label table: TotalSegmentator class names <-> this project's label indices, sides and class groups.

Indices come from ``data/totalsegmentator_classes.json`` (``total`` 1-117, other TotalSegmentator tasks in
blocks from 200). Names no table knows (a foreign label map, a task the table lacks) get fresh indices from
:data:`FIRST_EXTRA_INDEX` up, so one label map can still hold them; :meth:`LabelTable.with_names` says which.
Groups and sides live in ``data/anatomy_groups.json``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..data import load_json
from ..errors import InputError

FIRST_EXTRA_INDEX = 1000
SIDES = ("left", "right", "midline", "bilateral")


@dataclass(frozen=True)
class ClassGroup:
    """A named set of class names: explicit names, whole-name regular expressions and nested groups."""

    name: str
    classes: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern, ...] = ()

    def __contains__(self, class_name: str) -> bool:
        return class_name in self.classes or any(p.fullmatch(class_name) for p in self.patterns)

    def select(self, names: Iterable[str]) -> list[str]:
        """The members of ``names`` that belong to this group, in the order given."""
        return [n for n in names if n in self]


def _load_groups() -> tuple[dict[str, ClassGroup], dict[str, str]]:
    data = load_json("anatomy_groups.json")
    raw = data["groups"]
    resolved: dict[str, ClassGroup] = {}

    def resolve(name: str, trail: tuple[str, ...]) -> ClassGroup:
        if name in resolved:
            return resolved[name]
        if name not in raw:
            raise InputError(f"anatomy group {name!r} is not defined in anatomy_groups.json.")
        if name in trail:
            raise InputError(f"anatomy group {name!r} contains itself ({' -> '.join(trail + (name,))}).")
        spec = raw[name]
        classes = set(spec.get("classes", ()))
        patterns = [re.compile(p) for p in spec.get("patterns", ())]
        for sub in spec.get("groups", ()):
            inner = resolve(sub, trail + (name,))
            classes |= inner.classes
            patterns.extend(inner.patterns)
        group = ClassGroup(name, frozenset(classes), tuple(patterns))
        resolved[name] = group
        return group

    for group_name in raw:
        resolve(group_name, ())
    side_overrides = {n: side for side, names in data["sides"].items() for n in names}
    return resolved, side_overrides


@lru_cache(maxsize=1)
def _groups_and_sides():
    return _load_groups()


def class_groups() -> dict[str, ClassGroup]:
    """Every named class group (``lung_lobes``, ``ribs``, ``vertebrae_thoracic``...)."""
    return dict(_groups_and_sides()[0])


def class_group(name: str) -> ClassGroup:
    groups = _groups_and_sides()[0]
    if name not in groups:
        raise InputError(f"unknown class group {name!r}; known groups: {', '.join(sorted(groups))}.")
    return groups[name]


def side_of(class_name: str) -> str:
    """``"left"``, ``"right"``, ``"midline"`` or ``"bilateral"`` (a class spanning both sides)."""
    override = _groups_and_sides()[1].get(class_name)
    if override:
        return override
    words = set(re.split(r"[_\s\-]+", class_name.lower()))
    if "left" in words and "right" not in words:
        return "left"
    if "right" in words and "left" not in words:
        return "right"
    return "midline"


@dataclass
class LabelTable:
    """Label index <-> class name. ``LabelTable.default()`` is the TotalSegmentator table of this project."""

    names: dict[int, str] = field(default_factory=dict)
    tasks: dict[str, str] = field(default_factory=dict)  # class name -> TotalSegmentator task

    def __post_init__(self):
        self.names = {int(k): str(v) for k, v in self.names.items()}
        self._index = {v: k for k, v in self.names.items()}
        if len(self._index) != len(self.names):
            duplicated = sorted({v for v in self.names.values() if list(self.names.values()).count(v) > 1})
            raise InputError(f"the label table names {', '.join(duplicated)} more than once; give every "
                             "class one index.")

    @classmethod
    def default(cls) -> LabelTable:
        return _default_table()

    # --- lookups -------------------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self._index

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        if name not in self._index:
            raise InputError(f"{name!r} is not a known class name; use a TotalSegmentator class name "
                             "(see MedRegionCTLib/data/totalsegmentator_classes.json).")
        return self._index[name]

    def get_index(self, name: str) -> int | None:
        return self._index.get(name)

    def name(self, index: int) -> str:
        return self.names.get(int(index), f"label_{int(index)}")

    def task_of(self, name: str) -> str | None:
        return self.tasks.get(name)

    @staticmethod
    def side(name: str) -> str:
        return side_of(name)

    @staticmethod
    def group(name: str) -> ClassGroup:
        return class_group(name)

    def members(self, group: str) -> list[str]:
        """Table classes in ``group``, in index order."""
        g = class_group(group)
        return [n for _, n in sorted(self.names.items()) if n in g]

    def groups_of(self, name: str) -> list[str]:
        return sorted(g.name for g in class_groups().values() if name in g)

    # --- building label maps ------------------------------------------------------------------------
    def with_names(self, names: Iterable[str]) -> tuple[LabelTable, list[str]]:
        """This table plus ``names`` it lacks, at fresh indices from :data:`FIRST_EXTRA_INDEX`.

        Returns the extended table and the names that were added (in the order given).
        """
        added = []
        new = dict(self.names)
        next_index = max([FIRST_EXTRA_INDEX - 1, *new]) + 1
        for n in names:
            if n not in self._index and n not in added:
                new[next_index] = n
                added.append(n)
                next_index += 1
        if not added:
            return self, []
        return LabelTable(new, dict(self.tasks)), added

    def relabel(self, array: np.ndarray, value_names: Mapping[int, str]) -> np.ndarray:
        """Map an array labelled ``value -> name`` onto this table's indices (names must be in the table).

        Values not in ``value_names`` become 0 (background).
        """
        values = [int(v) for v in value_names if int(v) > 0]
        top = max(values, default=0)
        if array.size and int(array.max()) > top:
            top = int(array.max())
        targets = [self.index(value_names[v]) for v in values]
        dtype = np.uint16 if max(targets, default=0) <= np.iinfo(np.uint16).max else np.uint32
        lut = np.zeros(top + 1, dtype=dtype)
        for value, target in zip(values, targets, strict=True):
            lut[value] = target
        if array.size and int(array.min()) < 0:
            raise InputError(f"the label map holds negative labels (minimum {int(array.min())}); labels "
                             "must be >= 0.")
        return lut[array]

    def subset(self, indices: Iterable[int]) -> dict[int, str]:
        """``{index: name}`` of the given indices (the table part a label map needs)."""
        return {int(i): self.name(i) for i in sorted({int(i) for i in indices}) if int(i) != 0}


@lru_cache(maxsize=1)
def _default_table() -> LabelTable:
    table = load_json("totalsegmentator_classes.json")
    names: dict[int, str] = {}
    tasks: dict[str, str] = {}
    for task, spec in table["tasks"].items():
        for offset, class_name in enumerate(spec["classes"]):
            if class_name in tasks:  # a class two tasks produce keeps its first (total) index
                continue
            names[spec["first_index"] + offset] = class_name
            tasks[class_name] = task
    return LabelTable(names, tasks)


def label_counts(array: np.ndarray) -> np.ndarray:
    """Voxel count of every label value 0..max (index = label). Labels must be >= 0."""
    if array.size == 0:
        return np.zeros(1, dtype=np.int64)
    low, top = int(array.min()), int(array.max())
    if low < 0:
        raise InputError(f"the label map holds negative labels (minimum {low}); labels must be >= 0.")
    # Integer bin edges make numpy sort-and-count in blocks: several times faster than bincount on a
    # 16-bit array, whose indices bincount would first widen to 64 bits.
    counts, _ = np.histogram(array, bins=np.arange(top + 2))
    return counts


def present_labels(array: np.ndarray) -> list[int]:
    """The non-zero label values that occur in ``array``."""
    return [int(v) for v in np.flatnonzero(label_counts(array)) if v]


def paint_label(array: np.ndarray, mask: np.ndarray, index: int, overwrite: bool = False) -> int:
    """Write ``index`` into ``array`` where ``mask`` is set; returns how many mask voxels it could not take.

    Without ``overwrite`` a voxel keeps the label it already has (first come, first kept), so one label map
    can hold overlapping masks in a stated order of precedence.
    """
    if overwrite:
        array[mask] = index
        return 0
    free = mask & (array == 0)
    array[free] = index
    return int(np.count_nonzero(mask)) - int(np.count_nonzero(free))


def normalize_name(name: str) -> str:
    """A foreign label name in TotalSegmentator spelling: lower case, words joined by underscores."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())
