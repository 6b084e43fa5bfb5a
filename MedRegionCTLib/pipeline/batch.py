"""``run_batch(input_dir, out_dir)``: the main job over a folder of CTs, resumable, one failure never stops the rest.

Each case's files go to ``out_dir/<case>/``, written in a hidden ``.<case>.partial`` folder first and renamed
when complete, so a case folder with ``report.json`` is finished and is skipped on the next run. Failures are
recorded in ``out_dir/batch.json`` (and printed by the CLI) and the batch goes on.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

from ..atomic import write_json
from ..errors import CancelledError, InputError, MedRegionCTError
from ..progress import check_cancel, is_cancelled
from ..volume.nifti import NIFTI_SUFFIXES, nifti_stem
from ..volume.readers import is_ct_source
from .output_folder import check_writable_folder, swap_into_place
from .outputs import DEFAULT_FORMATS, REPORT_FILES

SUMMARY_FILE = "batch.json"


@dataclass
class CaseResult:
    name: str
    source: str
    status: str  # done | skipped (already finished) | failed
    seconds: float = 0.0
    error: str = ""
    findings: int = 0


@dataclass
class BatchResult:
    out_dir: str
    cases: list[CaseResult] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # entries of the input folder that are no CT
    cancelled: bool = False

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


def is_finished(case_dir: Path) -> bool:
    return (case_dir / REPORT_FILES["json"]).is_file()


def _limit_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ.setdefault(var, str(n))


def process_case(name: str, source: str, out_dir: str, options: dict) -> CaseResult:
    """Analyse one CT and write its folder; never raises for a bad case (the failure is in the result)."""
    from .analyze import analyze
    from .outputs import write_all

    start = time.perf_counter()
    final = Path(out_dir) / name
    partial = Path(out_dir) / f".{name}.partial"
    try:
        if partial.exists():
            shutil.rmtree(partial)
        analysis = analyze(source, segmenter=options.get("segmenter", "builtin"),
                           schema=options.get("schema", "radgenome10"),
                           reporter=options.get("reporter", "measurement"), lesions=options.get("lesions", True),
                           reporter_options=options.get("reporter_options"),
                           segmenter_options=options.get("segmenter_options"),
                           allow_non_chest=options.get("allow_non_chest", False))
        dicom_source = source if Path(source).is_dir() else None
        formats = [f for f in options.get("formats", DEFAULT_FORMATS) if f != "dicom" or dicom_source]
        write_all(partial, analysis, formats=formats, dicom_source=dicom_source, meta={"ct": source})
        swap_into_place(partial, final)  # replaces an unfinished folder of an earlier, interrupted run
        return CaseResult(name, source, "done", time.perf_counter() - start,
                          findings=len(analysis.report.findings))
    except Exception as error:  # one bad case must not stop the batch: record it and go on
        shutil.rmtree(partial, ignore_errors=True)
        message = str(error) if isinstance(error, MedRegionCTError) else \
            f"{type(error).__name__}: {error} ({traceback.format_exc(limit=-1).strip().splitlines()[-2].strip()})"
        return CaseResult(name, source, "failed", time.perf_counter() - start, error=message)


def _worker_init(threads: int) -> None:
    _limit_threads(threads)


def run_batch(input_dir, out_dir, workers: int = 1, segmenter: str = "builtin", schema: str = "radgenome10",
              reporter: str = "measurement", formats=DEFAULT_FORMATS, lesions: bool = True,
              reporter_options: dict | None = None, segmenter_options: dict | None = None, progress=None,
              cancel=None, on_case=None, allow_non_chest: bool = False) -> BatchResult:
    """Analyse every CT in ``input_dir`` into ``out_dir/<case>/``; skips finished cases, records failures.

    ``workers`` > 1 runs cases in separate processes. ``on_case(CaseResult)`` is called as each case ends.
    A scan that is not a chest CT fails its case (:class:`NotChestCTError`) unless ``allow_non_chest``.
    """
    if workers < 1:
        raise InputError(f"--workers {workers}: give 1 or more worker processes.")
    cases, ignored = find_cases(input_dir)
    if not cases:
        raise InputError(f"{input_dir} holds no CT (NIfTI, NRRD, MetaImage or DICOM series folder); check the "
                         "folder.")
    out = check_writable_folder(out_dir)
    options = {"segmenter": segmenter, "schema": schema, "reporter": reporter, "formats": tuple(formats),
               "lesions": lesions, "reporter_options": reporter_options,
               "segmenter_options": segmenter_options, "allow_non_chest": allow_non_chest}
    result = BatchResult(out_dir=str(out), ignored=ignored)
    todo = []
    for name, path in cases.items():
        if is_finished(out / name):
            result.cases.append(CaseResult(name, str(path), "skipped"))
        else:
            todo.append((name, str(path)))
    total = len(cases)

    def finished(case: CaseResult) -> None:
        result.cases.append(case)
        _write_summary(out, result)
        if on_case is not None:
            on_case(case)
        if progress is not None:
            progress(len(result.cases) / total, f"{case.name}: {case.status}")

    if progress is not None:
        progress(len(result.cases) / total, f"{len(result.cases)} case(s) already finished")
    try:
        if workers == 1 or len(todo) <= 1:
            for name, path in todo:
                check_cancel(cancel, "the batch")
                finished(process_case(name, path, str(out), options))
        else:
            threads = max(1, (os.cpu_count() or 1) // workers)
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                     initializer=_worker_init, initargs=(threads,)) as pool:
                pending = {pool.submit(process_case, name, path, str(out), options) for name, path in todo}
                while pending:
                    done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    for future in done:
                        finished(future.result())
                    if is_cancelled(cancel):
                        for future in pending:
                            future.cancel()
                        raise CancelledError("the batch was cancelled; finished cases are kept, run it again "
                                             "to do the rest.")
    except CancelledError:
        result.cancelled = True
    _write_summary(out, result)
    return result


def _write_summary(out: Path, result: BatchResult) -> None:
    data = asdict(result)
    data["counts"] = result.counts()
    write_json(out / SUMMARY_FILE, data)


def read_summary(out_dir) -> dict:
    return json.loads((Path(out_dir) / SUMMARY_FILE).read_text(encoding="utf-8"))
