"""Which Python packages the Slicer module still needs, with their versions checked.

Only what is missing or older than required is installed, after the user agrees; never the library itself
(it ships inside the extension, or comes from the development checkout), never torch (the report model runs on
a server), never Slicer's own SimpleITK (Slicer builds it with its own image IO; replacing it breaks Slicer).
Runs before numpy or anything else of the library is importable: standard library and ``packaging`` only.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass

from ..errors import MissingDependencyError

# MedRegionCTLib's core dependencies (pyproject.toml [project] dependencies): import name -> requirement.
CORE = {
    "numpy": "numpy>=1.24", "scipy": "scipy>=1.10", "skimage": "scikit-image>=0.21", "nibabel": "nibabel>=5.0",
    "SimpleITK": "SimpleITK>=2.3", "pydicom": "pydicom>=2.4", "PIL": "pillow>=9", "tqdm": "tqdm>=4.60",
    "slicerio": "slicerio>=1.0",
}
SERVER_CLIENT = {"httpx": "httpx>=0.27"}  # the report-server client
DICOM_SR = {"highdicom": "highdicom>=0.22"}  # DICOM SR export
# Never pip-installed by the module: the library (not on any package index under this name), torch (no model
# runs inside Slicer), Slicer's own SimpleITK build.
NEVER_INSTALL = ("medregionctlib", "torch", "simpleitk")


@dataclass
class Needed:
    """One requirement that is not met: ``installed`` is None when the package is absent."""

    requirement: str
    installed: str | None

    def __str__(self) -> str:
        return self.requirement if self.installed is None else f"{self.requirement} (installed: {self.installed})"


def _requirement(spec: str):
    from packaging.requirements import Requirement

    return Requirement(spec)


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def unmet(requirements: dict[str, str]) -> list[Needed]:
    """The requirements (import name -> requirement) that are missing or whose installed version is too old.

    A package importable without distribution metadata (bundled by Slicer) counts as present: its version
    cannot be read, and reinstalling Slicer's own build would do more harm than an unknown version.
    """
    out = []
    for module, spec in requirements.items():
        requirement = _requirement(spec)
        version = installed_version(requirement.name)
        if version is None:
            if importlib.util.find_spec(module) is None:
                out.append(Needed(spec, None))
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            out.append(Needed(spec, version))
    return out


def install_plan(requirements: dict[str, str]) -> list[str]:
    """The pip requirements to install for ``requirements``; raises when one of them must never be installed
    by the module (the message says what to do instead)."""
    needed = unmet(requirements)
    refused = [n for n in needed if _requirement(n.requirement).name.lower() in NEVER_INSTALL]
    if refused:
        what = ", ".join(str(n) for n in refused)
        raise MissingDependencyError(
            f"MedRegionCT needs {what}, which it does not install into Slicer's Python; use a 3D Slicer release "
            "that provides it (5.10 or later) or install it yourself in the Python console.")
    return [n.requirement for n in needed]
