"""The training configuration: one JSON or TOML file (no torch import), sections of plain data.

::

    {
      "output_dir": "runs/tiny",            # checkpoints/, log.csv, eval/ (relative to the working directory)
      "seed": 0,
      "model": {"preset": "hybrid", "tiny": {...} | null, "pretrained": null, "config": {section: {...}}},
      "data": {"train": {"kind": "synthetic", ...}, "eval": {...} | null, "cache_dir": null,
               "num_workers": 0, "batch_size": 4},
      "optim": {"lr": 3e-3, "weight_decay": 0.0, "betas": [0.9, 0.999], "grad_clip": 1.0,
                "schedule": "cosine", "warmup": 0.1, "min_lr_ratio": 0.0},
      "train": {"steps": 200, "epochs": null, "grad_accum": 1, "precision": "fp32", "checkpoint_every": 50,
                "keep_checkpoints": 2, "eval_every": 0, "eval_at_start": false, "log_every": 10,
                "tensorboard": false, "threads": 0, "device": "auto", "find_unused_parameters": true},
      "eval": {"metrics": ["BLEU-1", "BLEU-4", "ROUGE-L"], "max_cases": null, "max_new_tokens": null,
               "batch_size": null, "best_metric": null}
    }

``model``: ``pretrained`` (a folder written by ``save_pretrained``) continues training that model; otherwise
``preset`` with ``config`` overrides builds one from the local weights the config names (``llm.path``, ...),
and ``tiny`` (a mapping, may be empty) instead writes a tiny randomly initialised LM (tokenizer trained on the
dataset's reports) and 2D encoder under ``output_dir/base`` and scales the preset down (CPU runs, tests).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..model.config import section_from_dict

PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULES = ("constant", "cosine", "linear")


@dataclass
class ModelSection:
    preset: str = "hybrid"
    pretrained: str | None = None
    tiny: dict | None = None  # {"hidden_size", "layers", "heads", "vocab_size", "vision_hidden", "grid", ...}
    config: dict = field(default_factory=dict)  # MedRegionModelConfig section overrides


@dataclass
class DataSection:
    train: dict = field(default_factory=dict)
    eval: dict | None = None
    cache_dir: str | None = None  # default: output_dir/cache
    num_workers: int = 0
    batch_size: int = 4


@dataclass
class OptimSection:
    lr: float = 3e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    schedule: str = "cosine"
    warmup: float = 0.05  # fraction of the steps (< 1) or a number of steps (>= 1)
    min_lr_ratio: float = 0.0


@dataclass
class TrainSection:
    steps: int | None = None
    epochs: float | None = None
    grad_accum: int = 1
    precision: str = "fp32"
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    export_model: bool = True  # save_pretrained() folder inside each checkpoint
    eval_every: int = 0  # 0: only at the end (when an eval dataset is given)
    eval_at_start: bool = False
    log_every: int = 10
    tensorboard: bool = False
    threads: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda"
    find_unused_parameters: bool = True


@dataclass
class EvalSection:
    metrics: tuple[str, ...] = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "METEOR")
    max_cases: int | None = None
    max_new_tokens: int | None = None
    batch_size: int | None = None
    classifier: str | None = None  # RadBERT-class classifier folder for clinical efficacy (default: offline)
    # the evaluation figure that picks checkpoints/best (higher is better); None: BLEU-4 when it is computed,
    # else the first of ``metrics``
    best_metric: str | None = None

    def best(self) -> str:
        if self.best_metric:
            return self.best_metric
        return "BLEU-4" if "BLEU-4" in self.metrics else (self.metrics[0] if self.metrics else "CE_micro_f1")


_SECTIONS = {"model": ModelSection, "data": DataSection, "optim": OptimSection, "train": TrainSection,
             "eval": EvalSection}


def _section(cls, data, name: str):
    return cls() if data is None else section_from_dict(cls, data, name, what="training config")


@dataclass
class TrainConfig:
    output_dir: str = "runs/medregion"
    seed: int = 0
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        if not isinstance(data, dict):
            raise InputError("a training config must be a mapping of sections (output_dir, model, data, optim, "
                             "train, eval).")
        unknown = sorted(set(data) - set(_SECTIONS) - {"output_dir", "seed", "about"})
        if unknown:
            raise InputError(f"unknown training config key(s) {unknown}; valid: output_dir, seed, "
                             f"{', '.join(_SECTIONS)}.")
        config = cls(output_dir=str(data.get("output_dir", cls.output_dir)), seed=int(data.get("seed", 0)),
                     **{name: _section(sec, data.get(name), name) for name, sec in _SECTIONS.items()})
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def validate(self) -> None:
        t, o, d = self.train, self.optim, self.data
        if (t.steps is None) == (t.epochs is None):
            raise InputError("give exactly one of train.steps and train.epochs in the training config.")
        if t.steps is not None and t.steps < 1 or t.epochs is not None and t.epochs <= 0:
            raise InputError("train.steps / train.epochs must be positive.")
        if t.precision not in PRECISIONS:
            raise InputError(f"train.precision {t.precision!r} is unknown; use one of {PRECISIONS}.")
        if o.schedule not in SCHEDULES:
            raise InputError(f"optim.schedule {o.schedule!r} is unknown; use one of {SCHEDULES}.")
        if t.grad_accum < 1 or d.batch_size < 1 or d.num_workers < 0:
            raise InputError("train.grad_accum and data.batch_size must be >= 1, data.num_workers >= 0.")
        if t.device not in ("auto", "cpu", "cuda"):
            raise InputError(f"train.device {t.device!r} is unknown; use 'auto', 'cpu' or 'cuda'.")
        named = set(self.eval.metrics) | {"region_name_accuracy", "exact_paragraphs"}
        if self.eval.best() not in named and not self.eval.best().startswith("CE_"):
            raise InputError(f"eval.best_metric {self.eval.best_metric!r} is not computed; name one of eval.metrics "
                             f"({', '.join(self.eval.metrics)}), a CE_micro_f1-style clinical figure or "
                             "region_name_accuracy.")
        if self.model.pretrained and self.model.tiny is not None:
            raise InputError("model.pretrained and model.tiny exclude each other; keep one.")


def load_train_config(path) -> TrainConfig:
    """Read a training config from a ``.json`` or ``.toml`` file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"training config {path} not found; give a JSON or TOML file (see "
                         "Testing/benchmarks/train_tiny_synthetic.json).")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as tomllib
            except ModuleNotFoundError:
                raise InputError("reading TOML needs Python 3.11 (or the tomli package); use a JSON config.") \
                    from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise InputError(f"training config {path} is not valid TOML ({error}); fix the file.") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"training config {path} is not valid JSON ({error.msg} at line {error.lineno}); "
                             "fix the file.") from None
    return TrainConfig.from_dict(data)
