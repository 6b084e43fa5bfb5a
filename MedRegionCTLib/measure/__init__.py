"""Layer `measure`: organ and region attributes (volume, HU statistics, extents, centroid, Feret diameter,
axial axes, position in patient terms, lobe), derived clinical measures with their literature thresholds,
lesion candidates from image intensity, and attribute -> sentence in MedRegion-CT's style."""

from .clinical import judge, nodule_category, thresholds
from .intensity import PERCENTILES, hu_statistics
from .lesions import Lesion, find_nodules, find_pleural_effusions
from .measurements import Measurements, measure
from .sentences import clinical_sentences, lesion_sentence
from .shape import feret_diameter, shape_attributes

__all__ = ["PERCENTILES", "Lesion", "Measurements", "clinical_sentences", "feret_diameter", "find_nodules",
           "find_pleural_effusions", "hu_statistics", "judge", "lesion_sentence", "measure", "nodule_category",
           "shape_attributes", "thresholds"]
