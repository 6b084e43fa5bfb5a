"""Jobs, the bounded queue and the worker that batches concurrent cases into one generate call.

- ``submit`` refuses with :class:`QueueFull` (HTTP 429 + Retry-After) when ``max_queue`` jobs are waiting, and
  with :class:`ShuttingDown` (503) once a drain has begun.
- The worker takes up to ``max_batch`` waiting jobs (waiting ``batch_wait_s`` for more to arrive when fewer
  are queued) and runs them through one ``engine.generate`` call; each region paragraph becomes an event as it
  is decoded. A batch that fails is retried job by job, so one bad case does not fail its neighbours.
- Every job has a deadline (``job_timeout_s`` after submission): a reaper thread fails jobs that pass it,
  queued or running; a running batch stops as soon as none of its jobs is still wanted.
- ``drain(timeout)`` (graceful shutdown) stops intake, lets the worker finish what it can within ``timeout``,
  then fails every job left with the reason, so no job is silently lost.
- Finished jobs keep their result for ``result_ttl_s`` (at most ``max_finished`` of them); a job holds only its
  encoded payload (compressed) until it runs, so memory is bounded by ``max_queue x max_request_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict, deque

from ..client.codec import decode_case
from ..errors import CancelledError

log = logging.getLogger("medregionct.server")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
TERMINAL = (DONE, FAILED, CANCELLED)


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"queue full, retry after {retry_after} s")
        self.retry_after = retry_after


class ShuttingDown(Exception):
    pass


class Job:
    def __init__(self, body: bytes, keys: list[str], empty: list[str], timeout_s: float):
        self.id = uuid.uuid4().hex
        self.body = body
        self.keys = list(keys)
        self.empty = list(empty)
        self.state = QUEUED
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.deadline = self.created + timeout_s
        self.progress = 0.0
        self.message = "queued"
        self.regions: dict[str, dict] = {}
        self.error: dict | None = None
        self.events: list[dict] = []
        self.idempotency_key: str | None = None
        self._last_status = 0.0
        self._waiters: list = []
        self._lock = threading.Lock()
        self._event("status", self._status_data())

    # --- state (call with the manager lock held) ----------------------------------------------------------
    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def _status_data(self) -> dict:
        return {"state": self.state, "progress": round(self.progress, 4), "message": self.message}

    def _event(self, kind: str, data: dict) -> None:
        with self._lock:
            self.events.append({"id": len(self.events) + 1, "event": kind, "data": data})
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # RuntimeError: the loop is closed (server stopped)
                loop.call_soon_threadsafe(event.set)

    def set_progress(self, progress: float, message: str, force: bool = False) -> None:
        self.progress, self.message = max(self.progress, min(progress, 1.0)), message
        now = time.monotonic()
        if force or now - self._last_status >= 0.2:
            self._last_status = now
            self._event("status", self._status_data())

    def start(self) -> None:
        self.state, self.started = RUNNING, time.time()
        self.set_progress(0.0, "running", force=True)

    def add_region(self, key: str, value: dict) -> None:
        if self.terminal or key in self.regions:
            return
        self.regions[key] = {"name": str(value.get("name", "")), "paragraph": str(value.get("paragraph", "")),
                             "slot": int(value.get("slot", -1))}
        self._event("region", {"key": key, **self.regions[key]})
        self.set_progress(len(self.regions) / max(len(self.keys), 1),
                          f"{len(self.regions)} of {len(self.keys)} regions written")

    def finish(self, state: str, error: dict | None = None) -> bool:
        if self.terminal:
            return False
        self.state, self.finished, self.error = state, time.time(), error
        self.body = b""  # the payload is no longer needed
        if state == DONE:
            self.progress, self.message = 1.0, "done"
            self._event("result", self.result())
        elif state == CANCELLED:
            self.message = "cancelled"
            self._event("cancelled", {"state": CANCELLED, "message": "the job was cancelled"})
        else:
            self.message = (error or {}).get("message", "failed")
            self._event("error", {"state": FAILED, **(error or {})})
        return True

    def status(self, queue_position: int | None = None) -> dict:
        out = {"job_id": self.id, "state": self.state, "progress": round(self.progress, 4), "message": self.message,
               "regions_total": len(self.keys), "regions_done": len(self.regions), "created": self.created,
               "started": self.started, "finished": self.finished, "deadline": self.deadline, "error": self.error,
               "queue_position": queue_position}
        return out

    def result(self) -> dict:
        return {"job_id": self.id, "state": self.state, "regions": dict(self.regions), "empty": list(self.empty),
                "timings_s": {"queued": round((self.started or self.created) - self.created, 3),
                              "running": round((self.finished or time.time()) - (self.started or self.created), 3)}}

    # --- events (async side) ------------------------------------------------------------------------------
    def events_after(self, seen: int) -> list[dict]:
        with self._lock:
            return self.events[seen:]

    async def wait_change(self, seen: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        with self._lock:
            if len(self.events) > seen:
                return True
            self._waiters.append((loop, event))
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters = [w for w in self._waiters if w[1] is not event]


class JobManager:
    def __init__(self, engine, spec, max_queue: int = 64, max_batch: int = 4, job_timeout_s: float = 600.0,
                 batch_wait_s: float = 0.05, result_ttl_s: float = 900.0, max_finished: int = 2000):
        self.engine = engine
        self.spec = spec
        self.max_queue = int(max_queue)
        self.max_batch = max(int(max_batch), 1)
        self.job_timeout_s = float(job_timeout_s)
        self.batch_wait_s = float(batch_wait_s)
        self.result_ttl_s = float(result_ttl_s)
        self.max_finished = int(max_finished)
        self.jobs: dict[str, Job] = {}
        self.finished: OrderedDict[str, float] = OrderedDict()
        self.idempotency: dict[str, str] = {}
        self.queue: deque[Job] = deque()
        self.running: list[Job] = []
        self.accepting = True
        self._stop_now = False
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._batch_seconds = 1.0  # moving average, for Retry-After
        self.stats = {"submitted": 0, "done": 0, "failed": 0, "cancelled": 0, "rejected_full": 0, "batches": 0,
                      "max_batch_seen": 0}

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            return
        for name, target in (("medregionct-worker", self._work), ("medregionct-reaper", self._reap)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def drain(self, timeout: float = 30.0) -> None:
        """Stop intake; finish queued and running jobs within ``timeout``; fail whatever is left."""
        with self._cond:
            if not self.accepting and self._stop_now:
                return
            self.accepting = False
            self._cond.notify_all()
        log.info("draining: %d queued, %d running; up to %.0f s", len(self.queue), len(self.running), timeout)
        end = time.monotonic() + timeout
        with self._cond:
            while (self.queue or self.running) and time.monotonic() < end:
                self._cond.wait(min(0.2, max(end - time.monotonic(), 0.01)))
            self._stop_now = True
            left = [j for j in list(self.queue) + list(self.running) if not j.terminal]
            self.queue.clear()
            for job in left:
                self._finish(job, FAILED, {"code": "shutdown", "message": "the server shut down before this job "
                                           "finished; submit the case again when it is back"})
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5.0)
        log.info("drained; %d job(s) failed for the shutdown", len(left))

    # --- requests -------------------------------------------------------------------------------------------
    def submit(self, body: bytes, keys: list[str], empty: list[str], idempotency_key: str | None = None) -> Job:
        with self._cond:
            if idempotency_key and idempotency_key in self.idempotency:
                job = self.jobs.get(self.idempotency[idempotency_key])
                if job is not None:
                    return job
            if not self.accepting:
                raise ShuttingDown()
            if len(self.queue) >= self.max_queue:
                self.stats["rejected_full"] += 1
                raise QueueFull(self.retry_after())
            job = Job(body, keys, empty, self.job_timeout_s)
            if idempotency_key:
                job.idempotency_key = idempotency_key
                self.idempotency[idempotency_key] = job.id
            self.jobs[job.id] = job
            self.queue.append(job)
            self.stats["submitted"] += 1
            self._cond.notify_all()
            return job

    def retry_after(self) -> int:
        batches_ahead = len(self.queue) / self.max_batch + 1
        return int(min(max(math.ceil(self._batch_seconds * batches_ahead), 1), 120))

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self.jobs.get(job_id)

    def status(self, job: Job) -> dict:
        with self._cond:
            position = None
            if job.state == QUEUED:
                position = next((i for i, j in enumerate(self.queue) if j is job), None)
            return job.status(position)

    def cancel(self, job_id: str) -> Job | None:
        with self._cond:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            if job.state == QUEUED:
                self.queue.remove(job)
            self._finish(job, CANCELLED)
            self._cond.notify_all()
            return job

    def counts(self) -> dict:
        with self._cond:
            return {"queued": len(self.queue), "running": len(self.running), "accepting": self.accepting,
                    **self.stats}

    # --- internals ------------------------------------------------------------------------------------------
    def _finish(self, job: Job, state: str, error: dict | None = None) -> None:
        """Call with the lock held."""
        if job.finish(state, error):
            self.finished[job.id] = time.monotonic()
            self.stats[state] = self.stats.get(state, 0) + 1
            if state == FAILED:
                log.warning("job %s failed: %s", job.id, (error or {}).get("code"))

    def _reap(self) -> None:
        while True:
            with self._cond:
                if self._stop_now:
                    return
                now, mono = time.time(), time.monotonic()
                for job in [j for j in list(self.queue) + self.running if j.deadline < now and not j.terminal]:
                    if job in self.queue:
                        self.queue.remove(job)
                    self._finish(job, FAILED, {"code": "timeout", "message": f"the job did not finish within "
                                               f"{self.job_timeout_s:g} s; the server is overloaded or the case "
                                               "too large, submit it again later"})
                while self.finished:
                    job_id, when = next(iter(self.finished.items()))
                    if mono - when < self.result_ttl_s and len(self.finished) <= self.max_finished:
                        break
                    self.finished.popitem(last=False)
                    job = self.jobs.pop(job_id, None)
                    if job is not None and job.idempotency_key:
                        self.idempotency.pop(job.idempotency_key, None)
                self._cond.notify_all()
                self._cond.wait(0.25)

    def _take_batch(self) -> list[Job] | None:
        with self._cond:
            while not self.queue:
                if self._stop_now:
                    return None
                self._cond.wait(0.25)
            if self._stop_now:
                return None
            end = time.monotonic() + self.batch_wait_s  # let concurrent submissions join this batch
            while 0 < len(self.queue) < self.max_batch and self.accepting and not self._stop_now \
                    and time.monotonic() < end:
                self._cond.wait(max(end - time.monotonic(), 0.001))
            batch = []
            while self.queue and len(batch) < self.max_batch:
                job = self.queue.popleft()
                job.start()
                batch.append(job)
            self.running = list(batch)
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:
                continue
            t0 = time.monotonic()
            try:
                self._run(batch, split_on_error=len(batch) > 1)
            finally:
                with self._cond:
                    self.running = []
                    self.stats["batches"] += 1
                    self.stats["max_batch_seen"] = max(self.stats["max_batch_seen"], len(batch))
                    self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * (time.monotonic() - t0)
                    self._cond.notify_all()

    def _run(self, batch: list[Job], split_on_error: bool) -> None:
        prepared, live = [], []
        for job in batch:
            try:
                case, _ = decode_case(job.body, self.spec)  # validated at submission; decoded again only now
            except Exception as exc:  # noqa: BLE001 - never lose a job to an unexpected error
                with self._cond:
                    self._finish(job, FAILED, {"code": "bad_payload", "message": str(exc)})
                continue
            prepared.append(case)
            live.append(job)
        if not live:
            return

        def on_region(index: int, key: str, value: dict) -> None:
            with self._cond:
                live[index].add_region(key, value)

        def cancel() -> bool:
            with self._cond:
                return self._stop_now or all(j.terminal for j in live)

        def progress(fraction: float, message: str) -> None:
            with self._cond:
                for job in live:
                    if not job.terminal and not job.regions:
                        job.set_progress(0.0, message)

        try:
            reports = self.engine.generate(prepared, on_region=on_region, progress=progress, cancel=cancel)
        except CancelledError:
            with self._cond:
                for job in live:
                    self._finish(job, FAILED, {"code": "shutdown", "message": "the server stopped this job while "
                                               "shutting down; submit the case again"})
            return
        except Exception as exc:  # noqa: BLE001 - the model failed: report it on the jobs, keep serving
            del prepared
            if split_on_error:
                log.warning("batch of %d failed (%s: %s); retrying its jobs one by one", len(live),
                            type(exc).__name__, exc)
                for job in live:
                    if not job.terminal:
                        job.regions.clear()
                        self._run([job], split_on_error=False)
                return
            log.exception("job %s failed in the model", live[0].id)
            with self._cond:
                for job in live:
                    self._finish(job, FAILED, {"code": "model_error", "message": f"the model failed on this case "
                                               f"({type(exc).__name__}: {str(exc)[:300]})"})
            return
        with self._cond:
            for job, report in zip(live, reports):
                for key, value in report.items():
                    job.add_region(key, value)  # any region the stream hook missed
                self._finish(job, DONE)
