"""The Slicer module file ``MedRegionCT/MedRegionCT.py`` loaded without the Slicer application: stand-ins for the
parts only the application has (Qt, the scripted-module base classes, the parameter node decorator, translation);
every MRML class is the real one from the slicer-core wheel. Shared by the tests that drive the module's Logic."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

MODULE_FILE = Path(__file__).resolve().parents[2] / "MedRegionCT" / "MedRegionCT.py"


def load_module(monkeypatch):
    """MedRegionCT.py as a module (``MedRegionCTLogic`` and the rest); ``monkeypatch`` undoes the stand-ins."""
    import slicer

    qt = types.ModuleType("qt")
    base = types.ModuleType("slicer.ScriptedLoadableModule")

    class _Base:
        def __init__(self, parent=None):
            self.parent = parent

    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleWidget",
                 "ScriptedLoadableModuleTest"):
        setattr(base, name, type(name, (_Base,), {}))
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    for name, module in (("qt", qt), ("slicer.ScriptedLoadableModule", base),
                         ("slicer.parameterNodeWrapper", wrapper), ("slicer.i18n", i18n)):
        monkeypatch.setitem(sys.modules, name, module)
    # the application object: only its version (Slicer 5.10) is read at import
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(majorVersion=5, minorVersion=10), raising=False)
    monkeypatch.syspath_prepend(str(MODULE_FILE.parent))
    spec = importlib.util.spec_from_file_location("MedRegionCT_under_test", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
