"""`medregionct train` on a few synthetic phantoms: the loss falls, checkpoints are written atomically, and a run
interrupted (Ctrl-C) inside step 3 and resumed reaches the same weights, optimizer state and losses as an
uninterrupted run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("monai")

from MedRegionCTLib.cli.main import main  # noqa: E402
from MedRegionCTLib.errors import CancelledError, InputError  # noqa: E402
from MedRegionCTLib.train import TrainConfig, load_train_config  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache of prepared phantoms for every run of this module (each phantom is built once)."""
    return tmp_path_factory.mktemp("cases")


def _config(tmp_path, name, cache, steps=4, **train):
    return {
        "output_dir": str(tmp_path / name),
        "seed": 3,
        "model": {"preset": "hybrid", "tiny": {"hidden_size": 32, "vocab_size": 300, "vision_hidden": 16,
                                               "preprocess": {"grid": [16, 16, 8], "num_slices": 8,
                                                              "slice_size": 16}},
                  "config": {"prompt": {"use_attributes": False}, "generation": {"max_new_tokens": 8}}},
        "data": {"train": {"kind": "synthetic", "n": 3, "seed": 11, "regions": ["lung", "heart"],
                           "findings": ["nodule:RUL:12:solid", "cardiomegaly:1.3", "none"]},
                 "cache_dir": str(cache), "batch_size": 2},
        "optim": {"lr": 1e-2, "warmup": 0},
        "train": {"steps": steps, "checkpoint_every": 2, "log_every": 1, "keep_checkpoints": 3, **train},
    }


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "weights.safetensors"))


def test_train_stops_resumes_and_matches_an_uninterrupted_run(tmp_path, cache):
    import torch

    from MedRegionCTLib.train.trainer import Trainer

    full = Trainer(TrainConfig.from_dict(_config(tmp_path, "full", cache)), progress=False, log=lambda *_: None).run()
    assert full["steps"] == 4 and len(full["losses"]) == 4
    assert full["losses"][-1][1] < full["losses"][0][1]  # it learns
    ckpts = tmp_path / "full" / "checkpoints"
    assert json.loads((ckpts / "latest.json").read_text()) == {"step": 4, "path": "step_000004"}
    assert (ckpts / "step_000002" / "model" / "medregion_config.json").is_file()
    assert not list(ckpts.glob(".*partial"))

    from MedRegionCTLib.train import trainer as trainer_module

    calls = []
    forward = trainer_module._LossModule.forward

    def forward_cut_in_step_three(self, cases, rng):
        calls.append(1)
        if len(calls) == 3:
            rng.random()  # the cut step has drawn from the RNGs already: the checkpoint must not keep that
            torch.rand(3)
            raise KeyboardInterrupt
        return forward(self, cases, rng)

    cut = Trainer(TrainConfig.from_dict(_config(tmp_path, "cut", cache)), progress=False, log=lambda *_: None)
    trainer_module._LossModule.forward = forward_cut_in_step_three
    try:
        with pytest.raises(KeyboardInterrupt):
            cut.run()
    finally:
        trainer_module._LossModule.forward = forward
    cut_ckpts = tmp_path / "cut" / "checkpoints"
    assert json.loads((cut_ckpts / "latest.json").read_text())["step"] == 2

    resumed = Trainer(TrainConfig.from_dict(_config(tmp_path, "cut", cache)), progress=False, log=lambda *_: None).run()
    assert resumed["start_step"] == 2 and resumed["steps"] == 4
    assert [s for s, _ in resumed["losses"]] == [3, 4]
    assert np.allclose([v for _, v in resumed["losses"]], [v for _, v in full["losses"][2:]], rtol=1e-5, atol=1e-6)
    a, b = _weights(ckpts / "step_000004"), _weights(cut_ckpts / "step_000004")
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    sa = torch.load(ckpts / "step_000004" / "trainer_state.pt", weights_only=True)
    sb = torch.load(cut_ckpts / "step_000004" / "trainer_state.pt", weights_only=True)
    assert sa["step"] == sb["step"] == 4 and sa["samples"] == sb["samples"] == 8
    assert sa["scheduler"]["last_epoch"] == sb["scheduler"]["last_epoch"] == 4
    for k, state in sa["optimizer"]["state"].items():
        torch.testing.assert_close(state["exp_avg_sq"], sb["optimizer"]["state"][k]["exp_avg_sq"], rtol=1e-4,
                                   atol=1e-9)
    with (tmp_path / "cut" / "log.csv").open() as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4]


def test_train_command_runs_a_config_file_with_evaluation(tmp_path, cache, capsys):
    data = _config(tmp_path, "cli", cache, steps=2, eval_at_start=True, precision="bf16", grad_accum=2,
                   tensorboard=True)  # written when tensorboard is installed, else a one-line notice
    data["data"]["eval"] = {"kind": "synthetic", "n": 1, "seed": 11, "regions": ["lung", "heart"],
                            "findings": ["nodule:RUL:12:solid"]}
    data["eval"] = {"metrics": ["BLEU-1", "ROUGE-L"]}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    assert main(["train", str(path), "--no-progress"]) == 0
    assert "trained steps 0 -> 2" in capsys.readouterr().out
    with (tmp_path / "cli" / "eval.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["step"] for r in rows] == ["0", "2"]
    assert {"BLEU-1", "ROUGE-L", "CE_micro_f1", "region_name_accuracy"} <= set(rows[0])
    metrics = json.loads((tmp_path / "cli" / "eval" / "step_000002_metrics.json").read_text())
    assert metrics["clinical_efficacy"]["labels"][2] == "Cardiomegaly"
    assert (tmp_path / "cli" / "eval" / "step_000002_predictions.csv").is_file()
    # checkpoints/best holds the model of the best evaluation (BLEU-4 is not computed here: the first metric)
    best = json.loads((tmp_path / "cli" / "checkpoints" / "best.json").read_text())
    scores = {int(r["step"]): float(r["BLEU-1"]) for r in rows}
    assert best["metric"] == "BLEU-1" and best["value"] == max(scores.values())
    assert best["step"] == min(s for s, v in scores.items() if v == best["value"])
    from MedRegionCTLib.model import MedRegionModel

    assert MedRegionModel.from_pretrained(tmp_path / "cli" / "checkpoints" / "best").config.llm.train == "lora"
    # running again resumes at the end and trains nothing more
    assert main(["train", str(path), "--no-progress", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["start_step"] == 2
    # --no-resume starts again: the logs of the earlier run are replaced, not appended to
    assert main(["train", str(path), "--no-progress", "--no-resume", "--steps", "1"]) == 0
    with (tmp_path / "cli" / "log.csv").open() as handle:
        assert [r["step"] for r in csv.DictReader(handle)] == ["1"]


def test_cancel_before_the_first_step_writes_no_checkpoint(tmp_path, cache):
    from MedRegionCTLib.train.trainer import Trainer

    trainer = Trainer(TrainConfig.from_dict(_config(tmp_path, "stop", cache)), progress=False, cancel=lambda: True,
                      log=lambda *_: None)
    with pytest.raises(CancelledError):
        trainer.run()
    assert not list((tmp_path / "stop").glob("checkpoints/step_*"))


def test_best_metric_must_be_computed(tmp_path, cache):
    data = _config(tmp_path, "bad", cache)
    data["eval"] = {"metrics": ["BLEU-1"], "best_metric": "METEOR"}
    with pytest.raises(InputError, match="eval.best_metric 'METEOR' is not computed"):
        TrainConfig.from_dict(data)


def test_config_errors_are_one_line(tmp_path):
    with pytest.raises(InputError, match="exactly one of train.steps"):
        TrainConfig.from_dict({"data": {"train": {"kind": "synthetic", "n": 1}}, "train": {}})
    with pytest.raises(InputError, match="unknown key"):
        TrainConfig.from_dict({"data": {"train": {"kind": "synthetic"}}, "train": {"steps": 1, "lr": 1}})
    toml = tmp_path / "c.toml"
    toml.write_text('output_dir = "x"\n[data.train]\nkind = "synthetic"\nn = 2\n[train]\nsteps = 3\n')
    assert load_train_config(toml).train.steps == 3
    with pytest.raises(InputError, match="not found"):
        load_train_config(tmp_path / "none.json")


@pytest.mark.slow
def test_torchrun_two_gloo_processes_train_together(tmp_path, cache):
    """Multi-process training through torchrun (DDP over gloo on the CPU): about a minute on 2 cores."""
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    data = _config(tmp_path, "ddp", cache, steps=2)
    data["data"]["batch_size"] = 1
    path = tmp_path / "ddp.json"
    path.write_text(json.dumps(data))
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "MedRegionCTLib.cli.main",
                           "train", str(path), "--no-progress", "--json"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2
    with (tmp_path / "ddp" / "log.csv").open() as handle:
        assert [int(r["samples"]) for r in csv.DictReader(handle)] == [2, 4]  # 1 case x 2 processes per step


def test_example_radgenome_config_is_valid():
    from pathlib import Path

    from MedRegionCTLib.model import preset

    path = Path(__file__).parents[1] / "benchmarks" / "train_radgenome_chestct.toml"
    config = load_train_config(path)
    assert config.train.precision == "bf16" and config.data.train["kind"] == "radgenome"
    assert config.eval.best() == "BLEU-4" and config.train.epochs == 10
    # the model sections are valid model configuration sections
    model = preset(config.model.preset, **config.model.config)
    assert model.llm.train == "lora" and model.vision2d.enabled and model.vision3d.enabled
