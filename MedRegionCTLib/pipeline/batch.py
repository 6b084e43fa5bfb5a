"""``run_batch(input_dir, out_dir)``: the main job over a folder of CTs; no case lost, none counted twice.

Each case's files are written into a staging folder beside ``out_dir/<case>/`` and renamed into place when complete
(``output_folder.OutputFolder``), with ``case.json`` written last: a case folder is finished or absent, never half
there, and a finished case is skipped by every later run on any machine that shares ``out_dir``. While a process
works on a case it holds the case's claim file (``case_claims``), so two machines (two shards by mistake, two runs
resuming at once, a task Dask started twice) do not both analyse it; a claim of a process that died is taken over.

Cases run on an engine (``engines``: this machine's processes or a Dask cluster), optionally restricted to one
``shard`` (``shards``). A case that fails is tried once more at the end of the run; a case that fails again is
recorded in ``out_dir/.medregionct-batch/failed/`` and listed, with its error, in ``out_dir/failures.json``/``.csv``
(``batch_state``). ``batch.json`` holds the run's own summary.
"""

from __future__ import annotations

import json
import os
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import write_json
from ..errors import CancelledError, InputError, MedRegionCTError
from ..volume.nifti import NIFTI_SUFFIXES, nifti_stem
from ..volume.readers import is_ct_source
from . import batch_state
from .batch_state import CASE_FILE, is_finished
from .case_claims import HEARTBEAT_S, STALE_AFTER_S, host_name, try_claim
from .engines import make_engine
from .output_folder import check_writable_folder
from .outputs import DEFAULT_FORMATS
from .shards import parse_shard

SUMMARY_FILE = "batch.json"
SUMMARY_EVERY_S = 10.0  # batch.json is rewritten at most this often while the run goes on (and at its end)

__all__ = ["BatchResult", "CaseResult", "SUMMARY_FILE", "find_cases", "is_finished", "process_case",
           "read_summary", "run_batch"]


@dataclass
class CaseResult:
    name: str
    source: str
    status: str  # done | skipped (finished already, or by another process) | failed
    seconds: float = 0.0
    error: str = ""
    findings: int = 0
    attempts: int = 1
    first_error: str = ""  # the first attempt's error, when the retry failed otherwise
    host: str = ""
    note: str = ""  # why a case was skipped


@dataclass
class BatchResult:
    out_dir: str
    cases: list[CaseResult] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # entries of the input folder that are no CT
    cancelled: bool = False
    run_id: str = ""
    engine: dict = field(default_factory=dict)
    shard: str | None = None
    other_shards: int = 0  # cases of the input folder left to the other shards
    started: str = ""
    wall_seconds: float = 0.0

    @property
    def failed(self) -> list[CaseResult]:
        return [c for c in self.cases if c.status == "failed"]

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "skipped": 0, "failed": 0}
        for c in self.cases:
            out[c.status] = out.get(c.status, 0) + 1
        return out


def find_cases(input_dir) -> tuple[dict[str, Path], list[str]]:
    """Case name -> CT path (NIfTI, NRRD, MetaImage file or DICOM series folder); and the ignored entries."""
    input_dir = Path(input_dir).expanduser()
    if not input_dir.is_dir():
        raise InputError(f"{input_dir} is not a folder; give the folder holding the CTs (files or DICOM folders).")
    cases: dict[str, Path] = {}
    ignored = []
    for path in sorted(input_dir.iterdir()):
        name = path.name
        if name.startswith("."):
            continue
        if not is_ct_source(path):
            ignored.append(name)
            continue
        key = name if path.is_dir() else nifti_stem(path) if name.lower().endswith(NIFTI_SUFFIXES) else path.stem
        if key in cases:  # ct.nii and ct.nii.gz side by side: keep both, distinctly named
            key = name
        cases[key] = path
    return cases, ignored


def _error_text(error: BaseException) -> str:
    if isinstance(error, MedRegionCTError):
        return str(error)
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def process_case(name: str, source: str, out_dir: str, options: dict, attempt: int = 1) -> CaseResult:
    """Analyse one CT into ``out_dir/<name>/``; never raises for a bad case (the failure is in the result).

    Runs wherever the engine puts it (this process, a worker process, a Dask worker on another machine)."""
    from .analyze import analyze
    from .output_folder import OutputFolder
    from .outputs import write_all

    start = time.perf_counter()
    out = Path(out_dir)
    final = out / name

    def result(status: str, **kw) -> CaseResult:
        return CaseResult(name, source, status, round(time.perf_counter() - start, 3), attempts=attempt,
                          host=host_name(), **kw)

    if is_finished(final):
        return _finished_case(final, result, "already finished", options)
    claim, owner = try_claim(batch_state.claims_dir(out), name, options.get("run_id", ""),
                             heartbeat_s=options.get("heartbeat_s", HEARTBEAT_S),
                             stale_after_s=options.get("stale_after_s", STALE_AFTER_S))
    if claim is None:
        return result("skipped", note=f"being analysed by {owner.get('host', '?')} (process {owner.get('pid', '?')})")
    try:
        if is_finished(final):  # finished by the process whose claim was released just before ours
            return _finished_case(final, result, "already finished", options)
        folder = OutputFolder(final, overwrite=True, command="medregionct batch")
        staging = folder.start()
        try:
            analysis = analyze(source, segmenter=options.get("segmenter", "builtin"),
                               schema=options.get("schema", "radgenome10"),
                               reporter=options.get("reporter", "measurement"), lesions=options.get("lesions", True),
                               reporter_options=options.get("reporter_options"),
                               segmenter_options=options.get("segmenter_options"),
                               allow_non_chest=options.get("allow_non_chest", False))
            dicom_source = source if Path(source).is_dir() else None
            formats = [f for f in options.get("formats", DEFAULT_FORMATS) if f != "dicom" or dicom_source]
            write_all(staging, analysis, formats=formats, dicom_source=dicom_source, meta={"ct": source})
            findings = len(analysis.report.findings)
            write_json(staging / CASE_FILE, {
                "case": name, "source": source, "status": "done", "attempt": attempt, "host": host_name(),
                "pid": os.getpid(),
                "run": options.get("run_id", ""), "seconds": round(time.perf_counter() - start, 3),
                "findings": findings, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
            if is_finished(final):  # another process finished it meanwhile (its claim had looked abandoned)
                folder.discard()
                return _finished_case(final, result, "finished by another process meanwhile", options)
            folder.commit()
        except BaseException:
            folder.discard()
            raise
        return result("done", findings=findings)
    except Exception as error:  # one bad case must not stop the batch: record it and go on
        if is_finished(final):  # lost a rename race to another process: the case is complete all the same
            return _finished_case(final, result, "finished by another process meanwhile", options)
        return result("failed", error=_error_text(error))
    finally:
        claim.release()


def _finished_case(final: Path, result, note: str, options: dict) -> CaseResult:
    """The result for a case whose folder is finished already: "skipped" when an earlier run (or another one now)
    finished it; "done" when this run did, on a worker the engine lost before its result came back (Dask re-runs
    a task whose result died with its worker), so the run's counts hold each case it analysed once."""
    try:
        record = json.loads((final / CASE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    run_id = options.get("run_id", "")
    if not run_id or record.get("run") != run_id:
        return result("skipped", note=note)
    case = result("done", findings=record.get("findings", 0), note="finished by this run on a worker since lost")
    case.seconds, case.attempts = record.get("seconds", case.seconds), record.get("attempt", case.attempts)
    case.host = record.get("host", case.host)
    return case


def run_batch(input_dir, out_dir, workers: int = 1, segmenter: str = "builtin", schema: str = "radgenome10",
              reporter: str = "measurement", formats=DEFAULT_FORMATS, lesions: bool = True,
              reporter_options: dict | None = None, segmenter_options: dict | None = None, progress=None,
              cancel=None, on_case=None, allow_non_chest: bool = False, engine="local", scheduler=None,
              shard=None, retries: int = 1, stale_after_s: float = STALE_AFTER_S,
              heartbeat_s: float = HEARTBEAT_S) -> BatchResult:
    """Analyse every CT in ``input_dir`` into ``out_dir/<case>/``; skips finished cases, records failures.

    ``engine``: "local" (``workers`` processes of this machine; 1 runs in this process) or "dask" with
    ``scheduler`` (an address, a scheduler file or a ``distributed.Client``). ``shard``: "i/N" (or a
    :class:`~.shards.Shard`) runs only the cases of shard i of N. A failed case is tried ``retries`` more times
    at the end of the run. ``on_case(CaseResult)`` is called as each case ends for good. A scan that is not a
    chest CT fails its case (:class:`NotChestCTError`) unless ``allow_non_chest``.
    """
    runner = make_engine(engine, workers=workers, scheduler=scheduler)
    shard = parse_shard(shard)
    if int(retries) < 0:
        raise InputError(f"retries={retries}: give 0 or more.")
    cases, ignored = find_cases(input_dir)
    if not cases:
        raise InputError(f"{input_dir} holds no CT (NIfTI, NRRD, MetaImage or DICOM series folder); check the "
                         "folder.")
    runner.start()
    try:
        out = check_writable_folder(out_dir)
        return _run(runner, cases, ignored, out, shard, int(retries), progress, cancel, on_case, {
            "segmenter": segmenter, "schema": schema, "reporter": reporter, "formats": tuple(formats),
            "lesions": lesions, "reporter_options": reporter_options, "segmenter_options": segmenter_options,
            "allow_non_chest": allow_non_chest, "stale_after_s": stale_after_s, "heartbeat_s": heartbeat_s})
    finally:
        if hasattr(runner, "close"):
            runner.close()


def _run(runner, cases, ignored, out: Path, shard, retries, progress, cancel, on_case, options) -> BatchResult:
    run_id = f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    options = {**options, "run_id": run_id}
    selected = {n: p for n, p in cases.items() if shard is None or shard.holds(n)}
    result = BatchResult(out_dir=str(out), ignored=ignored, run_id=run_id, engine=runner.describe(),
                         shard=str(shard) if shard else None, other_shards=len(cases) - len(selected),
                         started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    summary = out / (SUMMARY_FILE if shard is None else f"batch-shard-{shard.index}-of-{shard.count}.json")
    batch_state.write_case_list(out, cases)
    clock = time.perf_counter()
    todo = []
    for name, path in selected.items():
        if is_finished(out / name):
            result.cases.append(CaseResult(name, str(path), "skipped", note="already finished"))
        else:
            todo.append((name, str(path)))
    total = max(len(selected), 1)
    last_write = [0.0]

    def write_summary(force: bool = False) -> None:
        if force or time.monotonic() - last_write[0] > SUMMARY_EVERY_S:
            result.wall_seconds = round(time.perf_counter() - clock, 3)
            data = asdict(result)
            data["counts"] = result.counts()
            write_json(summary, data)
            last_write[0] = time.monotonic()

    def final(case: CaseResult) -> None:
        result.cases.append(case)
        if case.status == "failed":
            batch_state.record_failure(out, {
                "case": case.name, "source": case.source, "error": case.error, "first_error": case.first_error,
                "attempts": case.attempts, "host": case.host, "run": run_id,
                "failed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        elif is_finished(out / case.name):
            batch_state.clear_failure(out, case.name)
        write_summary()
        if on_case is not None:
            on_case(case)
        if progress is not None:
            progress(len(result.cases) / total, f"{case.name}: {case.status}")

    if progress is not None:
        progress(len(result.cases) / total, f"{len(result.cases)} case(s) already finished")
    first_errors: dict[str, str] = {}
    try:
        for attempt in range(1, retries + 2):
            again = []

            def done(job, case, error, attempt=attempt, again=again) -> None:
                name, source = job[0], job[1]
                if error is not None:
                    case = CaseResult(name, source, "failed", error=_error_text(error), attempts=attempt)
                if case.status == "failed" and attempt <= retries:
                    first_errors.setdefault(name, case.error)
                    again.append((name, source))
                    return
                if case.status == "failed" and first_errors.get(name, case.error) != case.error:
                    case.first_error = first_errors[name]
                final(case)

            if todo:
                runner.check([out, *{Path(source).parent for _, source in todo}])
            runner.run(process_case, [(name, source, str(out), options, attempt) for name, source in todo], done,
                       cancel, key_prefix=f"medregionct-{run_id}")
            todo = again
            if not todo:
                break
    except CancelledError:
        result.cancelled = True
    write_summary(force=True)
    batch_state.write_failure_table(out)
    return result


def read_summary(out_dir, shard=None) -> dict:
    shard = parse_shard(shard)
    name = SUMMARY_FILE if shard is None else f"batch-shard-{shard.index}-of-{shard.count}.json"
    return json.loads((Path(out_dir) / name).read_text(encoding="utf-8"))
