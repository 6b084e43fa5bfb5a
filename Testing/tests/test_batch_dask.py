"""`batch --engine dask` on a real dask.distributed LocalCluster (2 worker processes) over 6 tiny phantoms: every
case finished once, also when a worker is killed in the middle of a case; and the cohort table of the run holds
each case's own measurements.json values."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")
pq = pytest.importorskip("pyarrow.parquet")

from MedRegionCTLib.errors import ClusterError, InputError  # noqa: E402
from MedRegionCTLib.phantom import make_phantom  # noqa: E402
from MedRegionCTLib.pipeline.batch import run_batch  # noqa: E402
from MedRegionCTLib.pipeline.batch_state import STATE_DIR  # noqa: E402
from MedRegionCTLib.pipeline.cohort import build_cohort  # noqa: E402
from MedRegionCTLib.volume import write_nifti  # noqa: E402

FINDINGS = ("none", "nodule:RUL:12:solid,pleural_effusion:left:250")
CASES = [f"case{i}" for i in range(6)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Six cases from two phantoms (one without findings, one with a nodule and an effusion)."""
    folder = tmp_path_factory.mktemp("cts")
    for seed, findings in enumerate(FINDINGS):
        write_nifti(make_phantom("tiny", seed=seed + 1, findings=findings, truth_points=2**8).volume,
                    folder / f"case{seed}.nii.gz")
        for copy in (seed + 2, seed + 4):
            shutil.copy(folder / f"case{seed}.nii.gz", folder / f"case{copy}.nii.gz")
    return folder


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        yield cluster, client


def _worker_pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


def _finished_once(out: Path, result) -> dict:
    """Every case: one result, done; one complete folder; nothing left half-written or claimed."""
    assert sorted(c.name for c in result.cases) == CASES  # each case listed exactly once
    assert {c.status for c in result.cases} == {"done"}, [(c.name, c.status, c.error, c.note) for c in result.cases]
    runs = {}
    for name in CASES:
        record = json.loads((out / name / "case.json").read_text())
        assert record["case"] == name and record["status"] == "done"
        runs[name] = record
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")) == CASES
    assert not [p.name for p in out.iterdir() if ".partial" in p.name or ".old-" in p.name]
    assert not list((out / STATE_DIR / "claims").glob("*"))
    assert json.loads((out / "failures.json").read_text())["count"] == 0
    return runs


@pytest.fixture(scope="module")
def dask_run(inputs, cluster, tmp_path_factory):
    """One run of the six cases on the two workers; once each worker has finished a case, the worker process
    holding the claim of an unfinished case is killed (SIGKILL, as the out-of-memory killer does)."""
    _, client = cluster
    out = tmp_path_factory.mktemp("dask") / "out"
    pids = _worker_pids(client)
    killed = {}
    outcome = {}

    def run():
        try:
            outcome["result"] = run_batch(inputs, out, engine="dask", scheduler=client.scheduler.address,
                                          formats=("json",))
        except BaseException as error:  # surfaced by the tests
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while not killed and time.monotonic() < deadline and thread.is_alive():
        finished_by = set()
        for record in out.glob("case*/case.json"):
            with contextlib.suppress(OSError, ValueError):
                finished_by.add(json.loads(record.read_text())["pid"])
        for claim in (out / STATE_DIR / "claims").glob("*.claim") if finished_by >= pids else ():
            try:
                owner = json.loads(claim.read_text())
            except (OSError, ValueError):
                continue
            if owner["pid"] in pids and not (out / owner["case"] / "case.json").exists():
                os.kill(owner["pid"], signal.SIGKILL)  # mid-case: its claim is held, its folder not written
                killed.update(owner)
                break
        time.sleep(0.05)
    thread.join(timeout=300)
    assert not thread.is_alive(), "the batch did not end"
    client.wait_for_workers(2, timeout=60)  # the nanny's new worker process (it may have started after the run)
    return out, outcome, killed, pids, _worker_pids(client)


def test_two_dask_workers_finish_the_six_phantoms_each_once_though_one_is_killed_mid_case(dask_run):
    out, outcome, killed, pids, pids_after = dask_run
    assert killed, "no worker was caught in the middle of a case"
    assert "error" not in outcome, outcome.get("error")
    runs = _finished_once(out, outcome["result"])
    assert pids <= {r["pid"] for r in runs.values()} <= pids | pids_after  # both workers took cases, only workers
    assert os.getpid() not in pids | pids_after
    assert runs[killed["case"]]["pid"] != killed["pid"]  # the killed worker's case finished by another worker
    assert killed["pid"] not in pids_after and len(pids_after) == 2  # the nanny started a new worker
    summary = json.loads((out / "batch.json").read_text())
    assert summary["engine"]["engine"] == "dask" and summary["counts"] == {"done": 6, "skipped": 0, "failed": 0}


def test_slicer_process_directory_resumes_on_dask_and_by_shards(dask_run, inputs, cluster, monkeypatch):
    """The Slicer module's Logic (real MRML classes, no application) with the Dask engine and with shards, run
    again over the finished folder: nothing redone, and each shard lists exactly its own cases."""
    pytest.importorskip("slicer", reason="needs the MRML classes: pip install -e '.[test]' (slicer-core)")
    from slicer_module_loader import load_module

    from MedRegionCTLib.pipeline.shards import shard_of

    out = dask_run[0]
    _, client = cluster
    before = {n: (out / n / "case.json").stat().st_mtime_ns for n in CASES}
    logic = load_module(monkeypatch).MedRegionCTLogic()
    again = logic.processDirectory(str(inputs), str(out), engine="dask", scheduler=client.scheduler.address,
                                   formats=("json",))
    assert again.engine == {"engine": "dask", "scheduler": client.scheduler.address}
    assert sorted(c.name for c in again.cases) == CASES and {c.status for c in again.cases} == {"skipped"}
    for i in range(2):
        part = logic.processDirectory(str(inputs), str(out), shard=f"{i}/2", formats=("json",))
        assert part.shard == f"{i}/2" and {c.status for c in part.cases} <= {"skipped"}
        assert sorted(c.name for c in part.cases) == [n for n in CASES if shard_of(n, 2) == i]
        assert part.other_shards == len(CASES) - len(part.cases)
    assert {n: (out / n / "case.json").stat().st_mtime_ns for n in CASES} == before
    with pytest.raises(InputError, match="--workers is for --engine local"):
        logic.processDirectory(str(inputs), str(out), engine="dask", scheduler=client.scheduler.address, workers=2)


def test_cohort_table_holds_each_cases_own_measurements(dask_run):
    out = dask_run[0]
    result = build_cohort(out)
    assert result.scan.cases == CASES and not result.scan.failures and not result.scan.pending
    table = pq.read_table(out / "cohort.parquet").to_pylist()
    with open(out / "cohort.csv", encoding="utf-8") as fh:
        import csv

        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == len(table) == result.scan.rows
    checked = 0
    for name in CASES:
        measured = json.loads((out / name / "measurements.json").read_text())
        rows = {(r["record"], r["name"]): r for r in table if r["case"] == name and r["record"] in
                ("structure", "region")}
        for record, group in (("structure", "structures"), ("region", "regions")):
            assert {n for (rec, n) in rows if rec == record} >= set(measured[group])
            for entity, attrs in measured[group].items():
                row = rows[(record, entity)]
                for key, value in attrs.items():
                    if isinstance(value, int | float):
                        assert row[key] == value, (name, entity, key)
                        checked += 1
                for axis, value in zip("ras", attrs["centroid_ras"], strict=True):
                    assert row[f"centroid_{axis}_mm"] == value
        clinical = {(r["name"], r["side"], r["landmark"]): r for r in table
                    if r["case"] == name and r["record"] == "clinical"}
        ctr = measured["clinical"]["cardiothoracic_ratio"]
        assert clinical[("cardiothoracic_ratio", None, None)]["value"] == ctr["value"]
        assert clinical[("cardiothoracic_ratio", None, None)]["unit"] == ctr["unit"]
        for side in ("right", "left"):
            row = clinical[("lung_volume_ml", side, None)]
            assert row["value"] == measured["clinical"]["lung_volume_ml"][side] and row["unit"] == "mL"
        for landmark, attrs in measured["clinical"]["aorta_landmarks"]["landmarks"].items():
            assert clinical[("aorta_landmarks", None, landmark)]["diameter_mm"] == attrs["diameter_mm"]
        lesions = [r for r in table if r["case"] == name and r["record"] == "lesion"]
        assert sorted((r["kind"], r["id"], r["volume_ml"]) for r in lesions) == sorted(
            (les["kind"], les["id"], les["volume_ml"]) for les in measured["lesions"])
        report = json.loads((out / name / "report.json").read_text())
        findings = [r for r in table if r["case"] == name and r["record"] == "finding"]
        assert sorted((r["region"], r["kind"]) for r in findings) == sorted(
            (reg["key"], f["kind"]) for reg in report["regions"] for f in reg["findings"])
    assert checked > 6 * 500
    # the CSV holds the same numbers (written in full precision) and the units are stated
    csv_ctr = [r for r in csv_rows if r["record"] == "clinical" and r["name"] == "cardiothoracic_ratio"]
    parquet_ctr = [r for r in table if r["record"] == "clinical" and r["name"] == "cardiothoracic_ratio"]
    assert [float(r["value"]) for r in csv_ctr] == [r["value"] for r in parquet_ctr]
    schema = pq.read_schema(out / "cohort.parquet")
    assert schema.field("volume_ml").metadata == {b"unit": b"mL"}
    assert schema.field("max_diameter_mm").metadata == {b"unit": b"mm"}
    assert schema.field("hu_mean").metadata == {b"unit": b"HU"}
    columns = {c["name"]: c for c in json.loads((out / "cohort_columns.json").read_text())["columns"]}
    assert columns["value"]["unit"] == "per_row" and columns["volume_ml"]["type"] == "float"


def test_cohort_summary_counts_findings_and_draws_the_key_measures(dask_run):
    out = dask_run[0]
    build_cohort(out)
    table = pq.read_table(out / "cohort.parquet").to_pylist()
    md = (out / "cohort_summary.md").read_text()
    html = (out / "cohort_summary.html").read_text()
    effusions = [r for r in table if r["record"] == "finding" and r["kind"] == "pleural_effusion"]
    assert effusions  # the phantoms hold effusions: their count appears in the findings table
    line = next(li for li in md.splitlines() if li.startswith("| pleural_effusion |"))
    assert line.endswith(f"| {len(effusions)} | {len({r['case'] for r in effusions})} |")
    ctr = [r["value"] for r in table if r["record"] == "clinical" and r["name"] == "cardiothoracic_ratio"]
    mean = sum(ctr) / len(ctr)
    section = md.split("### Cardiothoracic ratio")[1].split("###")[0]
    assert f"| all | {len(ctr)} | 0 | {mean:.3f} |" in section
    for key in ("lung_volume", "ctr", "ascending_aorta", "pleural_effusion"):
        png = out / "cohort_plots" / f"{key}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"cohort_plots/{key}.png" in md
    assert html.count('src="data:image/png;base64,') >= 4 and "cohort_plots/" not in html  # self-contained
    assert "<h2>Failed cases</h2>\n<p>None.</p>" in html
    assert not math.isnan(mean)


def test_unreachable_scheduler_and_bad_engine_options_are_clear_errors(inputs, tmp_path):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
            pytest.raises(ClusterError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        run_batch(inputs, tmp_path / "out", engine="dask", scheduler="tcp://127.0.0.1:9")
    with pytest.raises(InputError, match="needs --scheduler"):
        run_batch(inputs, tmp_path / "out", engine="dask")
    with pytest.raises(InputError, match="--workers is for --engine local"):
        run_batch(inputs, tmp_path / "out", engine="dask", scheduler="tcp://127.0.0.1:9", workers=4)
    with pytest.raises(InputError, match="--engine 'spark'"):
        run_batch(inputs, tmp_path / "out", engine="spark")
    assert not (tmp_path / "out").exists()  # nothing written before the engine was checked


def test_cohort_csv_without_pyarrow_holds_the_same_values(dask_run, tmp_path, monkeypatch):
    from MedRegionCTLib.errors import MissingDependencyError
    from MedRegionCTLib.pipeline import cohort_table

    def no_pyarrow():
        raise MissingDependencyError("no pyarrow here")

    out = dask_run[0]
    monkeypatch.setattr(cohort_table, "_pyarrow", no_pyarrow)  # an install without the [cohort] extra
    with pytest.raises(MissingDependencyError, match="no pyarrow"):
        build_cohort(out, dest=tmp_path / "both", plots=False)
    build_cohort(out, dest=tmp_path / "csv", formats="csv", plots=False)
    import csv

    with open(tmp_path / "csv" / "cohort.csv", encoding="utf-8") as fh:
        plain = list(csv.DictReader(fh))
    table = pq.read_table(out / "cohort.parquet").to_pylist()
    assert len(plain) == len(table)
    for row, ref in zip(plain, table, strict=True):
        for column in ("case", "record", "name", "volume_ml", "value", "hu_mean"):
            expected = ref[column]
            assert (row[column] or None) == expected if not isinstance(expected, float) else \
                float(row[column]) == expected
