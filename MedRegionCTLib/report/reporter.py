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


def attribute_text(case: ReportCase) -> dict[str, str]:
    """Region key -> its attribute sentences as one text (the model's attribute prompt, MedRegion-CT style)."""
    sentences = getattr(case.measurements, "sentences", {}) or {}
    return {key: " ".join(items) for key, items in sentences.items() if items}


def reports_from_paragraphs(case: ReportCase, paragraphs: dict[str, str]) -> list[RegionReport]:
    """RegionReports from generated free text (model or server): one per schema region, in schema order.

    A generated paragraph rests on the region's mask only; regions without a mask or without text are marked
    outside the field of view (expected region absent from the scan range) or not assessed.
    """
    from .document import NOT_ASSESSED, OUTSIDE_FIELD_OF_VIEW, Evidence, Sentence
    from .labeler import split_sentences

    out = []
    for r in case.regions:
        text = (paragraphs.get(r.key) or "").strip()
        evidence = Evidence(masks=[f"region:{r.key}"])
        if r.mask.any() and text:
            sentences = [Sentence(s, Evidence(masks=[f"region:{r.key}"])) for s in split_sentences(text)]
            out.append(RegionReport(r.key, r.region.name, sentences=sentences, evidence=evidence))
        else:
            status = OUTSIDE_FIELD_OF_VIEW if not r.mask.any() else NOT_ASSESSED
            out.append(RegionReport(r.key, r.region.name, status=status, evidence=evidence))
    return out
