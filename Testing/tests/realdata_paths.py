"""Where the shared reference data is. Test modules that use it call :func:`require` at import time and are
skipped, with the reason, when it is not available (it never is on a fresh clone)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def require(subfolder: str, must_exist: str = "") -> Path:
    """``$MEDREGIONCT_REALDATA/<subfolder>``; skips the calling module when the variable or the file is missing."""
    base = os.environ.get("MEDREGIONCT_REALDATA")
    if not base:
        pytest.skip(f"MEDREGIONCT_REALDATA is not set (point it at the shared data folder that holds {subfolder}/)",
                    allow_module_level=True)
    folder = Path(base) / subfolder
    target = folder / must_exist if must_exist else folder
    if not target.exists():
        pytest.skip(f"{target} not found", allow_module_level=True)
    return folder
