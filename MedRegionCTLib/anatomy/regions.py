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
from .labels import class_group, class_groups
from .rules import RULE_BOXES, RULES, RuleInput, _bbox

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
Box = tuple[slice, slice, slice]
_UNKNOWN = object()


@dataclass
class RegionMask:
    """One region's mask with where it came from."""

    region: Region
    mask: np.ndarray
    classes: list[str] = field(default_factory=list)  # label-map classes that contributed voxels
    sources: list[str] = field(default_factory=list)  # human-readable provenance ("classes ...", "rule ...")
    _crop: object = field(default=_UNKNOWN, init=False, repr=False, compare=False)

    @property
    def key(self) -> str:
        return self.region.key

    @property
    def empty(self) -> bool:
        return self.crop() is None if self._crop is not _UNKNOWN else not self.mask.any()

    def crop(self) -> Box | None:
        """The bounding box of the mask (slices; None when it is empty).

        :func:`build_regions` knows it as it builds the mask; otherwise it is found on the first call. Either
        way it is kept: change a mask in place only before asking for its box (or build a new RegionMask).
        """
        if self._crop is _UNKNOWN:
            self._crop = _tight(self.mask, None)
        return self._crop


def _union_box(boxes) -> Box | None:
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))


def _intersect(a: Box | None, b: Box | None) -> Box | None:
    if a is None or b is None:
        return None
    out = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b, strict=True))
    return None if any(s.start >= s.stop for s in out) else out


def _within(inner: Box, outer: Box) -> tuple[slice, ...]:
    """``inner`` (inside ``outer``) in the coordinates of ``outer``."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer, strict=True))


def _size(box: Box) -> tuple[int, int, int]:
    return tuple(s.stop - s.start for s in box)


def _tight(sub: np.ndarray, box: Box | None) -> Box | None:
    """The bounding box of the voxels of ``sub`` (which sits at ``box``; None: the whole grid)."""
    found = _bbox(sub, (0, 0, 0))
    if found is None or box is None:
        return found
    return tuple(slice(f.start + b.start, f.stop + b.start) for f, b in zip(found, box, strict=True))


class _Part:
    """A mask known to be all False outside ``box``; ``sub`` is the mask inside it (``box`` None: empty).
    ``tight``: the box is the mask's bounding box (so the mask holds a voxel)."""

    __slots__ = ("box", "sub", "tight")

    def __init__(self, box: Box | None = None, sub: np.ndarray | None = None, tight: bool = False):
        self.box, self.sub, self.tight = box, sub, tight and box is not None

    def any(self) -> bool:
        return self.box is not None and (self.tight or bool(self.sub.any()))

    def bounds(self) -> Box | None:
        """The mask's bounding box (None: empty)."""
        if self.box is None or self.tight:
            return self.box
        return _tight(self.sub, self.box)

    def cut(self, box: Box) -> np.ndarray:
        """The mask inside ``box`` (``sub`` itself when that is the box: read it, do not change it)."""
        if box == self.box:
            return self.sub
        out = np.zeros(_size(box), dtype=bool)
        common = _intersect(self.box, box)
        if common is not None:
            out[_within(common, box)] = self.sub[_within(common, self.box)]
        return out

    def restrict(self, box: Box) -> _Part:
        common = _intersect(self.box, box)
        if common is None:
            return _Part()
        if common == self.box:
            return self
        return _Part(common, self.sub[_within(common, self.box)])


# A per-class pass (compare with one label, add to the mask) costs about a quarter of a table look-up per
# voxel: classes are looked up class by class when their boxes hold fewer voxels than this many times the
# box of them all.
_PER_CLASS_FACTOR = 3.0


class _Evaluator:
    """Evaluates schema terms as :class:`_Part` s: each class mask is computed only inside the box its classes
    occupy (``find_objects``, once), a rule only inside the box :data:`.rules.RULE_BOXES` gives it."""

    def __init__(self, labelmap, volume=None, objects=None):
        self.array = labelmap.array
        self.shape = tuple(int(n) for n in self.array.shape)
        if np.issubdtype(self.array.dtype, np.signedinteger) and self.array.size:
            low = int(self.array.min())
            if low < 0:
                raise InputError(f"the label map holds negative labels (minimum {low}); labels must be >= 0.")
        self.objects = ndimage.find_objects(self.array) if objects is None else objects
        self.present = {labelmap.names.get(i + 1, f"label_{i + 1}"): i + 1
                        for i, sl in enumerate(self.objects) if sl is not None}
        self.axes = patient_axes(labelmap.affine)
        self.hu = None
        self._cache: dict = {}
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

    def class_part(self, names: list[str], within: Box | None = None) -> _Part:
        """The union of the classes ``names`` (present ones), inside ``within`` when given."""
        codes = tuple(self.present[n] for n in names)
        boxes = {c: self.objects[c - 1] for c in codes}
        box = _union_box(boxes.values())
        tight = True
        if within is not None and box is not None:
            common = _intersect(box, within)
            tight, box = common == box, common
        key = (codes, None if box is None else tuple((b.start, b.stop) for b in box))  # slices: unhashable
        if key in self._cache:
            return self._cache[key]
        if box is None:
            part = _Part()
        else:
            labels = self.array[box]
            parts = {c: _intersect(b, box) for c, b in boxes.items()}
            parts = {c: b for c, b in parts.items() if b is not None}
            if len(parts) == 1:
                (code, b), = parts.items()
                sub = np.zeros(_size(box), dtype=bool)
                sub[_within(b, box)] = labels[_within(b, box)] == code
            elif sum(np.prod(_size(b)) for b in parts.values()) < _PER_CLASS_FACTOR * np.prod(_size(box)):
                sub = np.zeros(_size(box), dtype=bool)
                for code, b in parts.items():
                    at = _within(b, box)
                    np.logical_or(sub[at], labels[at] == code, out=sub[at])
            else:
                lut = np.zeros(len(self.objects) + 1, dtype=bool)
                lut[list(parts)] = True
                sub = lut[labels]
            part = _Part(box, sub, tight)
        self._cache[key] = part
        return part

    def part(self, term: dict, within: Box | None = None) -> tuple[_Part, list[str], list[str], bool]:
        """(mask inside ``within`` (everywhere: None), contributing classes, provenance, whether the term's
        mask holds a voxel anywhere) of one term."""
        if "first_of" in term:
            for sub in term["first_of"]:
                part, classes, sources, nonempty = self.part(sub, within)
                if nonempty:
                    return part, classes, sources, True
            return _Part(), [], [], False
        if "rule" in term:
            part, sources = self.rule(term)
            nonempty = part.any()
            return (part if within is None else part.restrict(within)), [], sources, nonempty
        names = self.classes_of(term)
        if not names:
            return _Part(), [], [], False
        return self.class_part(names, within), names, [f"classes {', '.join(names)}"], True

    def rule(self, term: dict) -> tuple[_Part, list[str]]:
        name = term["rule"]
        func, mask_params, _ = RULES[name]
        params = term.get("params", {})
        numbers = {k: float(v) for k, v in params.items() if k not in mask_params}
        detail = ", ".join(f"{k}={v:g}" for k, v in numbers.items())
        sources = [f"rule {name}({detail})" if detail else f"rule {name}"]
        anchors, box_of, later = RULE_BOXES.get(name, ((), None, ()))
        box = tuple(slice(0, n) for n in self.shape)
        if box_of is not None and all(a in params for a in anchors):
            box = box_of({a: self.part(params[a])[0].bounds() for a in anchors}, self.shape, self.axes, **numbers)
            if box is None:
                return _Part(), sources
        else:
            later = ()
        masks, nonempty, deferred = {}, {}, {}
        for k, v in params.items():
            if k in mask_params and k in later:
                # Computed only for the box the rule asks for (in the rule's grid, which starts at box).
                def cut(inner, term=v):
                    inner = tuple(slice(i.start + b.start, i.stop + b.start) for i, b in zip(inner, box, strict=True))
                    return self.part(term, inner)[0].cut(inner)

                deferred[k] = cut
                nonempty[k] = self.part(v, tuple(slice(b.start, b.start + 1) for b in box))[3]
            elif k in mask_params:
                part, _, _, nonempty[k] = self.part(v, box)
                masks[k] = part.cut(box)
        hu = self.hu[box] if self.hu is not None else None
        mask = func(RuleInput(_size(box), self.axes, masks, hu, nonempty, deferred), **numbers)
        return _Part(box, mask), sources


def build_regions(labelmap, schema: RegionSchema | str = "radgenome10", volume=None,
                  objects=None) -> list[RegionMask]:
    """Every region of ``schema`` as a :class:`RegionMask` (empty masks for regions with nothing to show).

    ``volume`` (the CT on the same grid) lets geometric rules drop air voxels; it is optional. ``objects``:
    ``scipy.ndimage.find_objects(labelmap.array)`` when the caller has it already.
    """
    schema = load_schema(schema)
    ev = _Evaluator(labelmap, volume, objects)
    out = []
    for region in schema.regions:
        parts: list[_Part] = []
        classes: list[str] = []
        sources: list[str] = []
        for term in region.include:
            part, c, s, _ = ev.part(term)
            if part.any():
                parts.append(part)
                classes += [n for n in c if n not in classes]
                sources += s
        mask = np.zeros(ev.shape, dtype=bool)
        box = _union_box(p.box for p in parts)
        crop = None
        if box is not None:
            # The region is assembled inside the box of its parts, then placed on the grid once.
            sub = np.zeros(_size(box), dtype=bool)
            for part in parts:
                at = _within(part.box, box)
                np.logical_or(sub[at], part.sub, out=sub[at])
            tight = all(p.tight for p in parts)  # the union of bounding boxes bounds the union
            for term in region.exclude:  # only what lies inside the region's box can remove anything
                part, _, s, _ = ev.part(term, box)
                if part.box is None:
                    continue
                at = _within(part.box, box)
                if (sub[at] & part.sub).any():
                    sub[at] &= ~part.sub
                    sources += [f"minus {x}" for x in s]
                    tight = False
            mask[box] = sub
            crop = box if tight else _tight(sub, box)
        result = RegionMask(region, mask, classes, sources)
        result._crop = crop
        out.append(result)
    return out


def region_masks(labelmap, schema: RegionSchema | str = "radgenome10", volume=None) -> dict[str, np.ndarray]:
    """``{region key: boolean mask}`` for every region of ``schema`` (all-False where nothing was found)."""
    return {r.key: r.mask for r in build_regions(labelmap, schema, volume)}


def classes_to_regions(schema: RegionSchema | str, class_names) -> dict[str, list[str]]:
    """For each class name, the keys of the schema regions it belongs to (``[]``: none)."""
    schema = load_schema(schema)
    return {n: schema.region_of(n) for n in class_names}
