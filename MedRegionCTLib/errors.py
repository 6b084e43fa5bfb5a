"""The library's exception types.

Every error a user can cause carries a one-line message that names what was wrong and what to do,
so command-line and Slicer front ends can show ``str(error)`` as it is.
"""

from __future__ import annotations


class MedRegionCTError(Exception):
    """Base class of every error raised on purpose by MedRegionCTLib."""


class InputError(MedRegionCTError, ValueError):
    """The caller gave something unusable (a missing path, an unsupported file, a bad argument)."""


class VolumeReadError(InputError):
    """A file or folder could not be read as a CT volume."""


class NotCTError(InputError):
    """The image loaded, but its intensities are not CT Hounsfield units (for example an MR image)."""


class MissingDependencyError(MedRegionCTError, ImportError):
    """An optional package or model weights are needed for this feature and are not installed."""


class CancelledError(MedRegionCTError):
    """Long work was cancelled by the user; nothing was half-written."""
