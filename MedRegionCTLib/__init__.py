"""MedRegionCTLib: region-by-region chest CT reports (the library under the MedRegionCT Slicer extension).

Importable without Slicer, Qt or torch; only the model, train and server layers need torch.
"""

__version__ = "0.1.0"
