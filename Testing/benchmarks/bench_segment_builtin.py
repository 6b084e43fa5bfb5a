"""Speed and peak memory of the built-in segmenter on the standard phantom (512 x 512 x 300 int16), on 2 cores.

A child process builds the phantom and writes the CT to a temporary .npy; a second fresh child pinned to two
CPUs (and limited to two BLAS/OpenMP threads) loads it, then runs ``BuiltinSegmenter().segment`` and prints the
wall time and the peak resident memory (resource.getrusage ru_maxrss), in total and above the baseline after
loading the CT. The acceptance target is under 30 s and under 3 GiB. Asserts nothing.

    .venv/bin/python Testing/benchmarks/bench_segment_builtin.py [--preset standard] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MAKE = r"""
import sys, numpy as np
from MedRegionCTLib.phantom import make_phantom
ph = make_phantom(sys.argv[1], seed=0, findings="default")
np.save(sys.argv[2], ph.volume.array)
np.save(sys.argv[3], ph.volume.affine)
"""

RUN = r"""
import json, os, resource, sys, time
if hasattr(os, "sched_setaffinity"):
    cpus = sorted(os.sched_getaffinity(0))[:2]
    os.sched_setaffinity(0, cpus)
import numpy as np
from MedRegionCTLib.segment.builtin import BuiltinSegmenter
from MedRegionCTLib.volume import Volume

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

vol = Volume(np.load(sys.argv[1]), np.load(sys.argv[2]))
base = peak()
times = []
for _ in range(int(sys.argv[3])):
    t0 = time.perf_counter()
    lm = BuiltinSegmenter().segment(vol)
    times.append(time.perf_counter() - t0)
cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
print(json.dumps({"seconds": times, "peak_bytes": peak(), "baseline_bytes": base, "cpus": cpus,
                  "array_bytes": vol.array.nbytes, "shape": list(vol.shape), "classes": len(lm.present())}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", MKL_NUM_THREADS="2")
    with tempfile.TemporaryDirectory() as tmp:
        ct, aff = Path(tmp) / "ct.npy", Path(tmp) / "affine.npy"
        subprocess.run([sys.executable, "-c", MAKE, args.preset, str(ct), str(aff)], check=True, env=env)
        out = subprocess.run([sys.executable, "-c", RUN, str(ct), str(aff), str(args.repeat)], check=True,
                             env=env, capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    gib = 1024.0**3
    print(f"built-in segmenter, phantom '{args.preset}' {r['shape']} int16 ({r['array_bytes'] / 2**20:.0f} MiB), "
          f"{r['cpus']} CPUs")
    print(f"  time: {', '.join(f'{s:.1f} s' for s in r['seconds'])}   (target < 30 s)")
    print(f"  peak resident memory: {r['peak_bytes'] / gib:.2f} GiB total, "
          f"{(r['peak_bytes'] - r['baseline_bytes']) / gib:.2f} GiB above the loaded CT   (target < 3 GiB)")
    print(f"  classes produced: {r['classes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
