"""End to end: `medregionct report` on the standard phantom, as a user runs it, pinned to N cores.

    python Testing/benchmarks/bench_report.py [--preset standard] [--cores 2] [--findings default] [--keep DIR]

Writes the phantom CT once to a temporary folder, then times one `medregionct report CT --out DIR` subprocess
(read, built-in segmentation, measurement, measurement reporter, JSON/Markdown/HTML and segmentation files),
restricted to the first ``--cores`` CPUs with thread pools sized to match. Prints the wall time, the
pipeline's own stage timings (from report.json) and the peak memory of the subprocess. Goal: < 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from MedRegionCTLib.phantom import make_phantom
from MedRegionCTLib.volume import write_nifti


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="standard", choices=["tiny", "small", "standard"])
    ap.add_argument("--findings", default="default")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", default=None, metavar="DIR", help="write the outputs here and keep them")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_report_"))
    ct = work / "ct.nii.gz"
    t = time.perf_counter()
    write_nifti(make_phantom(args.preset, findings=args.findings).volume, ct)
    print(f"phantom ({args.preset}) written in {time.perf_counter() - t:.1f} s (not timed below)")
    out = Path(args.keep) if args.keep else work / "out"
    cores = sorted(os.sched_getaffinity(0))[: args.cores]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.cores), OPENBLAS_NUM_THREADS=str(args.cores),
               MKL_NUM_THREADS=str(args.cores), ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(args.cores))
    command = [sys.executable, "-m", "MedRegionCTLib.cli.main", "report", str(ct), "--out", str(out),
               "--no-progress", "--overwrite"]
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True,
                          preexec_fn=lambda: os.sched_setaffinity(0, cores))
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, sep="\n")
        return 1
    report = json.loads((out / "report.json").read_text())
    print(f"medregionct report on {args.cores} core(s) {cores}: {wall:.1f} s wall, peak memory {peak_mb:.0f} MB")
    for stage, seconds in report["provenance"]["timings_s"].items():
        print(f"  {stage:<8} {seconds:7.2f} s")
    sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    print("  outputs: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sorted(sizes.items())))
    print(f"goal < 60 s: {'met' if wall < 60 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
