"""Load test of the report server on loopback: N concurrent clients x M cases each, tiny CPU model.

    python Testing/benchmarks/bench_server_load.py [--clients 50] [--cases 10] [--max-queue 32] [--max-batch 8]

Starts ``medregionct serve --model tiny --device cpu`` in a subprocess, runs the clients as threads (each one
``ReportClient.report``: prepare, submit, follow the event stream, result), and prints: jobs done/failed/lost,
latency per case (submit to result) p50/p95/max, throughput, the server's peak RSS (VmHWM) and the server's
own counters (batches, largest batch, 429 answers). A queue smaller than the number of clients exercises the
back-pressure path (429 + Retry-After, client retries): no job may fail or be lost.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np

from MedRegionCTLib.client import ReportClient
from MedRegionCTLib.errors import MedRegionCTError
from MedRegionCTLib.model.tiny import synthetic_case


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def case_for(seed: int) -> dict:
    case = synthetic_case(seed)
    regions = case["regions"]
    case["regions"] = {"lung": regions["lung"], "heart": regions["heart"], "trachea and bronchie": regions["trachea"]}
    case["attributes"] = {"lung": case["attributes"]["lung"]}
    return case


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--max-queue", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "MedRegionCTLib.cli.main", "serve", "--model", args.model,
                               "--device", "cpu", "--port", str(port), "--max-queue", str(args.max_queue),
                               "--max-batch", str(args.max_batch), "--log-level", "warning"], env=env)
    try:
        t0 = time.monotonic()
        probe = ReportClient(url, retries=60, backoff=0.5, max_backoff=1.0)
        probe.health()
        info = probe.model_info()
        print(f"server up in {time.monotonic() - t0:.1f} s (model {info['model']['version']}, "
              f"RSS {rss_mb(server.pid):.0f} MB); {args.clients} clients x {args.cases} cases, "
              f"max_queue {args.max_queue}, max_batch {args.max_batch}")
        bodies = [probe.encode(case_for(seed)) for seed in range(8)]
        print(f"payload {np.mean([len(b) for b in bodies]) / 1e3:.1f} kB per case (tiny model grid)")

        latencies, failures, results = [], [], []
        lock = threading.Lock()
        peak = [0.0]
        done = threading.Event()

        def watch():
            while not done.is_set():
                with lock:
                    peak[0] = max(peak[0], rss_mb(server.pid))
                time.sleep(0.2)

        def run_client(index: int) -> None:
            client = ReportClient(url, timeout=120, retries=12, backoff=0.2, max_backoff=5.0)
            for j in range(args.cases):
                body = bodies[(index + j) % len(bodies)]
                t = time.monotonic()
                try:
                    result = client.report(body)
                    dt = time.monotonic() - t
                    with lock:
                        latencies.append(dt)
                        results.append(result["job_id"])
                except MedRegionCTError as exc:
                    with lock:
                        failures.append(f"client {index} case {j}: {exc}")
            client.close()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t_start = time.monotonic()
        threads = [threading.Thread(target=run_client, args=(i,)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - t_start
        done.set()
        counts = probe.model_info(refresh=True)["queue"]
        expected = args.clients * args.cases
        lat = np.asarray(latencies)
        print(f"jobs: {len(results)} done, {len(failures)} failed, {expected - len(results) - len(failures)} lost "
              f"(of {expected}); unique job ids {len(set(results))}")
        for line in failures[:5]:
            print("  " + line)
        if len(lat):
            print(f"latency per case: p50 {np.percentile(lat, 50):.2f} s, p95 {np.percentile(lat, 95):.2f} s, "
                  f"max {lat.max():.2f} s; throughput {len(lat) / wall:.1f} cases/s ({wall:.1f} s wall)")
        print(f"server RSS: peak {max(peak[0], rss_mb(server.pid, 'VmHWM')):.0f} MB (VmHWM), now "
              f"{rss_mb(server.pid):.0f} MB")
        print(f"server counters: {counts}")
        ok = not failures and len(results) == expected and counts["done"] >= expected
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
