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


class GeometryError(InputError):
    """The CT's voxel grid is unusable: a voxel spacing of zero or less, or too coarse for a CT."""


class NotChestCTError(InputError):
    """The CT holds no chest (no lungs in the field of view), and the caller did not allow other body parts."""


class OutputError(InputError):
    """The output folder cannot be created or written, or holds files that must not be replaced."""


class MissingDependencyError(MedRegionCTError, ImportError):
    """An optional package or model weights are needed for this feature and are not installed."""


class CancelledError(MedRegionCTError):
    """Long work was cancelled by the user; nothing was half-written."""


class PayloadError(InputError):
    """A report-server payload (the binary case encoding) is malformed or does not fit the model's input spec.

    ``status`` is the HTTP status the server answers with (400 malformed, 413 too large, 422 well-formed but
    wrong for this model) and ``code`` a short machine-readable reason.
    """

    def __init__(self, message: str, status: int = 400, code: str = "bad_payload"):
        super().__init__(message)
        self.status = status
        self.code = code


class ServerError(MedRegionCTError):
    """The report server could not be reached, refused the request, or failed the job.

    ``status`` is the HTTP status when the server answered (None when it did not), ``code`` its reason.
    """

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class ClusterError(MedRegionCTError):
    """A distributed engine (a Dask scheduler and its workers) could not be reached or cannot run the cases."""
