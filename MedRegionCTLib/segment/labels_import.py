"""Bring your own segmentation: any label map plus its label table, mapped onto TotalSegmentator names.

Label images: NIfTI, NRRD/MetaImage (through :func:`MedRegionCTLib.volume.read_labelmap`), 3D Slicer
``.seg.nrrd`` (through slicerio, overlapping layers included) and TotalSegmentator outputs (multi-label
NIfTI with embedded names, or a folder of per-class files).

Label tables, first found wins: the ``table`` argument; a sidecar beside the image (``<stem>.json``,
``.csv``, ``.tsv``, ``.ctbl``, ``.txt``); names embedded in the file (TotalSegmentator header extension,
Slicer segment metadata); otherwise, when every label is 1-117, TotalSegmentator ``total`` indices
(said in ``meta["names_from"]``). Table formats: JSON (``{"1": "liver"}``, ``{"liver": 1}``,
``{"labels": {...}}`` as ``medregionct segment`` writes, or a list of ``{"value"|"index": .., "name": ..}``),
CSV/TSV with an index and a name column, and Slicer colour tables (``index name r g b a`` per line).

Names are matched to TotalSegmentator names through the user's ``mapping`` (foreign -> TotalSegmentator
name), then as written, then normalised (lower case, underscores). Names that still match nothing are kept
at fresh indices from 1000 and listed in ``meta["unknown_names"]``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..anatomy import LabelTable, normalize_name, paint_label, present_labels
from ..errors import InputError
from ..progress import ProgressCallback, Steps
from ..volume import LabelMap, Volume
from ..volume.nifti import is_nifti_path, nifti_stem
from .totalsegmentator import (
    _apply_mapping,
    _finish,
    _read_label_array,
    embedded_label_names,
    name_labels,
    native_classes,
    read_totalsegmentator_output,
)

TABLE_SUFFIXES = (".json", ".csv", ".tsv", ".ctbl", ".txt")
_INDEX_COLUMNS = ("index", "value", "label_value", "labelvalue", "label_id", "id", "label", "key")
_JSON_INDEX_KEYS = ("value", "index", "labelValue", "label_value", "id", "key", "label")
_NAME_COLUMNS = ("name", "label_name", "class", "class_name", "structure", "segment", "segment_name",
                 "description", "label")


# --- label-table files ---------------------------------------------------------------------------------
def _int(text) -> int | None:
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return int(value) if value == int(value) else None


def _table_from_json(data, origin: str) -> dict[int, str]:
    if isinstance(data, dict) and isinstance(data.get("labels"), dict | list):
        data = data["labels"]
    if isinstance(data, list):
        if all(isinstance(x, str) for x in data):
            return {i + 1: name for i, name in enumerate(data)}  # a list of names: running ids from 1
        out = {}
        for item in data:
            if not isinstance(item, dict):
                break
            value = next((item[k] for k in _JSON_INDEX_KEYS if k in item and _int(item[k]) is not None), None)
            name = next((item[k] for k in ("name", "label_name", "class", "structure") if k in item), None)
            if value is None or name is None:
                break
            out[_int(value)] = str(name)
        else:
            return out
    elif isinstance(data, dict) and data:
        if all(_int(k) is not None for k in data):
            return {_int(k): str(v["name"] if isinstance(v, dict) else v) for k, v in data.items()}
        if all(_int(v) is not None for v in data.values()):
            return {_int(v): str(k) for k, v in data.items()}
    raise InputError(f"{origin} is not a label table this program reads; use {{\"1\": \"liver\", ...}}, "
                     "{\"liver\": 1, ...} or [{\"value\": 1, \"name\": \"liver\"}, ...].")


def _table_from_csv(text: str, origin: str) -> dict[int, str]:
    sample = text[:4096]
    delimiter = max(("\t", ";", ","), key=lambda d: (sample.count(d), d == ","))
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if r and any(c.strip() for c in r)]
    rows = [r for r in rows if not r[0].lstrip().startswith("#")]
    if not rows:
        raise InputError(f"{origin} is empty; give a table with an index and a name column.")
    index_col, name_col = 0, 1
    if _int(rows[0][0]) is None:  # a header row: find the columns by name
        header = [h.strip().lower() for h in rows[0]]
        rows = rows[1:]
        def integer_column(c):
            col = header.index(c)
            return all(_int(r[col]) is not None for r in rows if len(r) > col)

        index_col = next((header.index(c) for c in _INDEX_COLUMNS if c in header and integer_column(c)), None)
        name_col = next((header.index(c) for c in _NAME_COLUMNS
                         if c in header and header.index(c) != index_col), None)
        if index_col is None or name_col is None:
            raise InputError(f"{origin}: cannot tell the index and name columns from the header {header}; "
                             "name them 'index' and 'name'.")
    out = {}
    for row in rows:
        if len(row) <= max(index_col, name_col) or _int(row[index_col]) is None:
            raise InputError(f"{origin}: row {row} has no integer index in column {index_col + 1}; fix the "
                             "table.")
        out[_int(row[index_col])] = row[name_col].strip()
    return out


def _table_from_color_table(text: str, origin: str) -> dict[int, str]:
    """Slicer colour table: ``index name R G B A`` per line (names may hold spaces), ``#`` comments."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if _int(parts[0]) is None or len(parts) < 2:
            raise InputError(f"{origin}: line {line!r} is not 'index name R G B A'; fix the colour table.")
        # Colour components are the trailing integers; everything between index and colour is the name.
        end = len(parts)
        while end > 2 and _int(parts[end - 1]) is not None and len(parts) - end < 4:
            end -= 1
        out[_int(parts[0])] = " ".join(parts[1:end])
    if not out:
        raise InputError(f"{origin} holds no colour entries; give lines like '1 liver 221 130 101 255'.")
    return out


def read_label_table(source) -> dict[int, str]:
    """``{label value: name}`` from a label-table file (JSON, CSV/TSV, Slicer .ctbl/.txt) or a mapping."""
    if isinstance(source, Mapping):
        return _table_from_json(dict(source), "the label table")
    if isinstance(source, list):
        return _table_from_json(source, "the label table")
    path = Path(source).expanduser()
    if not path.is_file():
        raise InputError(f"label table {path} does not exist; give a JSON, CSV or Slicer colour-table file.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"label table {path} could not be read as text ({error}); give a text "
                         "table.") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as error:
            raise InputError(f"label table {path} is not valid JSON ({error}); fix the file.") from None
        table = _table_from_json(data, str(path))
    elif suffix in (".csv", ".tsv"):
        table = _table_from_csv(text, str(path))
    else:
        table = _table_from_color_table(text, str(path))
    table.pop(0, None)  # 0 is background whatever a table calls it
    return table


def read_name_mapping(source) -> dict[str, str]:
    """Foreign name -> TotalSegmentator name, from a dict, a JSON object file or a two-column CSV."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return {str(k): str(v) for k, v in source.items()}
    path = Path(source).expanduser()
    if not path.is_file():
        raise InputError(f"name mapping {path} does not exist; give a JSON object {{\"foreign name\": "
                         "\"totalsegmentator_name\"}.")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as error:
            raise InputError(f"name mapping {path} is not valid JSON ({error}); fix the file.") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise InputError(f"name mapping {path} must be a JSON object of names, e.g. "
                             "{\"Liver\": \"liver\"}.")
        return {str(k): v for k, v in data.items()}
    rows = [r for r in csv.reader(io.StringIO(text)) if len(r) >= 2 and not r[0].startswith("#")]
    return {r[0].strip(): r[1].strip() for r in rows}


def _sidecar_table(path: Path) -> tuple[dict[int, str], str] | None:
    stem = nifti_stem(path) if is_nifti_path(path) else path.name.split(".")[0]
    for suffix in TABLE_SUFFIXES:
        candidate = path.with_name(stem + suffix)
        if candidate.is_file() and candidate != path:
            return read_label_table(candidate), f"sidecar {candidate.name}"
    return None


# --- label images --------------------------------------------------------------------------------------
def _is_seg_nrrd(path: Path) -> bool:
    """A 3D Slicer segmentation: named .seg.nrrd, or any NRRD whose header lists Slicer segments."""
    name = path.name.lower()
    if name.endswith(".seg.nrrd"):
        return True
    if not name.endswith((".nrrd", ".nhdr")):
        return False
    try:
        import nrrd  # pynrrd, which slicerio brings

        header = nrrd.read_header(str(path))
    except Exception:  # not readable as NRRD here: the label reader reports it with its own message
        return False
    return any(key.startswith("Segment") and key.endswith("_Name") for key in header)


def _read_seg_nrrd(path: Path, mapping, table: LabelTable) -> LabelMap:
    import slicerio

    try:
        seg = slicerio.read_segmentation(str(path))
    except Exception as error:  # slicerio raises IOError/ValueError/nrrd errors for bad files
        raise InputError(f"{path.name} could not be read as a Slicer segmentation ({error}); export it again "
                         "from Slicer as .seg.nrrd.") from None
    voxels = np.asarray(seg["voxels"])
    segments = seg.get("segments", [])
    if not segments:
        raise InputError(f"{path.name} holds no segments; save a segmentation with at least one segment.")
    names = [_apply_mapping(s.get("name") or f"segment_{s['labelValue']}", mapping, table) for s in segments]
    order = sorted(range(len(segments)), key=lambda i: (table.get_index(names[i]) is None,
                                                         table.get_index(names[i]) or 0, names[i]))
    table, added = table.with_names(names)
    array = np.zeros(voxels.shape[-3:], dtype=np.uint16 if max(table.names) < 65536 else np.uint32)
    found, lost = set(), {}
    for i in order:
        s = segments[i]
        layer = voxels[int(s.get("layer", 0))] if voxels.ndim == 4 else voxels
        mask = layer == int(s["labelValue"])
        if mask.any():
            found.add(names[i])
            n = paint_label(array, mask, table.index(names[i]))
            if n:
                lost[names[i]] = n
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(seg["ijkToLPS"], dtype=np.float64)  # LPS -> RAS
    meta = {"source": str(path), "reader": "slicer seg.nrrd", "names_from": "segment names",
            "not_found": sorted(set(names) - found), "unknown_names": [n for n in added if n in found],
            "overlap_voxels_kept_by_earlier_class": lost,
            "renamed": {s.get("name"): n for s, n in zip(segments, names, strict=True) if s.get("name") != n}}
    return _finish(array, affine, table, meta)


def import_labelmap(path, table=None, mapping=None) -> LabelMap:
    """Read a label image and its label table as a :class:`LabelMap` with TotalSegmentator names and indices.

    ``table``: a label-table file or ``{value: name}`` (else sidecar / embedded names / TotalSegmentator
    ``total``). ``mapping``: foreign name -> TotalSegmentator name (dict or JSON/CSV file).
    """
    path = Path(path).expanduser()
    mapping = read_name_mapping(mapping)
    ts_table = LabelTable.default()
    if not path.exists():
        raise InputError(f"label file {path} does not exist; check the path after 'labels:'.")
    if path.is_dir():
        return read_totalsegmentator_output(path, mapping=mapping)
    if _is_seg_nrrd(path) and table is None:
        return _read_seg_nrrd(path, mapping, ts_table)
    value_names: dict[int, str] | None = None
    names_from = ""
    if table is not None:
        value_names, names_from = read_label_table(table), "label table given"
    if value_names is None:
        sidecar = _sidecar_table(path)
        if sidecar:
            value_names, names_from = sidecar
    if value_names is None and is_nifti_path(path):
        embedded = embedded_label_names(path)
        if embedded:
            value_names, names_from = embedded, "nifti header extension"
    raw = _read_label_array(path)
    present = present_labels(raw.array)
    if value_names is None:
        if present and max(present) > 117:
            raise InputError(f"{path.name} has labels up to {max(present)} and no label table; give one "
                             "(--label-table FILE: JSON, CSV or Slicer .ctbl) so its labels can be named.")
        value_names, names_from = native_classes("total"), "assumed TotalSegmentator 'total' indices"
    return name_labels(raw, value_names, mapping, ts_table, source=str(path), reader="label image",
                       names_from=names_from)


def align_to_volume(labelmap: LabelMap, volume: Volume) -> LabelMap:
    """``labelmap`` on ``volume``'s grid: as is when the grids match, else resampled (nearest neighbour).

    Raises :class:`InputError` when the label map does not overlap the CT at all.
    """
    if labelmap.shape == volume.shape and np.allclose(labelmap.affine, volume.affine, atol=1e-3):
        return LabelMap(labelmap.array, volume.affine.copy(), labelmap.names, labelmap.meta)
    from ..volume import resample_like

    moved = resample_like(labelmap, volume)
    if labelmap.array.any() and not moved.array.any():
        raise InputError(f"the label map ({labelmap.meta.get('source', 'labels')}) does not overlap the CT; "
                         "give the labels of this CT.")
    meta = {**labelmap.meta, "resampled_to_ct_grid": True}
    names = {i: labelmap.names[i] for i in present_labels(moved.array) if i in labelmap.names}
    lost = sorted(set(labelmap.names.values()) - set(names.values()))
    if lost:
        meta["not_found"] = sorted(set(meta.get("not_found", [])) | set(lost))
    return LabelMap(moved.array, volume.affine.copy(), names, meta)


class LabelFileSegmenter:
    """A "segmenter" that imports an existing label map of the CT (``--method labels:FILE``)."""

    name = "labels"

    def __init__(self, path, table=None, mapping=None):
        self.path = Path(path).expanduser()
        self.table = table
        self.mapping = mapping
        if not self.path.exists():
            raise InputError(f"label file {self.path} does not exist; check the path after 'labels:'.")

    def segment(self, volume: Volume, progress: ProgressCallback | None = None, cancel=None) -> LabelMap:
        steps = Steps(progress, total=2, cancel=cancel, what="label import")
        steps.report(0.0, f"reading {self.path.name}")
        labelmap = import_labelmap(self.path, table=self.table, mapping=self.mapping)
        steps.advance("aligning to the CT grid")
        labelmap = align_to_volume(labelmap, volume)
        labelmap.meta["segmenter"] = self.name
        steps.advance("done")
        return labelmap


__all__ = ["LabelFileSegmenter", "align_to_volume", "import_labelmap", "normalize_name", "read_label_table",
           "read_name_mapping"]
