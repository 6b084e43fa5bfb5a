"""HTTP client of the report server (numpy + httpx; no torch).

::

    client = ReportClient("https://gpu.example.org:8750", api_key="...")   # or MEDREGIONCT_API_KEY
    info = client.model_info()                  # schema, grid, preprocessing, limits
    result = client.report({"volume": volume, "regions": {key: mask}, "attributes": {key: "..."}},
                           progress=print_progress, on_region=lambda key, value: ...)
    result["regions"]["lung"]["paragraph"]

The case is preprocessed here, exactly as the server's model declares (``model.preprocess.prepare_case`` with
the server's configuration), so only the model-grid arrays travel: a few MB instead of the CT. The payload
holds arrays, region keys/names and attribute sentences; no identifiers, dates or affine.

Transient failures (connection refused or dropped, timeouts, 429, 5xx) are retried with exponential backoff
(``backoff * 2**attempt``, honouring Retry-After); submissions carry an Idempotency-Key so a retried submit never
queues the case twice; a dropped event stream is resumed from the last event received.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import random
import time
import uuid
from collections.abc import Iterator

import numpy as np

from ..errors import CancelledError, InputError, MissingDependencyError, PayloadError, ServerError
from ..model.config import PreprocessConfig
from ..model.preprocess import PreparedCase, prepare_case
from ..progress import is_cancelled
from .codec import CONTENT_TYPE, InputSpec, encode_case

API_KEY_ENV = "MEDREGIONCT_API_KEY"
RETRY_STATUSES = (429, 500, 502, 503, 504)
STALE_SPEC_CODES = ("wrong_shape", "missing_array", "unexpected_array", "schema_mismatch", "unknown_region")


def _httpx():
    try:
        import httpx
    except ImportError:
        raise MissingDependencyError("the report client needs httpx; install it with "
                                     "pip install 'MedRegionCTLib[client]'.") from None
    return httpx


def _reason(exc: Exception) -> str:
    httpx = _httpx()
    text = str(exc).lower()
    cause = exc.__cause__ or exc.__context__
    refused = isinstance(cause, ConnectionRefusedError) or "refused" in text or \
        getattr(cause, "errno", None) == errno.ECONNREFUSED
    if refused:
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer in time ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {str(exc)[:120] or type(exc).__name__}"
    return f"connection dropped: {str(exc)[:120] or type(exc).__name__}"


class ReportClient:
    """Client of one report server. ``timeout``: seconds for each request (connect, read, write);
    ``retries``: extra attempts on transient failures; ``backoff``: first wait in seconds (doubles)."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0, retries: int = 4,
                 backoff: float = 0.5, max_backoff: float = 30.0, verify=True, compression: str = "shuffle-zlib",
                 exact: bool = False, transport=None):
        httpx = _httpx()
        url = str(url).strip().rstrip("/")
        if url.endswith("/v1"):
            url = url[:-3]
        if not url.startswith(("http://", "https://")):
            raise InputError(f"report server URL {url!r} must start with http:// or https://.")
        self.url = url
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        headers = {"User-Agent": "MedRegionCT-client"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = float(timeout)
        self.retries = max(int(retries), 0)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.compression = compression
        self.exact = exact
        self._info: dict | None = None
        self._http = httpx.Client(base_url=url, headers=headers, verify=verify, transport=transport,
                                  timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)))

    # --- plumbing -----------------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _sleep(self, attempt: int, retry_after: str | None = None) -> None:
        wait = self.backoff * (2 ** attempt) * (0.75 + 0.5 * random.random())
        if retry_after:
            with contextlib.suppress(ValueError):
                wait = max(wait, float(retry_after))
        time.sleep(min(wait, self.max_backoff))

    def _unreachable(self, exc: Exception) -> ServerError:
        return ServerError(f"the report server at {self.url} stopped answering ({_reason(exc)}); check it is "
                           "running, then retry.")

    def _error(self, response) -> ServerError:
        try:
            detail = response.json().get("error", {})
            code, message = detail.get("code"), detail.get("message")
        except (ValueError, AttributeError):
            code, message = None, response.text[:200]
        status = response.status_code
        if status == 401:
            text = (f"the report server at {self.url} refused the request: {message}; give the API key with "
                    f"api_key= or the {API_KEY_ENV} environment variable.")
        elif status == 404 and code == "unknown_job":
            text = f"the report server at {self.url} {message[0].lower() + message[1:] if message else 'lost the job'}."
        else:
            text = f"the report server at {self.url} answered HTTP {status} ({code or 'error'}): {message}"
            if status >= 500 or status == 429:
                text += "; it is overloaded or failing, retry later."
        return ServerError(text, status=status, code=code)

    def _request(self, method: str, path: str, retry: bool = True, expect=(200,), **kwargs):
        httpx = _httpx()
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt + 1 >= attempts:
                    raise self._unreachable(exc) from None
                self._sleep(attempt)
                continue
            if response.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                self._sleep(attempt, response.headers.get("retry-after"))
                continue
            if response.status_code not in expect:
                raise self._error(response)
            return response
        raise ServerError(f"the report server at {self.url} could not be reached.")  # pragma: no cover

    # --- server description ----------------------------------------------------------------------------------
    def health(self) -> dict:
        return self._request("GET", "/v1/health").json()

    def model_info(self, refresh: bool = False) -> dict:
        """The server's model: schema, input grid, preprocessing, payload format, limits (cached)."""
        if self._info is None or refresh:
            self._info = self._request("GET", "/v1/model").json()
        return self._info

    def input_spec(self) -> InputSpec:
        return InputSpec.from_dict(self.model_info()["input"])

    def preprocess_config(self) -> PreprocessConfig:
        data = dict(self.model_info()["preprocess"])
        names = {f.name: f for f in dataclasses.fields(PreprocessConfig)}
        unknown = set(data) - set(names)
        if unknown:
            raise ServerError(f"the report server at {self.url} uses preprocessing settings {sorted(unknown)} this "
                              "client does not know; upgrade MedRegionCTLib to the server's version.")
        defaults = PreprocessConfig()
        for key, value in data.items():
            if isinstance(getattr(defaults, key), tuple) and isinstance(value, list):
                data[key] = tuple(value)
        return PreprocessConfig(**data)

    # --- payload ----------------------------------------------------------------------------------------------
    def prepare(self, case) -> PreparedCase:
        """A case mapping (``volume`` Volume or HU array + ``affine``, ``regions`` {key: bool mask on the CT grid},
        optional ``names``, ``attributes`` {key: sentence or list of sentences}) -> the server model's inputs."""
        if isinstance(case, PreparedCase):
            return case
        if not isinstance(case, dict):
            raise InputError(f"a case is a mapping with 'volume' and 'regions', not {type(case).__name__}.")
        info = self.model_info()
        spec = self.input_spec()
        regions = case.get("regions") or {}
        unknown = [k for k in regions if spec.region_keys and k not in spec.region_keys]
        if unknown:
            raise InputError(f"regions {unknown} are not in the server's schema {spec.schema!r} (keys: "
                             f"{', '.join(spec.region_keys)}); build the regions with that schema.")
        case = dict(case)
        attributes = {}
        for key, value in (case.get("attributes") or {}).items():
            text = " ".join(str(s).strip() for s in value) if isinstance(value, (list, tuple)) else str(value)
            if text.strip():
                attributes[key] = text.strip()
        case["attributes"] = attributes
        case.pop("paragraphs", None)  # training targets never travel
        return prepare_case(case, self.preprocess_config(), set(info["model"]["needed_inputs"]))

    def encode(self, case) -> bytes:
        """The payload bytes for ``case`` (a case mapping or a PreparedCase; bytes pass through)."""
        if isinstance(case, (bytes, bytearray)):
            return bytes(case)
        prepared = self.prepare(case)
        body = encode_case(prepared, self.input_spec().schema, compression=self.compression, exact=self.exact)
        limit = self.model_info()["limits"]["max_request_bytes"]
        if len(body) > limit:
            raise PayloadError(f"the prepared case is {len(body)} bytes, over the server's limit of {limit}; ask the "
                               "server's operator to raise --max-request-mb.", 413, "too_large")
        return body

    # --- jobs ------------------------------------------------------------------------------------------------
    def submit(self, case) -> str:
        """Queue a case (mapping, PreparedCase or encoded bytes); returns the job id. Retries on a full queue."""
        body = self.encode(case)
        response = self._request("POST", "/v1/jobs", content=bytes(body), expect=(202,),
                                 headers={"Content-Type": CONTENT_TYPE, "Idempotency-Key": uuid.uuid4().hex})
        return response.json()["job_id"]

    def status(self, job_id: str) -> dict:
        return self._request("GET", f"/v1/jobs/{job_id}").json()

    def result(self, job_id: str) -> dict:
        return self._request("GET", f"/v1/jobs/{job_id}/result").json()

    def cancel(self, job_id: str) -> dict:
        return self._request("DELETE", f"/v1/jobs/{job_id}").json()

    def events(self, job_id: str, after: int = 0, ping: float = 15.0) -> Iterator[tuple[str, dict]]:
        """The job's server-sent events as ``(event, data)``, ending after ``result``, ``error`` or
        ``cancelled``; a dropped stream is resumed where it stopped (up to ``retries`` times in a row).
        ``("ping", {})`` is yielded for each keep-alive (every ``ping`` seconds)."""
        httpx = _httpx()
        seen, failures = int(after), 0
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0), read=ping + self.timeout)
        while True:
            try:
                with self._http.stream("GET", f"/v1/jobs/{job_id}/events", params={"ping": ping},
                                       headers={"Last-Event-ID": str(seen), "Accept": "text/event-stream"},
                                       timeout=timeout) as response:
                    if response.status_code in RETRY_STATUSES:
                        raise httpx.RemoteProtocolError(f"HTTP {response.status_code}")
                    if response.status_code != 200:
                        response.read()
                        raise self._error(response)
                    kind, data, ident = "message", [], None
                    for line in response.iter_lines():
                        if line == "":
                            if data:
                                payload = json.loads("\n".join(data))
                                if ident is not None:
                                    seen = ident
                                failures = 0
                                yield kind, payload
                                if kind in ("result", "error", "cancelled"):
                                    return
                            kind, data, ident = "message", [], None
                        elif line.startswith(":"):
                            failures = 0
                            yield "ping", {}
                        else:
                            field, _, value = line.partition(":")
                            value = value[1:] if value.startswith(" ") else value
                            if field == "event":
                                kind = value
                            elif field == "data":
                                data.append(value)
                            elif field == "id" and value.isdigit():
                                ident = int(value)
                raise httpx.RemoteProtocolError("the event stream ended before the job did")
            except httpx.TransportError as exc:
                failures += 1
                if failures > self.retries:
                    raise self._unreachable(exc) from None
                self._sleep(failures - 1)

    def wait(self, job_id: str, progress=None, on_region=None, cancel=None) -> dict:
        """Follow the job's events until it ends; returns the result (``regions``: {key: {name, paragraph,
        slot}}). ``progress(fraction, message)``; ``on_region(key, value)`` per paragraph as it is written;
        ``cancel`` (event or callable) cancels the job on the server and raises CancelledError."""
        ping = 1.0 if cancel is not None else 15.0
        fraction = 0.0
        for kind, data in self.events(job_id, ping=ping):
            if is_cancelled(cancel):
                self._cancel_quietly(job_id)
                raise CancelledError(f"report job {job_id} was cancelled; nothing was written. Run it again to redo "
                                     "it.")
            if kind == "status" and progress is not None:
                fraction = float(data.get("progress", fraction))
                progress(fraction, str(data.get("message", "")))
            elif kind == "region":
                if on_region is not None:
                    on_region(data["key"], {k: data[k] for k in ("name", "paragraph", "slot") if k in data})
                if progress is not None:
                    progress(fraction, f"region {data['key']} written")
            elif kind == "result":
                if progress is not None:
                    progress(1.0, "done")
                return data
            elif kind == "error":
                raise ServerError(f"the report server at {self.url} failed job {job_id}: "
                                  f"{data.get('message', 'no reason given')}", code=data.get("code"))
            elif kind == "cancelled":
                raise CancelledError(f"report job {job_id} was cancelled on the server; submit it again to redo it.")
        raise ServerError(f"the report server at {self.url} ended job {job_id}'s events without a result.")

    def _cancel_quietly(self, job_id: str) -> None:
        with contextlib.suppress(ServerError):
            self._request("DELETE", f"/v1/jobs/{job_id}", retry=False)

    def report(self, case, progress=None, cancel=None, on_region=None) -> dict:
        """Prepare, submit and follow one case; returns the result (see :meth:`wait`)."""
        def scaled(fraction, message):
            if progress is not None:
                progress(0.1 + 0.9 * fraction, message)

        if progress is not None:
            progress(0.0, "preparing the case for the server")
        body = self.encode(case)
        if is_cancelled(cancel):
            raise CancelledError("the report was cancelled before it was sent; nothing was written.")
        scaled(0.0, f"sending {len(body) / 1e6:.2f} MB")
        try:
            job_id = self.submit(body)
        except ServerError as exc:
            # the server may have been restarted with another model since model_info() was cached: prepare again
            if exc.code not in STALE_SPEC_CODES or isinstance(case, (bytes, bytearray, PreparedCase)):
                raise
            self.model_info(refresh=True)
            job_id = self.submit(self.encode(case))
        return self.wait(job_id, progress=scaled, on_region=on_region, cancel=cancel)


def region_arrays_bytes(prepared: PreparedCase) -> int:
    """Bytes of the prepared arrays as float32 (what the payload's encodings shrink)."""
    return int(sum(np.asarray(a).size * 4 for a in prepared.arrays.values()))
