"""Which 3D Slicer runs MedRegionCT, and where the library comes from. Standard library only, Python 3.9 syntax:
this runs first, on any Slicer, to refuse an unsupported one with a clear message."""

from __future__ import annotations

import importlib.util
import os
import sys

# MedRegionCTLib needs Python 3.10 (pyproject.toml requires-python); Slicer 5.10 is the first release that ships
# a newer Python (3.12). Slicer 5.6 and 5.8 ship Python 3.9. Keep in step with CMakeLists.txt and README.md.
MIN_SLICER = (5, 10)
MIN_PYTHON = (3, 10)
LIBRARY = "MedRegionCTLib"


def unsupported_reason(slicer_version, python_version=None):
    """A one-line message when this Slicer cannot run MedRegionCT, else None."""
    python_version = tuple(python_version or sys.version_info[:2])[:2]
    slicer_version = tuple(int(v) for v in slicer_version[:2])
    if slicer_version < MIN_SLICER or python_version < MIN_PYTHON:
        return ("MedRegionCT needs 3D Slicer {}.{} or later (Python {}.{}+); this is Slicer {}.{} with Python {}.{}. "
                "Install a current 3D Slicer release and MedRegionCT from its Extensions Manager.").format(
                    *MIN_SLICER, *MIN_PYTHON, *slicer_version, *python_version)
    return None


def find_library(module_dir):
    """Make MedRegionCTLib importable and say where it is: the copy shipped beside the module (an installed
    extension puts it in the scripted-modules folder, already on sys.path), else the development checkout that
    holds this module (``<checkout>/MedRegionCT/MedRegionCT.py`` beside ``<checkout>/MedRegionCTLib``).
    It is never installed from a package index: no index publishes it under this name."""
    spec = importlib.util.find_spec(LIBRARY)
    if spec is not None:
        return os.path.dirname(spec.origin)
    checkout = os.path.dirname(os.path.abspath(module_dir))
    if os.path.isfile(os.path.join(checkout, LIBRARY, "__init__.py")):
        sys.path.insert(0, checkout)
        importlib.invalidate_caches()
        return os.path.join(checkout, LIBRARY)
    raise ImportError("MedRegionCTLib, which ships with the MedRegionCT extension, was not found beside the "
                      "module or in a development checkout; reinstall MedRegionCT from the Extensions Manager.")
