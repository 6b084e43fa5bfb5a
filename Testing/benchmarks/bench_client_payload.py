"""Upload size of one CT sent to the report server: the standard phantom (512x512x300) prepared on each model
preset's declared grid, encoded as the client sends it, versus the raw CT.

    python Testing/benchmarks/bench_client_payload.py [--preset standard] [--measure]

No server and no torch: the client prepares the case with ``model.preprocess`` and encodes it with
``client.codec`` exactly as ``ReportClient.encode`` does. ``--measure`` adds the measure layer's attribute
sentences (the text is a few hundred bytes; the arrays dominate).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from MedRegionCTLib.anatomy import build_regions, load_schema
from MedRegionCTLib.client.codec import InputSpec, decode_case, encode_case  # noqa: I001
from MedRegionCTLib.model.config import preset
from MedRegionCTLib.model.preprocess import prepare_case
from MedRegionCTLib.phantom import make_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="standard", choices=["tiny", "small", "standard"])
    parser.add_argument("--measure", action="store_true", help="add the measured attribute sentences")
    args = parser.parse_args()

    t = time.perf_counter()
    phantom = make_phantom(args.preset)
    schema = load_schema("radgenome10")
    regions = build_regions(phantom.labels, schema, phantom.volume)
    print(f"phantom {args.preset}: {phantom.volume.shape}, {phantom.volume.array.nbytes / 1e6:.1f} MB as int16 "
          f"({time.perf_counter() - t:.1f} s to build with its regions)")
    attributes = {}
    if args.measure:
        from MedRegionCTLib.measure import measure

        m = measure(phantom.volume, phantom.labels, schema)
        attributes = {k: " ".join(v) for k, v in m.sentences.items()}
    case = {"volume": phantom.volume, "regions": {r.key: r.mask for r in regions},
            "names": {r.key: r.region.name for r in regions}, "attributes": attributes}
    present = sum(1 for r in regions if r.mask.any())
    print(f"{present} non-empty regions of {len(regions)}; attribute text {sum(map(len, attributes.values()))} chars")
    print(f"{'model preset':<30} {'arrays':<34} {'float32 MB':>10} {'sent MB':>8} {'exact MB':>9} "
          f"{'no-zlib MB':>10} {'prepare s':>9} {'encode s':>8}")
    for name, slice_size in (("medregion", 384), ("reg2rg", None), ("hybrid", 384)):
        config = preset(name)
        pre = config.preprocess
        if slice_size:
            pre.slice_size = slice_size  # SigLIP-so400m/14 at 384 px, as the 7B-shaped configuration
        needed = config.needed_inputs()
        t = time.perf_counter()
        prepared = prepare_case(case, pre, needed)
        t_prep = time.perf_counter() - t
        t = time.perf_counter()
        body = encode_case(prepared, schema.name)
        t_enc = time.perf_counter() - t
        exact = encode_case(prepared, schema.name, exact=True)
        plain = encode_case(prepared, schema.name, compression="none")
        spec = InputSpec.from_preprocess(pre, needed, schema.name, schema.keys, max_regions=len(schema.keys),
                                         max_body_bytes=1 << 30)
        back, _ = decode_case(body, spec)
        err = max(float(np.abs(back.arrays[k] - v).max()) for k, v in prepared.arrays.items())
        float32 = sum(a.size * 4 for a in prepared.arrays.values())
        label = f"{name} (grid {'x'.join(map(str, pre.grid))})"
        arrays = ",".join(sorted(needed))
        print(f"{label:<30} {arrays:<34} {float32 / 1e6:>10.1f} {len(body) / 1e6:>8.2f} {len(exact) / 1e6:>9.2f} "
              f"{len(plain) / 1e6:>10.2f} {t_prep:>9.1f} {t_enc:>8.2f}   (max decode error {err:.4f}, "
              f"{len(body)} bytes)")


if __name__ == "__main__":
    main()
