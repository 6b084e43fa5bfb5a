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

Layer: after ``pipeline`` in DESIGN.md's order (it may import volume, anatomy, segment, measure, report and
pipeline); nothing else in the library imports it, only the Slicer module does.
"""

from ._mrml import mrml_available, require_mrml
from .segmentations import (
    REGION_KEY_TAG,
    TARGET_TAG,
    regions_to_segmentation,
    segment_id_of_region,
    segment_tag,
    segment_target_ras,
    segmentation_to_labelmap,
)
from .support import (
    ThreadJob,
    export_report,
    load_api_key,
    region_key_from_link,
    report_panel_html,
    reporter_for_engine,
    store_api_key,
)
from .tables import measurements_to_table, rows_to_table, table_to_rows
from .texts import REPORT_JSON_ROLE, report_from_text_node, report_to_text_node
from .volumes import labelmap_node_to_labelmap, node_ijk_to_ras, node_to_volume, volume_to_node

__all__ = [
    "REGION_KEY_TAG", "REPORT_JSON_ROLE", "TARGET_TAG", "ThreadJob", "export_report", "labelmap_node_to_labelmap",
    "load_api_key", "measurements_to_table", "mrml_available", "node_ijk_to_ras", "node_to_volume",
    "region_key_from_link", "regions_to_segmentation", "report_from_text_node", "report_panel_html",
    "report_to_text_node", "reporter_for_engine", "require_mrml", "rows_to_table", "segment_id_of_region",
    "segment_tag", "segment_target_ras", "segmentation_to_labelmap", "store_api_key", "table_to_rows",
    "volume_to_node"
]
