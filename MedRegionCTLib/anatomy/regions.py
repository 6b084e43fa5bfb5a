"""Region schemas (data) and label map -> one boolean mask per region.

A schema is a JSON file (``data/regions_radgenome10.json``, ``data/regions_medregion6.json`` or the user's
own) listing regions. Each region says which label-map classes make it up with *terms*:

- ``{"classes": [...], "groups": [...]}``: the union of those classes (groups from ``anatomy_groups.json``);
- ``{"rule": "shell_around" | "between_lungs", "params": {...}}``: a geometric rule (:mod:`.rules`) whose
  mask parameters are terms themselves and whose distances are in millimetres;
- ``{"first_of": [term, ...]}``: the first term whose mask is not empty (a class, then its fallback).

``include`` terms are united, ``exclude`` terms removed. Each region also carries a SNOMED CT terminology
entry, a display colour and whether every chest CT is expected to show it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..data import load_json
from ..errors import InputError
from .geometry import patient_axes
from .labels import class_group, class_groups, present_labels
from .rules import RULES, RuleInput

SCHEMAS = {"radgenome10": "regions_radgenome10.json", "medregion6": "regions_medregion6.json"}
_SLICER_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
_ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
_CATEGORY = ("SCT", "123037004", "Anatomical Structure")


@dataclass(frozen=True)
class Terminology:
    """A coded concept (DICOM style): scheme designator, code value, code meaning."""

    code: str
    meaning: str
    scheme: str = "SCT"

    def slicer_entry(self) -> str:
        """The terminology string Slicer stores in a segment's ``TerminologyEntry`` tag."""
        category = "^".join(_CATEGORY)
        return (f"{_SLICER_CONTEXT}~{category}~{self.scheme}^{self.code}^{self.meaning}~^^"
                f"~{_ANATOMIC_CONTEXT}~^^~^^")

    def as_dict(self) -> dict:
        return {"code": self.code, "meaning": self.meaning, "scheme": self.scheme,
                "category": {"scheme": _CATEGORY[0], "code": _CATEGORY[1], "meaning": _CATEGORY[2]}}


@dataclass(frozen=True)
class Region:
    key: str
    name: str
    include: tuple[dict, ...]
    exclude: tuple[dict, ...]
    terminology: Terminology
    color: tuple[int, int, int]
    expected_in_chest_ct: bool

    def class_names(self) -> set[str]:
        """Every class name the region's terms mention (groups expanded; rules' mask parameters too)."""
        names: set[str] = set()
        for term in self.include + self.exclude:
            names |= _term_names(term)
        return names


@dataclass(frozen=True)
class RegionSchema:
    name: str
    title: str
    regions: tuple[Region, ...]
    source: str = ""
    notes: tuple[str, ...] = ()

    @property
    def keys(self) -> list[str]:
        return [r.key for r in self.regions]

    def __getitem__(self, key: str) -> Region:
        for region in self.regions:
            if region.key == key:
                return region
        raise KeyError(key)

    def region_of(self, class_name: str) -> list[str]:
        """Keys of the regions whose terms name ``class_name`` (directly, through a group or a rule)."""
        return [r.key for r in self.regions if _mentions(r, class_name)]


def _mentions(region: Region, class_name: str) -> bool:
    return (any(_term_mentions(t, class_name) for t in region.include)
            and not any(_term_mentions(t, class_name) for t in region.exclude))


def _term_mentions(term: dict, class_name: str) -> bool:
    if "first_of" in term:
        return any(_term_mentions(t, class_name) for t in term["first_of"])
    if "rule" in term:
        return False  # a rule's inputs (lungs, bones) are not part of the region itself
    if class_name in term.get("classes", ()):
        return True
    return any(class_name in class_group(g) for g in term.get("groups", ()))


def _term_names(term: dict) -> set[str]:
    if "first_of" in term:
        return set().union(*(_term_names(t) for t in term["first_of"]))
    if "rule" in term:
        return set().union(*(_term_names(t) for t in term.get("params", {}).values() if isinstance(t, dict)))
    names = set(term.get("classes", ()))
    for g in term.get("groups", ()):
        names |= class_group(g).classes
    return names


# --- loading and validation ----------------------------------------------------------------------------
def _check_term(term, where: str) -> None:
    if not isinstance(term, dict):
        raise InputError(f"{where}: a term must be an object like {{\"classes\": [...]}}; got {term!r}.")
    if "first_of" in term:
        if not isinstance(term["first_of"], list) or not term["first_of"]:
            raise InputError(f"{where}: 'first_of' needs a non-empty list of terms.")
        for i, sub in enumerate(term["first_of"]):
            _check_term(sub, f"{where}.first_of[{i}]")
        return
    if "rule" in term:
        rule = term["rule"]
        if rule not in RULES:
            raise InputError(f"{where}: unknown rule {rule!r}; known rules: {', '.join(sorted(RULES))}.")
        _, mask_params, number_params = RULES[rule]
        for name, value in term.get("params", {}).items():
            if name in mask_params:
                _check_term(value, f"{where}.params.{name}")
            elif name in number_params:
                if not isinstance(value, int | float):
                    raise InputError(f"{where}: parameter {name!r} of rule {rule!r} must be a number.")
            else:
                raise InputError(f"{where}: rule {rule!r} has no parameter {name!r}; it takes "
                                 f"{', '.join(mask_params + number_params)}.")
        return
    unknown_keys = set(term) - {"classes", "groups"}
    if unknown_keys or not term:
        raise InputError(f"{where}: a term holds 'classes'/'groups', 'rule' or 'first_of'; got keys "
                         f"{sorted(term)}.")
    known = class_groups()
    for g in term.get("groups", ()):
        if g not in known:
            raise InputError(f"{where}: unknown class group {g!r}; known groups: {', '.join(sorted(known))}.")


def schema_from_dict(data: dict, origin: str = "the schema") -> RegionSchema:
    try:
        regions = []
        seen = set()
        for spec in data["regions"]:
            key = spec["key"]
            if key in seen:
                raise InputError(f"{origin}: region key {key!r} appears twice; keys must be unique.")
            seen.add(key)
            where = f"{origin}, region {key!r}"
            include = tuple(spec["include"])
            exclude = tuple(spec.get("exclude", ()))
            for j, term in enumerate(include):
                _check_term(term, f"{where}.include[{j}]")
            for j, term in enumerate(exclude):
                _check_term(term, f"{where}.exclude[{j}]")
            color = tuple(int(c) for c in spec["color"])
            if len(color) != 3 or not all(0 <= c <= 255 for c in color):
                raise InputError(f"{where}: color must be three integers 0-255, got {spec['color']!r}.")
            term_spec = spec["terminology"]
            regions.append(Region(
                key=key, name=spec.get("name", key), include=include, exclude=exclude,
                terminology=Terminology(str(term_spec["code"]), term_spec["meaning"],
                                        term_spec.get("scheme", "SCT")),
                color=color, expected_in_chest_ct=bool(spec.get("expected_in_chest_ct", False))))
        return RegionSchema(name=data["name"], title=data.get("title", data["name"]), regions=tuple(regions),
                            source=data.get("source", ""), notes=tuple(data.get("notes", ())))
    except KeyError as missing:
        raise InputError(f"{origin} lacks the field {missing}; see "
                         "MedRegionCTLib/data/regions_radgenome10.json for the format.") from None


def load_schema(name_or_path: str | Path = "radgenome10") -> RegionSchema:
    """A shipped schema by name (``radgenome10``, ``medregion6``) or a schema JSON file by path."""
    if isinstance(name_or_path, RegionSchema):
        return name_or_path
    key = str(name_or_path).lower().replace("-", "").replace("_", "")
    if key in SCHEMAS:
        return schema_from_dict(load_json(SCHEMAS[key]), SCHEMAS[key])
    path = Path(name_or_path)
    if not path.is_file():
        raise InputError(f"unknown region schema {str(name_or_path)!r}; use {' or '.join(SCHEMAS)}, or the "
                         "path of a schema JSON file.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read region schema {path}: {error}; fix the JSON file.") from None
    return schema_from_dict(data, str(path))


# --- evaluation ----------------------------------------------------------------------------------------
@dataclass
class RegionMask:
    """One region's mask with where it came from."""

    region: Region
    mask: np.ndarray
    classes: list[str] = field(default_factory=list)  # label-map classes that contributed voxels
    sources: list[str] = field(default_factory=list)  # human-readable provenance ("classes ...", "rule ...")

    @property
    def key(self) -> str:
        return self.region.key

    @property
    def empty(self) -> bool:
        return not self.mask.any()


class _Evaluator:
    def __init__(self, labelmap, volume=None):
        self.labelmap = labelmap
        self.array = labelmap.array
        present = present_labels(self.array)
        self.present = {labelmap.names.get(i, f"label_{i}"): i for i in present}
        # Class masks are lookups in a table indexed by label. An 8-bit label array makes each lookup pass
        # several times faster than a 16-bit one, so larger labels are recoded once to 1..n when n < 256.
        if self.array.dtype == np.uint8 or not present:
            self.codes, self.code_of = self.array, {i: i for i in present}
        elif len(present) < 256:
            recode = np.zeros(max(present) + 1, dtype=np.uint8)
            recode[present] = np.arange(1, len(present) + 1)
            self.codes, self.code_of = recode[self.array], {i: c + 1 for c, i in enumerate(present)}
        else:
            self.codes, self.code_of = self.array, {i: i for i in present}
        self.axes = patient_axes(labelmap.affine)
        self._objects = None  # bounding box of every code, found on first use
        self.hu = None
        if volume is not None:
            if tuple(volume.array.shape) != tuple(self.array.shape) or not np.allclose(
                    volume.affine, labelmap.affine, atol=1e-3):
                raise InputError("the CT and the label map are on different grids; give the label map on the "
                                 "CT's grid (segment this CT, or resample the labels onto it).")
            self.hu = volume.array

    def classes_of(self, term: dict) -> list[str]:
        wanted = set(term.get("classes", ()))
        groups = [class_group(g) for g in term.get("groups", ())]
        return [n for n in self.present if n in wanted or any(n in g for g in groups)]

    def class_mask(self, names: list[str]) -> np.ndarray:
        codes = [self.code_of[self.present[n]] for n in names]
        lut = np.zeros(int(max(codes)) + 1 if self.codes.dtype != np.uint8 else 256, dtype=bool)
        lut[codes] = True
        # Look up only inside the union of the classes' bounding boxes: nothing outside can be True.
        if self._objects is None:
            self._objects = ndimage.find_objects(self.codes)
        boxes = [self._objects[c - 1] for c in codes if c - 1 < len(self._objects) and self._objects[c - 1]]
        out = np.zeros(self.codes.shape, dtype=bool)
        if boxes:
            box = tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))
            out[box] = lut[self.codes[box]]
        return out

    def term(self, term: dict) -> tuple[np.ndarray, list[str], list[str]]:
        """(mask, contributing classes, provenance) of one term."""
        if "first_of" in term:
            for sub in term["first_of"]:
                mask, classes, sources = self.term(sub)
                if mask.any():
                    return mask, classes, sources
            return np.zeros(self.array.shape, dtype=bool), [], []
        if "rule" in term:
            func, mask_params, _ = RULES[term["rule"]]
            masks, numbers, used = {}, {}, []
            for name, value in term.get("params", {}).items():
                if name in mask_params:
                    masks[name], classes, _ = self.term(value)
                    used += classes
                else:
                    numbers[name] = float(value)
            mask = func(RuleInput(self.array.shape, self.axes, masks, self.hu), **numbers)
            detail = ", ".join(f"{k}={v:g}" for k, v in numbers.items())
            return mask, [], [f"rule {term['rule']}({detail})" if detail else f"rule {term['rule']}"]
        names = self.classes_of(term)
        if not names:
            return np.zeros(self.array.shape, dtype=bool), [], []
        return self.class_mask(names), names, [f"classes {', '.join(names)}"]


def build_regions(labelmap, schema: RegionSchema | str = "radgenome10", volume=None) -> list[RegionMask]:
    """Every region of ``schema`` as a :class:`RegionMask` (empty masks for regions with nothing to show).

    ``volume`` (the CT on the same grid) lets geometric rules drop air voxels; it is optional.
    """
    schema = load_schema(schema)
    ev = _Evaluator(labelmap, volume)
    out = []
    for region in schema.regions:
        mask = np.zeros(labelmap.array.shape, dtype=bool)
        classes: list[str] = []
        sources: list[str] = []
        for term in region.include:
            m, c, s = ev.term(term)
            if m.any():
                mask |= m
                classes += [n for n in c if n not in classes]
                sources += s
        for term in region.exclude:
            m, _, s = ev.term(term)
            if m.any() and (mask & m).any():
                mask &= ~m
                sources += [f"minus {x}" for x in s]
        out.append(RegionMask(region, mask, classes, sources))
    return out


def region_masks(labelmap, schema: RegionSchema | str = "radgenome10", volume=None) -> dict[str, np.ndarray]:
    """``{region key: boolean mask}`` for every region of ``schema`` (all-False where nothing was found)."""
    return {r.key: r.mask for r in build_regions(labelmap, schema, volume)}


def classes_to_regions(schema: RegionSchema | str, class_names) -> dict[str, list[str]]:
    """For each class name, the keys of the schema regions it belongs to (``[]``: none)."""
    schema = load_schema(schema)
    return {n: schema.region_of(n) for n in class_names}
