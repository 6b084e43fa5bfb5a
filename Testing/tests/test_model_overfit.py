"""The whole model path learns: a tiny model reproduces 8 phantom CTs' region paragraphs exactly (slow:
about two minutes to build the phantoms and one to three to train on 2 CPU cores)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("monai")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "overfit_phantom.py"


@pytest.mark.slow
def test_tiny_model_overfits_eight_phantom_cases_to_exact_text(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("overfit_phantom", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main(["--steps", "200", "--cache", str(tmp_path / "cases")])
    out = capsys.readouterr().out
    assert "exact: 32/32" in out, out[-3000:]
    assert code == 0
