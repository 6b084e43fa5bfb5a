"""MRML conversion: library objects <-> 3D Slicer nodes, with the real MRML classes and no Qt.

Slicer's Python (``import slicer``) inside the application, or the ``slicer-core`` wheel outside it
(``pip install slicer-core``, pulled in by the ``test`` extra), provides the node classes; they are imported
when a function here is first called, never when this package is imported, so the rest of the library stays
usable without them.

- :mod:`.volumes`: ``vtkMRMLScalarVolumeNode`` <-> :class:`~MedRegionCTLib.volume.Volume` with the exact
  IJK-to-RAS matrix (Slicer keeps voxels in K, J, I order; oblique directions and parent transforms included);
  ``vtkMRMLLabelMapVolumeNode`` -> :class:`~MedRegionCTLib.volume.LabelMap`.
- :mod:`.segmentations`: region masks -> ``vtkMRMLSegmentationNode`` with one segment per schema region (name,
  schema colour, terminology entry in Slicer's format, jump point); a segmentation node -> ``LabelMap`` on a CT
  grid with TotalSegmentator class names (for an existing segmentation or the TotalSegmentator extension's).
- :mod:`.tables`: measurements -> ``vtkMRMLTableNode`` (one row per structure, region and lesion; units in the
  column names and as column unit labels) and back to rows.
- :mod:`.texts`: report -> ``vtkMRMLTextNode`` (plain text) plus a JSON text node that restores the Report.
- :mod:`.support`: Qt-free parts of the Slicer module: engine choice with consent, the report panel's
  clickable paragraphs and export, a thread job the GUI polls.
- :mod:`.controller`: the module's state and decisions (which job runs, button states, consent, engine and
  segmentation choices, the last result without full-grid arrays), Qt-free.
- :mod:`.requirements`: which Python packages are missing or too old (standard library only, no numpy).
- :mod:`.totalsegmentator_extension`: driving the TotalSegmentator Slicer extension (its real ``process``
  signature, its log lines as progress, cancel, cleanup of partial nodes).

Names are resolved on first use (PEP 562), so ``requirements`` and ``controller`` import before numpy is
installed into Slicer's Python.

Layer: after ``pipeline`` in DESIGN.md's order (it may import volume, anatomy, segment, measure, report and
pipeline); nothing else in the library imports it, only the Slicer module does.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "mrml_available": "._mrml",
    "require_mrml": "._mrml",
    "REGION_KEY_TAG": ".segmentations",
    "TARGET_TAG": ".segmentations",
    "region_masks_from_segmentation": ".segmentations",
    "regions_to_segmentation": ".segmentations",
    "segment_id_of_region": ".segmentations",
    "segment_tag": ".segmentations",
    "segment_target_ras": ".segmentations",
    "segmentation_to_labelmap": ".segmentations",
    "ThreadJob": ".support",
    "export_report": ".support",
    "load_api_key": ".support",
    "region_key_from_link": ".support",
    "report_panel_html": ".support",
    "reporter_for_engine": ".support",
    "store_api_key": ".support",
    "measurements_to_table": ".tables",
    "rows_to_table": ".tables",
    "table_to_rows": ".tables",
    "REPORT_JSON_ROLE": ".texts",
    "report_from_text_node": ".texts",
    "report_to_text_node": ".texts",
    "labelmap_node_to_labelmap": ".volumes",
    "node_ijk_to_ras": ".volumes",
    "node_to_volume": ".volumes",
    "volume_to_node": ".volumes",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
