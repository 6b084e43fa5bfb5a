"""What every report engine implements: take one analysed CT (:class:`ReportCase`), return one
:class:`~.document.RegionReport` per schema region.

Engines: the offline measurement reporter (this layer), the local model (``model`` layer) and the remote
server (``client`` layer). ``pipeline.get_reporter`` builds one from a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from .document import RegionReport


@dataclass
class ReportCase:
    """Everything a reporter may use about one CT; arrays are on the CT grid."""

    volume: object  # volume.Volume (HU)
    labelmap: object  # volume.LabelMap (TotalSegmentator class names)
    schema: object  # anatomy.RegionSchema
    regions: list  # anatomy.RegionMask per schema region, schema order (empty masks included)
    measurements: object  # measure.Measurements

    def region_masks(self) -> dict[str, np.ndarray]:
        return {r.key: r.mask for r in self.regions}


@runtime_checkable
class Reporter(Protocol):
    name: str  # short engine name recorded in the provenance ("measurement", "model", "server")

    def settings(self) -> dict:
        """The options that shape this reporter's output (recorded in the provenance)."""
        ...

    def write(self, case: ReportCase, progress=None, cancel=None) -> list[RegionReport]:
        """One RegionReport per region of ``case.schema``, in schema order."""
        ...
