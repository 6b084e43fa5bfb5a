"""Installing what the library still needs into Slicer's Python, after the user agrees; only the packages that
are missing or too old (MedRegionCTLib.slicer_mrml.requirements decides), never the library, torch or SimpleITK."""

from __future__ import annotations

import slicer
from slicer.i18n import tr as _


def ensureRequirements(requirements, what, confirm=True):
    """pip-install the unmet ``requirements`` (import name -> requirement) after a confirmation; raises when the
    user declines or a package must not be installed by the module."""
    from MedRegionCTLib.errors import MissingDependencyError
    from MedRegionCTLib.slicer_mrml.requirements import install_plan, unmet

    plan = install_plan(requirements)
    if not plan:
        return []
    listing = "\n".join(str(n) for n in unmet(requirements))
    if confirm and not slicer.app.testingEnabled() and not slicer.util.confirmOkCancelDisplay(
            _("{what} needs these Python packages, which are missing or too old:\n\n{packages}\n\n"
              "Install them now into Slicer's Python (a few seconds to a minute)?").format(what=what,
                                                                                         packages=listing),
            windowTitle=_("MedRegionCT: install dependencies")):
        raise MissingDependencyError(f"{what} needs {', '.join(plan)}; the installation was declined.")
    slicer.util.pip_install(plan)
    still = install_plan(requirements)
    if still:
        raise MissingDependencyError(f"{', '.join(still)} could not be installed; see the Python console, or "
                                     "restart Slicer and try again.")
    return plan


def ensureTotalSegmentator(tsLogic, confirm=True):
    """Let the TotalSegmentator extension install its own Python packages (PyTorch, nnU-Net, TotalSegmentator)
    with its own logic, after the user agrees; nothing happens when they are there."""
    import importlib.util

    from MedRegionCTLib.errors import MissingDependencyError

    if importlib.util.find_spec("totalsegmentator") is not None:
        return False
    if confirm and not slicer.app.testingEnabled() and not slicer.util.confirmOkCancelDisplay(
            _("TotalSegmentator's Python packages (PyTorch, nnU-Net, TotalSegmentator) are not installed yet. The "
              "TotalSegmentator extension installs them now (several minutes, network needed; its model weights "
              "are downloaded on its first run). Continue?"),
            windowTitle=_("MedRegionCT: set up TotalSegmentator")):
        raise MissingDependencyError("TotalSegmentator is not set up (declined); choose the built-in segmenter or "
                                     "set it up in the TotalSegmentator module.")
    tsLogic.setupPythonRequirements()
    return True
