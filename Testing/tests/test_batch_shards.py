"""`batch --shard i/N` as SLURM array tasks (separate processes, no engine) and two runs racing on one output
folder: every case analysed exactly once; a failed case retried, listed with its error and cleared once fixed;
the cohort of a shard run lists the failure; claim files taken over only from dead or silent owners."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from MedRegionCTLib.cli.main import main
from MedRegionCTLib.errors import InputError
from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.pipeline.batch_state import STATE_DIR
from MedRegionCTLib.pipeline.case_claims import host_name, read_claim, try_claim
from MedRegionCTLib.pipeline.shards import parse_shard, shard_of
from MedRegionCTLib.volume import write_nifti

GOOD = [f"ct{i:02d}" for i in range(4)]


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """A tiny phantom CT, and its exact label map beside it (labels.nii.gz) for ``_method``."""
    path = tmp_path_factory.mktemp("ct") / "chest.nii.gz"
    phantom = make_phantom("tiny", seed=5, findings="none", truth_points=2**8)
    write_nifti(phantom.volume, path)
    write_nifti(phantom.labels, path.parent / "labels.nii.gz")
    return path


def _method(ct) -> list[str]:
    """Every case is a copy of ``ct``: its label map is imported instead of segmented (0.8 s a case instead of 3 s;
    these tests are about shards, claims and failures, the built-in segmenter's batch runs are tested elsewhere)."""
    return ["--method", f"labels:{ct.parent / 'labels.nii.gz'}"]


def _folder(root, ct, names, broken=()):
    root.mkdir()
    for name in names:
        shutil.copy(ct, root / f"{name}.nii.gz")
    for name in broken:
        (root / f"{name}.nii.gz").write_bytes(b"\x1f\x8b not a gzip stream")
    return root


def _medregionct(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "MedRegionCTLib.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, **kw)


def _finished(out) -> list[str]:
    return sorted(p.name for p in out.iterdir() if (p / "case.json").is_file())


def test_shard_specification():
    assert parse_shard("2/5").index == 2 and str(parse_shard(" 0 / 1 ")) == "0/1" and parse_shard(None) is None
    for bad, message in (("5/5", "numbered from 0"), ("1-4", "give INDEX/COUNT"), ("0/0", "count 1 or more")):
        with pytest.raises(InputError, match=message):
            parse_shard(bad)
    names = [f"patient-{i}/scan" for i in range(2000)]
    shards = [[n for n in names if parse_shard(f"{i}/7").holds(n)] for i in range(7)]
    assert sorted(sum(shards, [])) == sorted(names)  # every name in exactly one shard
    assert min(map(len, shards)) > 2000 / 7 * 0.8  # and the shards about even
    assert shard_of("ct00", 7) == shard_of("ct00", 7) == 3  # fixed: crc32, not Python's salted hash()


def test_shard_array_covers_every_case_once_and_a_fixed_case_is_cleared(ct, tmp_path, capsys):
    inputs = _folder(tmp_path / "in", ct, GOOD, broken=["bad"])
    out = tmp_path / "out"
    procs = [_medregionct("batch", str(inputs), "--out", str(out), "--shard", f"{i}/3", *_method(ct),
                          "--formats", "json", "--no-progress") for i in range(3)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    owner = shard_of("bad", 3)
    for i, (proc, log) in enumerate(zip(procs, logs, strict=True)):
        assert proc.returncode == (1 if i == owner else 0), log
    done = []
    for i in range(3):
        summary = json.loads((out / f"batch-shard-{i}-of-3.json").read_text())
        mine = sorted(c["name"] for c in summary["cases"])
        assert mine == sorted(n for n in [*GOOD, "bad"] if shard_of(n, 3) == i)
        assert summary["other_shards"] == 5 - len(mine)
        done += [c["name"] for c in summary["cases"] if c["status"] == "done"]
    assert sorted(done) == GOOD == _finished(out)  # every good case done once, by its own shard
    failures = json.loads((out / "failures.json").read_text())["failures"]
    assert [(f["case"], f["attempts"]) for f in failures] == [("bad", 2)]  # retried once, then listed
    assert "gzip" in failures[0]["error"].lower() or "bad.nii.gz" in failures[0]["error"]
    assert (out / "failures.csv").read_text().splitlines()[1].startswith("bad,")

    assert main(["cohort", str(out), "--no-progress"]) == 0
    log = capsys.readouterr().out
    assert "4 finished case(s)" in log and "1 failed" in log
    md = (out / "cohort_summary.md").read_text()
    assert f"| bad | 2 | {failures[0]['error'].replace('|', chr(92) + '|')} |" in md
    assert "| 5 | 4 | 1 | 0 | 0 | 0 |" in md  # listed, finished, failed, being analysed, not run, unreadable

    shutil.copy(ct, inputs / "bad.nii.gz")  # the case fixed: its shard run again
    assert main(["batch", str(inputs), "--out", str(out), "--shard", f"{owner}/3", *_method(ct), "--formats",
                 "json", "--no-progress"]) == 0
    log = capsys.readouterr().out
    assert "1 done" in log, log
    assert _finished(out) == sorted([*GOOD, "bad"])
    assert json.loads((out / "failures.json").read_text()) == {"count": 0, "failures": []}
    assert not list((out / STATE_DIR / "failed").glob("*.json"))


def test_two_runs_racing_on_one_output_folder_analyse_each_case_once(ct, tmp_path):
    names = GOOD[:3]
    inputs = _folder(tmp_path / "in", ct, names)
    out = tmp_path / "out"
    out.mkdir()
    runs = [tmp_path / f"run{i}" for i in range(2)]
    procs = []
    for run in runs:  # two machines resuming the same cohort at once (batch.json is each run's own)
        run.mkdir()
        procs.append(_medregionct("batch", str(inputs), "--out", str(out), *_method(ct), "--formats", "json",
                                  "--no-progress", cwd=run))
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    done = [line for log in logs for line in log.splitlines() if " done, " in line]
    counts = [int(line.split(": ")[1].split(" done")[0]) for line in done]
    assert sum(counts) == len(names), logs  # each case analysed by one run only
    assert _finished(out) == names
    writers = {json.loads((out / n / "case.json").read_text())["run"] for n in names}
    assert 1 <= len(writers) <= 2
    assert not list((out / STATE_DIR / "claims").glob("*")) and not list(out.glob(".*partial*"))


def test_engine_options_on_the_command_line_are_checked_before_any_work(ct, tmp_path, capsys):
    inputs = _folder(tmp_path / "in", ct, GOOD[:1])
    for args, message in ((["--scheduler", "tcp://h:8786"], "--scheduler is for --engine dask"),
                          (["--engine", "dask"], "needs --scheduler ADDRESS"),
                          (["--engine", "dask", "--scheduler", "tcp://h:8786", "--workers", "2"],
                           "--workers is for --engine local"),
                          (["--shard", "3/3"], "numbered from 0")):
        assert main(["batch", str(inputs), "--out", str(tmp_path / "out"), *args]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["cohort", str(inputs)]) == 1
    assert "holds no case of `medregionct batch`" in capsys.readouterr().err


def test_a_claim_is_taken_over_only_from_a_dead_or_silent_owner(tmp_path):
    claims = tmp_path / "claims"
    first, _ = try_claim(claims, "c1", heartbeat_s=0.05)
    assert first is not None
    second, owner = try_claim(claims, "c1")
    assert second is None and owner["pid"] == os.getpid() and owner["host"] == host_name()
    time.sleep(0.2)  # the heartbeat keeps a live claim fresh: not stale after 0.1 s
    assert try_claim(claims, "c1", stale_after_s=0.1)[0] is None
    first.release()
    assert not (claims / "c1.claim").exists()

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (claims / "c2.claim").write_text(json.dumps({"case": "c2", "host": host_name(), "pid": int(dead.stdout),
                                                 "token": "dead"}))
    taken, _ = try_claim(claims, "c2")  # its process is gone: taken over at once
    assert taken is not None and read_claim(claims / "c2.claim")["token"] == taken.token
    taken.release()

    (claims / "c3.claim").write_text(json.dumps({"case": "c3", "host": "another-node", "pid": 1, "token": "far"}))
    assert try_claim(claims, "c3", stale_after_s=60)[0] is None  # another host, touched just now: alive
    old = time.time() - 120
    os.utime(claims / "c3.claim", (old, old))
    late, _ = try_claim(claims, "c3", stale_after_s=60)  # silent for 2 minutes: abandoned
    assert late is not None
    late.release()

    # the same run meets its own claim only when the engine gave the case to another worker (the first was lost)
    (claims / "c4.claim").write_text(json.dumps({"case": "c4", "host": "another-node", "pid": 1, "token": "lost",
                                                 "run": "run-1"}))
    assert try_claim(claims, "c4", run_id="run-2")[0] is None
    again, _ = try_claim(claims, "c4", run_id="run-1")
    assert again is not None
    again.release()


def test_many_processes_claiming_the_same_cases_get_each_case_once(tmp_path):
    claims = tmp_path / "claims"
    script = ("import sys, json; from MedRegionCTLib.pipeline.case_claims import try_claim\n"
              "won = [c for c in map(str, range(40)) if try_claim(sys.argv[1], c)[0] is not None]\n"
              "print(json.dumps(won), flush=True); sys.stdin.read()")  # alive, holding its claims, till told
    procs = [subprocess.Popen([sys.executable, "-c", script, str(claims)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    won = [c for p in procs for c in json.loads(p.stdout.readline())]
    for p in procs:
        p.stdin.close()
        p.wait(timeout=30)
    assert sorted(won, key=int) == [str(i) for i in range(40)]  # each case won by exactly one process


def test_a_case_this_run_finished_on_a_lost_worker_counts_as_done(tmp_path):
    """Dask runs a task again when the worker holding its result died before the result was fetched: the second
    run of the task finds the case finished by its own run and reports it done (not skipped), once."""
    from MedRegionCTLib.pipeline.batch import process_case

    case = tmp_path / "out" / "c1"
    case.mkdir(parents=True)
    (case / "case.json").write_text(json.dumps({"case": "c1", "status": "done", "run": "run-1", "seconds": 2.5,
                                                "findings": 3, "attempt": 1, "host": "node7"}))
    again = process_case("c1", "c1.nii.gz", str(tmp_path / "out"), {"run_id": "run-1"})
    assert (again.status, again.findings, again.host, again.seconds) == ("done", 3, "node7", 2.5)
    later = process_case("c1", "c1.nii.gz", str(tmp_path / "out"), {"run_id": "run-2"})
    assert (later.status, later.note) == ("skipped", "already finished")
    assert not list((tmp_path / "out" / STATE_DIR).glob("claims/*"))
