"""Layer `anatomy`: label tables (TotalSegmentator names and indices, sides, class groups), region schemas
as data (RadGenome-10, MedRegion-6) and label map -> region masks."""

from .geometry import PatientAxes, patient_axes
from .labels import (
    FIRST_EXTRA_INDEX,
    ClassGroup,
    LabelTable,
    class_group,
    class_groups,
    label_counts,
    normalize_name,
    paint_label,
    present_labels,
    side_of,
)
from .regions import (
    SCHEMAS,
    Region,
    RegionMask,
    RegionSchema,
    Terminology,
    build_regions,
    classes_to_regions,
    load_schema,
    region_masks,
    schema_from_dict,
)

__all__ = [
    "FIRST_EXTRA_INDEX", "SCHEMAS", "ClassGroup", "LabelTable", "PatientAxes", "Region", "RegionMask",
    "RegionSchema", "Terminology", "build_regions", "class_group", "class_groups", "classes_to_regions",
    "label_counts", "load_schema", "normalize_name", "paint_label", "patient_axes", "present_labels",
    "region_masks", "schema_from_dict", "side_of",
]
