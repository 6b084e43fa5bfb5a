"""The HTTP API (FastAPI): versioned endpoints under ``/v1``, bearer-token auth, request limits, JSON errors.

Every error answer is ``{"error": {"code": "...", "message": "..."}}`` with a 4xx status that names the
problem (400 malformed payload, 401 missing/wrong API key, 404 unknown job, 408 upload too slow, 409 job not
finished, 413 request too large, 415 wrong content type, 422 payload not what the model takes, 429 queue full +
Retry-After, 503 shutting down). The OpenAPI schema is at ``/openapi.json`` (interactive docs at ``/docs``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..client.codec import CONTENT_TYPE, decode_case
from ..errors import PayloadError
from .jobs import QUEUED, RUNNING, JobManager, QueueFull, ShuttingDown

log = logging.getLogger("medregionct.server")
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
ACCEPTED_TYPES = (CONTENT_TYPE, "application/octet-stream")


@dataclass
class ServerSettings:
    api_keys: tuple[str, ...] = ()
    max_request_bytes: int = 256 << 20
    max_queue: int = 64
    max_batch: int = 4
    job_timeout_s: float = 600.0
    drain_timeout_s: float = 30.0
    keepalive_s: float = 15.0
    upload_timeout_s: float = 300.0

    def limits(self) -> dict:
        return {"max_request_bytes": self.max_request_bytes, "max_queue": self.max_queue,
                "max_batch": self.max_batch, "job_timeout_s": self.job_timeout_s}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


# --- response models (for the OpenAPI schema) ------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str
    api_version: str
    server_version: str


class JobCreated(BaseModel):
    job_id: str
    state: str
    status_url: str
    events_url: str
    result_url: str


class JobStatus(BaseModel):
    job_id: str
    state: str
    progress: float
    message: str
    regions_total: int
    regions_done: int
    created: float
    started: float | None = None
    finished: float | None = None
    deadline: float
    error: dict | None = None
    queue_position: int | None = None


class RegionParagraph(BaseModel):
    name: str
    paragraph: str
    slot: int


class JobResult(BaseModel):
    job_id: str
    state: str
    regions: dict[str, RegionParagraph]
    empty: list[str]
    timings_s: dict[str, float]
    model_version: str


ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 404, 408, 409, 413, 415, 422, 429, 503)}


def create_app(engine, settings: ServerSettings, manager: JobManager | None = None) -> FastAPI:
    """The FastAPI application around ``engine`` (a :class:`~.engine.ModelEngine`)."""
    spec = engine.spec(settings.max_request_bytes)
    if manager is None:
        manager = JobManager(engine, spec, max_queue=settings.max_queue, max_batch=settings.max_batch,
                             job_timeout_s=settings.job_timeout_s)
    keys = tuple(k.encode("utf-8") for k in settings.api_keys)
    decoding = asyncio.Semaphore(4)
    info = engine.info(settings.limits())

    @asynccontextmanager
    async def lifespan(app):
        manager.start()
        yield
        await run_in_threadpool(manager.drain, settings.drain_timeout_s)

    app = FastAPI(title="MedRegionCT report server", version=__version__, lifespan=lifespan,
                  description="Region-by-region chest CT reports from a region-focused multimodal model. Submit a "
                              "prepared case (binary encoding, see GET /v1/model), follow its progress and "
                              "paragraphs as server-sent events, fetch the result.")
    app.state.manager = manager
    app.state.engine = engine

    # --- errors ---------------------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(PayloadError)
    async def _payload_error(request, exc: PayloadError):
        return error_response(exc.status, exc.code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "bad_request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "the server hit an internal error; it was logged, retry later")

    # --- auth -----------------------------------------------------------------------------------------------
    def authorize(request: Request) -> None:
        if not keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthorized", "this server needs an API key: send 'Authorization: Bearer <key>' "
                           "(ReportClient(api_key=...) or MEDREGIONCT_API_KEY)", {"WWW-Authenticate": "Bearer"})
        given = token.strip().encode("utf-8")
        ok = False
        for key in keys:  # every key is compared, in constant time each
            ok |= hmac.compare_digest(given, key)
        if not ok:
            raise ApiError(401, "unauthorized", "the API key was not accepted; check the key you were given",
                           {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def job_or_404(job_id: str):
        job = manager.get(job_id) if JOB_ID_RE.match(job_id) else None
        if job is None:
            raise ApiError(404, "unknown_job", f"this server has no job {job_id[:40]!r}: its result expired or the "
                           "server restarted; submit the case again")
        return job

    auth = [Depends(authorize)]

    # --- endpoints ------------------------------------------------------------------------------------------
    @app.get("/v1/health", response_model=Health, tags=["server"])
    async def health():
        """Liveness (no API key needed): ``ok``, or ``draining`` during shutdown."""
        return {"status": "ok" if manager.accepting else "draining", "api_version": "v1",
                "server_version": __version__}

    @app.get("/v1/model", dependencies=auth, tags=["server"], responses=ERRORS)
    async def model_info():
        """What the model takes and how to prepare it: region schema, input grid, exact preprocessing, payload
        format and version, size limits, decoding settings, model version."""
        return {**info, "queue": manager.counts()}

    async def read_body(request: Request) -> bytes:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ACCEPTED_TYPES:
            raise ApiError(415, "unsupported_media_type", f"send the case as {CONTENT_TYPE} (got "
                           f"{ctype[:60] or 'no content type'!r}); build it with MedRegionCTLib.client.codec.")
        limit = settings.max_request_bytes
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ApiError(400, "bad_request", "the Content-Length header is not a number")
            if int(length) > limit:
                raise ApiError(413, "too_large", f"the request is {int(length)} bytes, over this server's limit of "
                               f"{limit}; prepare the case on the server's grid (GET /v1/model)",
                               {"Connection": "close"})
        chunks = []

        async def receive() -> None:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "too_large", f"the request is over this server's limit of {limit} bytes; "
                                   "prepare the case on the server's grid (GET /v1/model)", {"Connection": "close"})
                chunks.append(chunk)

        try:
            await asyncio.wait_for(receive(), settings.upload_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(408, "upload_timeout", f"the upload took longer than {settings.upload_timeout_s:g} s; "
                           "check the connection and send it again", {"Connection": "close"}) from None
        return b"".join(chunks)

    @app.post("/v1/jobs", status_code=202, response_model=JobCreated, dependencies=auth, tags=["jobs"],
              responses=ERRORS, openapi_extra={"requestBody": {"required": True, "content": {
                  CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}}})
    async def submit(request: Request):
        """Queue one prepared case (binary encoding: ``MedRegionCTLib.client.codec``). Answers 202 with the job
        id; 429 with Retry-After when the queue is full. An ``Idempotency-Key`` header makes a retried submit
        return the job it already created."""
        idem = request.headers.get("idempotency-key")
        if idem is not None and not (0 < len(idem) <= 128):
            raise ApiError(400, "bad_request", "the Idempotency-Key header must have 1 to 128 characters")
        if not manager.accepting:
            raise ApiError(503, "shutting_down", "the server is shutting down; retry in a minute",
                           {"Retry-After": "30"})
        body = await read_body(request)
        async with decoding:  # a few payloads are checked at a time: bounded memory under a burst
            case, _ = await run_in_threadpool(decode_case, body, spec, False)
            if hasattr(engine, "check"):  # the prompt fits the token budget: refused now, not after queuing
                await run_in_threadpool(engine.check, case)
        try:
            job = manager.submit(body, case.keys, case.empty, idempotency_key=idem)
        except QueueFull as full:
            raise ApiError(429, "queue_full", f"the job queue is full ({settings.max_queue} waiting); retry after "
                           f"{full.retry_after} s", {"Retry-After": str(full.retry_after)}) from None
        except ShuttingDown:
            raise ApiError(503, "shutting_down", "the server is shutting down; retry in a minute",
                           {"Retry-After": "30"}) from None
        base = f"/v1/jobs/{job.id}"
        return JSONResponse({"job_id": job.id, "state": job.state, "status_url": base,
                             "events_url": base + "/events", "result_url": base + "/result"},
                            status_code=202, headers={"Location": base})

    @app.get("/v1/jobs/{job_id}", response_model=JobStatus, dependencies=auth, tags=["jobs"], responses=ERRORS)
    async def job_status(job_id: str):
        """State (queued, running, done, failed, cancelled), progress in [0, 1], queue position, error."""
        return manager.status(job_or_404(job_id))

    @app.get("/v1/jobs/{job_id}/result", response_model=JobResult, dependencies=auth, tags=["jobs"],
             responses=ERRORS)
    async def job_result(job_id: str):
        """The region paragraphs of a finished job (409 while it is queued or running, or when it failed)."""
        job = job_or_404(job_id)
        if job.state in (QUEUED, RUNNING):
            raise ApiError(409, "not_finished", f"job {job_id} is {job.state}; wait for it (GET .../events) and ask "
                           "again")
        if job.state != "done":
            error = job.error or {"code": job.state, "message": f"the job was {job.state}"}
            raise ApiError(409, f"job_{job.state}", f"job {job_id} {job.state}: {error.get('message', '')}")
        return {**job.result(), "model_version": engine.version}

    @app.get("/v1/jobs/{job_id}/events", dependencies=auth, tags=["jobs"], responses={
        **ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}})
    async def job_events(job_id: str, request: Request, after: int = 0, ping: float = 15.0):
        """Server-sent events: ``status`` (state, progress, message), ``region`` (one per paragraph, as it is
        written), then one of ``result``, ``error`` or ``cancelled``, after which the stream ends. Resume with
        the ``Last-Event-ID`` header or ``?after=N``; ``?ping=S`` sets the keep-alive interval (0.5-60 s)."""
        job = job_or_404(job_id)
        last = request.headers.get("last-event-id")
        seen = int(last) if last and last.isdigit() else max(after, 0)
        keepalive = min(max(ping, 0.5), 60.0) if ping == ping else settings.keepalive_s  # NaN -> default

        async def stream():
            nonlocal seen
            while True:
                for event in job.events_after(seen):
                    seen = event["id"]
                    data = {**event["data"], "model_version": engine.version} if event["event"] == "result" \
                        else event["data"]
                    yield f"id: {seen}\nevent: {event['event']}\ndata: {json.dumps(data)}\n\n"
                if job.terminal and not job.events_after(seen):
                    return
                if not await job.wait_change(seen, keepalive):
                    yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.delete("/v1/jobs/{job_id}", response_model=JobStatus, dependencies=auth, tags=["jobs"], responses=ERRORS)
    async def job_cancel(job_id: str):
        """Cancel a queued or running job (a finished job is left as it is); answers its status."""
        job_or_404(job_id)
        job = manager.cancel(job_id)
        return manager.status(job)

    return app
