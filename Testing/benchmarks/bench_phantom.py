"""Phantom generation: wall time, peak memory and label-map accuracy per preset.

    python Testing/benchmarks/bench_phantom.py [--presets tiny,small,standard] [--findings all]

Prints, per preset: seconds, peak RSS, and the largest relative gap between label-map volumes and the
true (integrated) volumes over structures of 5 mL or more.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
from MedRegionCTLib.phantom import make_phantom
preset, findings = sys.argv[1], sys.argv[2]
t = time.perf_counter()
ph = make_phantom(preset, seed=0, findings=findings)
seconds = time.perf_counter() - t
gaps = {n: abs(s["label_map_volume_ml"] - s["volume_ml"]) / s["volume_ml"]
        for n, s in ph.truth["structures"].items() if s["volume_ml"] >= 5}
worst = max(gaps, key=gaps.get)
print(json.dumps({"preset": preset, "seconds": seconds, "voxels": int(ph.volume.array.size),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "structures_5ml": len(gaps), "worst_gap_pct": 100 * gaps[worst], "worst": worst}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,small,standard")
    parser.add_argument("--findings", default="all")
    args = parser.parse_args()
    print(f"{'preset':9s} {'voxels':>11s} {'seconds':>8s} {'peak MB':>8s} {'>=5 mL':>7s} {'worst gap':>10s}")
    for preset in args.presets.split(","):
        out = subprocess.run([sys.executable, "-c", CHILD, preset, args.findings], capture_output=True, text=True)
        if out.returncode:
            print(out.stderr)
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['preset']:9s} {r['voxels']:11d} {r['seconds']:8.1f} {r['peak_rss_mb']:8.0f} "
              f"{r['structures_5ml']:7d} {r['worst_gap_pct']:9.2f}% ({r['worst']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
