"""Layer `segment`: segmenters behind one interface (see :mod:`.base`) and the registry that picks one.

``get_segmenter("auto" | "builtin" | "totalsegmentator" | "labels:FILE", **options)``:

- ``auto`` (the default): TotalSegmentator when it and its weights are installed, the built-in segmenter
  otherwise (:func:`.totalsegmentator.best_method`); the segmenter's ``selection`` says which and why;
- ``builtin``: the classical chest segmenter (no weights),
  ``MedRegionCTLib.segment.builtin.BuiltinSegmenter``;
- ``totalsegmentator``: :class:`.totalsegmentator.TotalSegmentatorSegmenter` (options ``fast``, ``device``,
  ``tasks``, ``weights_dir``);
- ``labels:FILE``: :class:`.labels_import.LabelFileSegmenter` imports an existing label map or
  TotalSegmentator output (options ``table``, ``mapping``).

Segmenters are imported when asked for, so this registry works before optional parts exist.
"""

from __future__ import annotations

import importlib
import inspect

from ..errors import InputError, MissingDependencyError
from .base import Segmenter

METHODS = ("auto", "builtin", "totalsegmentator", "labels:FILE")
_ALIASES = {"builtin": "builtin", "classical": "builtin", "totalsegmentator": "totalsegmentator",
            "totalseg": "totalsegmentator", "ts": "totalsegmentator"}


def _builtin_class():
    module_name = f"{__name__}.builtin"
    try:
        module = importlib.import_module(module_name)
        return module.BuiltinSegmenter
    except ModuleNotFoundError as error:
        if error.name == module_name:  # the package itself is absent (not a missing import inside it)
            raise MissingDependencyError(
                "the built-in segmenter is not part of this installation (MedRegionCTLib.segment.builtin "
                "is missing); reinstall MedRegionCTLib, or use --method totalsegmentator or labels:FILE."
            ) from None
        raise
    except AttributeError:
        raise MissingDependencyError(
            "MedRegionCTLib.segment.builtin has no BuiltinSegmenter yet; use --method totalsegmentator or "
            "labels:FILE.") from None


def get_segmenter(method: str = "auto", **options) -> Segmenter:
    """A segmenter by method name; ``options`` go to its constructor (for ``auto``: TotalSegmentator's ``fast``,
    ``device``, ``tasks``, ``weights_dir``, used when it is chosen). The segmenter's ``selection`` dict says
    which engine runs and why (the report header shows it)."""
    text = str(method).strip()
    if text.lower() == "auto":
        from .totalsegmentator import best_method

        chosen, ts_options, reason = best_method(bool(options.get("fast", False)), options.get("weights_dir"),
                                                 options.get("tasks"))
        ts_options = {**options, **ts_options} if chosen == "totalsegmentator" else {}
        segmenter = get_segmenter(chosen, **ts_options)
        segmenter.selection = {"engine": segmenter.name, "requested": "auto", "reason": reason}
        return segmenter
    if text.lower().startswith("labels:"):
        from .labels_import import LabelFileSegmenter

        path = text.split(":", 1)[1]
        if not path:
            raise InputError("--method labels: needs a file, e.g. labels:seg.nii.gz (or a TotalSegmentator "
                             "output folder).")
        cls, args = LabelFileSegmenter, (path,)
    else:
        key = _ALIASES.get(text.lower())
        if key is None:
            raise InputError(f"unknown segmentation method {method!r}; use {', '.join(METHODS)}.")
        if key == "builtin":
            cls, args = _builtin_class(), ()
        else:
            from .totalsegmentator import TotalSegmentatorSegmenter

            cls, args = TotalSegmentatorSegmenter, ()
    try:
        inspect.signature(cls).bind(*args, **options)
    except TypeError as error:
        raise InputError(f"segmentation method {text!r} does not take these options ({error}); "
                         "drop them or choose another method.") from None
    segmenter = cls(*args, **options)
    segmenter.selection = {"engine": getattr(segmenter, "name", text), "requested": text,
                           "reason": "chosen by the user"}
    return segmenter


__all__ = ["METHODS", "Segmenter", "get_segmenter"]
