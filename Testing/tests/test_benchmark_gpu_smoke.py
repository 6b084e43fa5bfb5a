"""CPU smoke run of the GPU benchmark (Testing/benchmarks/bench_model_generate.py): the same code as on a GPU,
a tiny model and a few tokens; every figure the GPU run reports comes out, positive and finite."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")


def test_gpu_benchmark_smoke_run_prints_every_figure(capsys):
    path = Path(__file__).parents[1] / "benchmarks" / "bench_model_generate.py"
    spec = importlib.util.spec_from_file_location("bench_model_generate", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = bench.main(["--size", "tiny", "--device", "cpu", "--new-tokens", "6", "--repeat", "1", "--cts", "2"])
    out = capsys.readouterr().out
    assert set(figures) == {"seconds_per_ct", "tokens_per_s", "batched_cts_per_minute", "peak_memory_gb",
                            "bandwidth_bound_ratio"}
    assert all(math.isfinite(v) and v > 0 for v in figures.values()), figures
    assert 0 < figures["bandwidth_bound_ratio"] < 1  # nothing decodes faster than its weights can be read
    assert "7B-shaped hybrid config built on meta" in out and "figures (tiny, cpu" in out
