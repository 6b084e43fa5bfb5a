"""Cases per minute of `medregionct batch` with each engine, the scheduling overhead per case, and the time to
collect the cohort table; all in one run on the same cores.

    python Testing/benchmarks/bench_cohort.py [--cases 12] [--workers 2] [--noop 50,250]

1. Throughput: ``--cases`` tiny phantom CTs (two phantoms, copied) analysed by the local engine in this process
   (``--workers 1``), by the local engine with ``--workers`` processes, and by a dask.distributed LocalCluster
   with ``--workers`` single-threaded worker processes (its start-up timed apart). Engine overhead per case =
   (wall x workers - sum of the cases' own seconds) / cases: worker start-up, imports, dispatch, idle tail.
2. Scheduling overhead per case: jobs whose case is already finished (``process_case`` returns at once after its
   checks) sent through each engine in two batch sizes; the slope of wall time over jobs is the cost of one case's
   round trip (submit, run the checks, return the result), the intercept the engine's start-up.
3. `medregionct cohort` over the finished cases, and over ``--cohort-copies`` copies of them (their JSON files
   only) in a separate process: cases and rows per second and that process's peak memory.

Figures depend on what else runs on the machine: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.pipeline.batch import process_case, run_batch
from MedRegionCTLib.pipeline.cohort import build_cohort
from MedRegionCTLib.pipeline.engines import DaskEngine, LocalEngine
from MedRegionCTLib.volume import write_nifti


def _inputs(folder: Path, cases: int) -> Path:
    folder.mkdir()
    for seed, findings in enumerate(("none", "nodule:RUL:12:solid,pleural_effusion:left:250")):
        write_nifti(make_phantom("tiny", seed=seed + 1, findings=findings, truth_points=2**8).volume,
                    folder / f"seed{seed}.nii.gz")
    for i in range(cases):
        shutil.copy(folder / f"seed{i % 2}.nii.gz", folder / f"case{i:03d}.nii.gz")
    for seed in range(2):
        (folder / f"seed{seed}.nii.gz").unlink()
    return folder


def _throughput(label: str, inputs: Path, out: Path, workers: int, **engine) -> dict:
    start = time.perf_counter()
    result = run_batch(inputs, out, formats=("json",), workers=workers if "scheduler" not in engine else 1,
                       **engine)
    wall = time.perf_counter() - start
    done = [c for c in result.cases if c.status == "done"]
    assert len(done) == len(result.cases), [(c.name, c.status, c.error) for c in result.cases]
    busy = sum(c.seconds for c in done)
    figures = {"engine": label, "cases": len(done), "wall_s": wall, "cases_per_min": 60 * len(done) / wall,
               "case_s_mean": busy / len(done), "overhead_per_case_s": (wall * workers - busy) / len(done)}
    print(f"{label:<28} {len(done)} cases in {wall:6.1f} s: {figures['cases_per_min']:5.1f} cases/min; mean case "
          f"{figures['case_s_mean']:.2f} s; engine overhead {figures['overhead_per_case_s']:.2f} s/case")
    return figures


def _noop_round_trips(label: str, engine, finished_out: Path, sizes) -> dict:
    """Jobs on finished cases: process_case returns 'skipped' after its checks (no analysis)."""
    names = sorted(p.name for p in finished_out.iterdir() if (p / "case.json").is_file())
    options = {"run_id": "bench"}
    walls = []
    for size in sizes:
        jobs = [(names[i % len(names)], "unused", str(finished_out), options, i) for i in range(size)]
        seen = []
        start = time.perf_counter()
        engine.run(process_case, jobs, lambda job, result, error, seen=seen: seen.append(
            result.status if result else repr(error)), key_prefix=f"bench-{size}-{time.time_ns()}")
        walls.append(time.perf_counter() - start)
        assert seen == ["skipped"] * size, seen[:3]
    slope = (walls[1] - walls[0]) / (sizes[1] - sizes[0])
    intercept = walls[0] - slope * sizes[0]
    print(f"{label:<28} {sizes[0]} jobs {walls[0]:.3f} s, {sizes[1]} jobs {walls[1]:.3f} s: "
          f"{1000 * slope:.2f} ms per case, start-up {intercept:.2f} s")
    return {"engine": label, "per_case_ms": 1000 * slope, "startup_s": intercept, "walls_s": walls}


def _large_cohort(finished: Path, large: Path, copies: int) -> dict:
    """`medregionct cohort` in its own process over ``copies`` case folders (JSON files only)."""
    sources = sorted(p for p in finished.iterdir() if (p / "case.json").is_file())
    large.mkdir()
    for i in range(copies):
        case = large / f"case{i:06d}"
        case.mkdir()
        for name in ("case.json", "measurements.json", "report.json"):
            shutil.copy(sources[i % len(sources)] / name, case / name)
    start = time.perf_counter()
    code = ("import resource, sys; from MedRegionCTLib.cli.main import main; code = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, "cohort", str(large), "--no-progress"], check=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    peak_mb = int(done.stderr.split()[-1]) / 1024  # ru_maxrss is in kB on Linux
    rows = json.loads((large / "cohort_columns.json").read_text())["rows"]
    size_mb = {s: (large / f"cohort.{s}").stat().st_size / 2**20 for s in ("parquet", "csv")}
    print(f"cohort of {copies} cases (own process): {rows} rows in {wall:.1f} s ({copies / wall:.0f} cases/s, "
          f"{rows / wall:.0f} rows/s), peak memory {peak_mb:.0f} MB; parquet {size_mb['parquet']:.1f} MB, "
          f"csv {size_mb['csv']:.1f} MB")
    return {"cases": copies, "rows": rows, "wall_s": wall, "peak_mb": peak_mb, "size_mb": size_mb}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--noop", default="50,250", help="two batch sizes of no-op jobs for the overhead slope")
    ap.add_argument("--cohort-copies", type=int, default=1000, metavar="N",
                    help="cases of the large cohort for the collection timing (0: skip)")
    ap.add_argument("--json", metavar="FILE", help="write the figures there")
    args = ap.parse_args()
    sizes = [int(s) for s in args.noop.split(",")]
    import distributed

    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at start")
    figures = {"throughput": [], "overhead": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = _inputs(tmp / "in", args.cases)
        figures["throughput"].append(_throughput("local, in this process", inputs, tmp / "serial", 1))
        figures["throughput"].append(_throughput(f"local, {args.workers} processes", inputs, tmp / "local",
                                                 args.workers))
        start = time.perf_counter()
        with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                      dashboard_address=None, silence_logs=50) as cluster, \
                distributed.Client(cluster) as client:
            figures["dask_cluster_start_s"] = time.perf_counter() - start
            print(f"dask LocalCluster with {args.workers} workers started in {figures['dask_cluster_start_s']:.1f} s")
            figures["throughput"].append(_throughput(f"dask, {args.workers} workers", inputs, tmp / "dask",
                                                     args.workers, engine="dask", scheduler=client))
            figures["overhead"].append(_noop_round_trips(f"dask, {args.workers} workers", DaskEngine(client),
                                                         tmp / "dask", sizes))
        figures["overhead"].append(_noop_round_trips("local, in this process", LocalEngine(1), tmp / "serial",
                                                     sizes))
        figures["overhead"].append(_noop_round_trips(f"local, {args.workers} processes", LocalEngine(args.workers),
                                                     tmp / "local", sizes))
        start = time.perf_counter()
        cohort = build_cohort(tmp / "dask")
        wall = time.perf_counter() - start
        figures["cohort"] = {"cases": len(cohort.scan.cases), "rows": cohort.scan.rows, "wall_s": wall}
        print(f"cohort table + summary: {len(cohort.scan.cases)} cases, {cohort.scan.rows} rows in {wall:.2f} s "
              f"({len(cohort.scan.cases) / wall:.1f} cases/s)")
        if args.cohort_copies:
            figures["large_cohort"] = _large_cohort(tmp / "dask", tmp / "large", args.cohort_copies)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
