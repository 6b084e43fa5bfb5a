"""The one segmentation interface every segmenter implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..progress import ProgressCallback
from ..volume import LabelMap, Volume


@runtime_checkable
class Segmenter(Protocol):
    """Turns a CT into a label map with TotalSegmentator class names, on the input grid.

    Implementations put the class names they looked for but could not find in
    ``labelmap.meta["not_found"]`` (a list of class names) instead of inventing them.
    """

    name: str

    def segment(self, volume: Volume, progress: ProgressCallback | None = None, cancel=None) -> LabelMap:
        ...
