"""The files of one analysed CT: segmentation, measurements, report (JSON, Markdown, HTML, DICOM SR/SEG)."""

from __future__ import annotations

import csv
import io
from functools import partial
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, write_json
from ..errors import InputError
from ..threads import run_all

REPORT_FORMATS = ("json", "md", "html", "dicom")
DEFAULT_FORMATS = ("json", "md", "html")
SEGMENTATION_FILES = ("labels.nii.gz", "labels.json", "regions.json")
REPORT_FILES = {"json": "report.json", "md": "report.md", "html": "report.html"}


def parse_formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip().lower() for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in REPORT_FORMATS]
    if unknown or not formats:
        raise InputError(f"unknown report format(s) {', '.join(unknown) or '(none)'}; choose from "
                         f"{', '.join(REPORT_FORMATS)} separated by commas.")
    return formats


def write_text(path: Path, text: str) -> Path:
    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)

    return atomic_write(path, _write)


def rows_to_csv(rows: list[dict]) -> str:
    """CSV text with the union of the rows' columns, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_segmentation(out: Path, labelmap, regions, schema, method: str, scope: dict | None = None) -> dict:
    """Write labels.nii.gz, labels.json, regions/<key>.nii.gz and regions.json; returns the summary.

    labels.json carries the scan's scope (``scope.scan_scope``): whether it is a chest CT and why, the
    segmenter's notes, the body-axis coverage and the limitations that follow."""
    from ..volume import LabelMap, write_nifti
    from .scope import scan_scope

    scope = scope if scope is not None else scan_scope(labelmap)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # names={} so write_nifti writes no sidecar: labels.json below carries names and the not-found list.
    volumes = [(labelmap.array, out / "labels.nii.gz")]
    meta = labelmap.meta
    labels_info = {
        "labels": {str(k): v for k, v in sorted(labelmap.names.items())},
        "not_found": list(meta.get("not_found", [])),
        "unknown_names": list(meta.get("unknown_names", [])),
        "method": method,
        "names_from": meta.get("names_from", ""),
        "index_table": "MedRegionCTLib/data/totalsegmentator_classes.json (other names: indices from 1000)",
        "chest_ct": scope["chest_ct"],
        "chest_ct_reason": scope["chest_ct_reason"],
        "notes": list(scope["notes"]),
        "coverage": scope["coverage"],
        "limitations": list(scope["limitations"]),
    }
    write_json(out / "labels.json", labels_info)
    voxel_ml = labelmap.voxel_volume_ml
    region_info = {}
    for r in regions:
        entry = {
            "name": r.region.name,
            "file": None,
            "volume_ml": round(float(np.count_nonzero(r.mask)) * voxel_ml, 3),
            "classes": r.classes,
            "sources": r.sources,
            "terminology": r.region.terminology.as_dict(),
            "slicer_terminology": r.region.terminology.slicer_entry(),
            "color": list(r.region.color),
            "expected_in_chest_ct": r.region.expected_in_chest_ct,
        }
        if not r.empty:
            volumes.append((r.mask, out / "regions" / f"{r.key}.nii.gz"))
            entry["file"] = f"regions/{r.key}.nii.gz"
        region_info[r.key] = entry
    # gzip lets go of the interpreter while it compresses: the files are written side by side
    def write(array, path):  # a region's uint8 copy made only when its turn comes
        write_nifti(LabelMap(array.astype(np.uint8) if array.dtype == bool else array, labelmap.affine, {}), path)

    run_all([partial(write, array, path) for array, path in volumes])
    missing = [r.key for r in regions if r.empty and r.region.expected_in_chest_ct]
    summary = {"schema": schema.name, "regions": region_info, "missing_expected_regions": missing}
    write_json(out / "regions.json", summary)
    return {"out": str(out), "labels": labels_info, **summary}


def write_measurements(out: Path, measurements, meta: dict | None = None) -> None:
    """measurements.json (everything) and measurements.csv (one row per structure, region and lesion)."""
    out = Path(out)
    payload = measurements.to_json()
    payload["meta"].update(meta or {})
    write_json(out / "measurements.json", payload)
    write_text(out / "measurements.csv", rows_to_csv(measurements.to_rows()))


def write_report(out: Path, analysis, formats=DEFAULT_FORMATS, dicom_source=None) -> list[Path]:
    """The report in each of ``formats``; ``dicom`` (SR + SEG) needs the input's DICOM series (``dicom_source``)."""
    from ..report import render

    out = Path(out)
    written = []
    report = analysis.report
    if "md" in formats:
        written.append(write_text(out / REPORT_FILES["md"], render.to_markdown(report, analysis.measurements)))
    if "html" in formats:
        html = render.to_html(report, volume=analysis.volume, regions=analysis.regions,
                              measurements=analysis.measurements, labelmap=analysis.labelmap)
        written.append(write_text(out / REPORT_FILES["html"], html))
    if "dicom" in formats:
        if dicom_source is None:
            raise InputError("DICOM SR/SEG output needs a DICOM series as input; drop 'dicom' from the formats "
                             "or analyse the DICOM series itself.")
        datasets = render.read_source_datasets(dicom_source)
        written.append(render.write_dicom_sr(report, analysis.measurements, datasets, out / "report_sr.dcm"))
        written.append(render.write_dicom_seg(analysis.regions, analysis.schema, datasets, out / "regions_seg.dcm",
                                              segmenter=report.provenance.segmenter))
    if "json" in formats:  # last: report.json marks a finished case (batch resumes on it)
        written.append(report.save(out / REPORT_FILES["json"]))
    return written


def write_all(out: Path, analysis, formats=DEFAULT_FORMATS, dicom_source=None, meta: dict | None = None) -> list[Path]:
    """Segmentation, measurements and report of one analysed CT into ``out``."""
    out = Path(out)
    write_segmentation(out, analysis.labelmap, analysis.regions, analysis.schema,
                       analysis.report.provenance.segmenter, scope=analysis.report.provenance.scope or None)
    write_measurements(out, analysis.measurements, meta)
    return write_report(out, analysis, formats, dicom_source=dicom_source)
