"""GPU throughput of the report server: CTs per minute and latency per CT, with and without batching, on a
7B-shaped random model (LLaMA-2-7B + SigLIP-so400m + Reg2RG ViT shapes; nothing downloaded).

    python Testing/benchmarks/bench_server_gpu.py                       # needs CUDA; says so otherwise
    python Testing/benchmarks/bench_server_gpu.py --size small --device cpu --cts 4 --clients 2   # dry run

For each ``--max-batch`` value (default 1 = no batching, and 8) a real uvicorn server on 127.0.0.1 serves the
model; ``--clients`` concurrent clients submit ``--cts`` CTs in all (10 regions each, every paragraph forced to
``--new-tokens`` tokens so runs are comparable) through ``ReportClient``. Printed: CTs/minute, latency per CT
p50/p95 (submit to result, queueing included), the server's batch counts, and GPU memory peak.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

SMALL_LLM = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4,
             "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 4000, "max_position_embeddings": 4096}
SMALL_SECTIONS = {
    "preprocess": {"grid": (64, 64, 32), "num_slices": 32},
    "vision2d": {"hf_config": {"model_type": "siglip_vision_model", "hidden_size": 64, "intermediate_size": 128,
                               "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 64, "patch_size": 16}},
    "vision3d": {"patch_size": (16, 16, 8), "hidden_size": 64, "mlp_dim": 128, "num_layers": 1, "num_heads": 2,
                 "num_latents": 8, "perceiver_depth": 1, "perceiver_heads": 2, "perceiver_dim_head": 16},
    "mask": {"patch_size": (16, 16, 8), "hidden_size": 32, "mlp_dim": 64, "num_layers": 1, "num_heads": 2},
}


def bench_ct(keys, shape=(160, 160, 96), seed=0) -> dict:
    """A body with one ellipsoid per region key (the server needs region masks, not anatomy)."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000, dtype=np.int16)
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij", sparse=True)
    c = np.array(shape) / 2
    body = ((x - c[0]) / (shape[0] * 0.45)) ** 2 + ((y - c[1]) / (shape[1] * 0.4)) ** 2 < 1
    body = np.broadcast_to(body, shape)
    hu[body] = 40
    regions = {}
    for key in keys:
        centre = c + rng.uniform(-0.25, 0.25, 3) * np.array(shape)
        radii = rng.uniform(0.06, 0.15, 3) * np.array(shape)
        mask = (((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
                + ((z - centre[2]) / radii[2]) ** 2 < 1) & body
        hu[mask] = int(rng.integers(-850, 80))
        regions[key] = mask
    hu = (hu + rng.normal(0, 10, shape)).astype(np.int16)
    return {"volume": hu, "affine": np.diag([1.5, 1.5, 2.5, 1.0]), "regions": regions,
            "attributes": {keys[0]: "A nodule with a diameter of 8.0 mm is identified in the right upper lobe."}}


def run_load(url: str, bodies: list, n_cts: int, n_clients: int):
    """``n_clients`` threads share ``n_cts`` reports; returns (latencies, failures, wall seconds)."""
    from MedRegionCTLib.client import ReportClient

    latencies, failures, lock = [], [], threading.Lock()
    todo = list(range(n_cts))

    def run_client():
        with ReportClient(url, timeout=3600, retries=8) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop()
                t0 = time.perf_counter()
                try:
                    client.report(bodies[i % len(bodies)])
                    with lock:
                        latencies.append(time.perf_counter() - t0)
                except Exception as exc:  # noqa: BLE001 - report every failure
                    with lock:
                        failures.append(str(exc))

    t = time.perf_counter()
    threads = [threading.Thread(target=run_client) for _ in range(n_clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return latencies, failures, time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["7b", "small"], default="7b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cts", type=int, default=32, help="CTs per run (default %(default)s)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default %(default)s)")
    parser.add_argument("--max-batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--new-tokens", type=int, default=100, help="tokens per region paragraph")
    args = parser.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"CUDA is not available (torch {torch.__version__}): the GPU throughput benchmark needs a CUDA GPU; "
              "nothing was measured. Dry run on a CPU: --size small --device cpu --cts 4 --clients 2")
        return 0

    from MedRegionCTLib.anatomy import load_schema
    from MedRegionCTLib.client import ReportClient
    from MedRegionCTLib.model import MedRegionModel
    from MedRegionCTLib.model.config import preset
    from MedRegionCTLib.model.tiny import corpus_for, seven_b_config, train_tokenizer
    from MedRegionCTLib.server.app import ServerSettings, create_app
    from MedRegionCTLib.server.engine import ModelEngine
    from MedRegionCTLib.server.run import ServerThread

    device = args.device
    schema = load_schema("radgenome10")
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp) / "tokenizer"
        train_tokenizer(corpus_for([]) * 3, 2000).save_pretrained(str(tok_dir))
        generation = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "batch_size": 128}
        if args.size == "7b":
            config = seven_b_config(tok_dir).replace(llm={"gradient_checkpointing": False}, generation=generation)
        else:
            config = preset("hybrid", **SMALL_SECTIONS, generation=generation,
                            llm={"hf_config": dict(SMALL_LLM), "tokenizer_path": str(tok_dir), "dtype": "float32"})
        torch.manual_seed(0)
        t = time.perf_counter()
        with torch.device(device):
            model = MedRegionModel.from_config(config, device=device)
        model.eval()
        print(f"{args.size} model on {device} built in {time.perf_counter() - t:.1f} s"
              + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else ""))
        engine = ModelEngine(model, schema, f"random {args.size}", "random", device)

        cts = [bench_ct(schema.keys, seed=i) for i in range(4)]
        probe_app = create_app(engine, ServerSettings(max_request_bytes=1 << 30))
        with ServerThread(probe_app) as srv, ReportClient(srv.url, timeout=600) as c:
            t = time.perf_counter()
            bodies = [c.encode(ct) for ct in cts]
            print(f"payload {np.mean([len(b) for b in bodies]) / 1e6:.2f} MB per CT ({len(schema.keys)} regions), "
                  f"client preparation {(time.perf_counter() - t) / len(cts):.2f} s per CT")
            c.report(bodies[0])  # warm-up (CUDA kernels, allocator)

        for max_batch in args.max_batch:
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            app = create_app(engine, ServerSettings(max_request_bytes=1 << 30, max_batch=max_batch,
                                                    max_queue=args.cts + 1, job_timeout_s=3600))
            with ServerThread(app) as srv:
                latencies, failures, wall = run_load(srv.url, bodies, args.cts, args.clients)
                counts = app.state.manager.counts()
            lat = np.asarray(latencies)
            mem = f", GPU memory peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" \
                if device.startswith("cuda") else ""
            print(f"max_batch {max_batch:2d}: {len(lat)} CTs in {wall:.1f} s -> {60 * len(lat) / wall:.1f} CTs/min; "
                  f"latency per CT p50 {np.percentile(lat, 50):.1f} s, p95 {np.percentile(lat, 95):.1f} s; "
                  f"{counts['batches']} batches (largest {counts['max_batch_seen']}); failed {len(failures)}{mem}")
            for line in failures[:3]:
                print("   ", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
