"""Client of the MedRegionCT report server (numpy + httpx; never torch).

- :class:`ReportClient`: model information, payload building on the server's declared grid, submit, status,
  event stream, result, cancel, retries with backoff.
- :class:`RemoteReporter`: the report engine for ``pipeline.analyze(..., reporter="server:URL")``.
- :mod:`.codec`: the binary case encoding shared with the server.
"""

from .client import API_KEY_ENV, ReportClient
from .remote import RemoteReporter, case_from_report_case

__all__ = ["API_KEY_ENV", "RemoteReporter", "ReportClient", "case_from_report_case"]
