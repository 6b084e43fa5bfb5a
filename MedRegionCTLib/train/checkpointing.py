"""Training checkpoints: everything needed to continue a run exactly where it stopped.

::

    OUTPUT/checkpoints/step_000050/
        trainer_state.pt        step, samples seen, optimizer, scheduler, grad scaler, RNG states (torch.save;
                                read back with weights_only=True)
        weights.safetensors     every tensor the run changes or initialised randomly (trainable parameters,
                                encoders, slot embeddings); the frozen base LM and a frozen 2D encoder that came
                                from a folder are re-read from their folders
        model/                  the model as save_pretrained() writes it (for generation and evaluation)
    OUTPUT/checkpoints/latest.json   {"step": 50, "path": "step_000050"}
    OUTPUT/checkpoints/best/         save_pretrained() of the model at the evaluation with the best eval.best_metric
    OUTPUT/checkpoints/best.json     {"step": 100, "metric": "BLEU-4", "value": 0.31, "path": "best"}

A checkpoint folder is written under a temporary name and renamed into place, and latest.json is replaced
atomically after it, so a crash never leaves a checkpoint that looks complete but is not.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_json
from ..errors import InputError

LATEST = "latest.json"
STATE = "trainer_state.pt"
WEIGHTS = "weights.safetensors"
MODEL_DIR = "model"


def resume_state_dict(model) -> dict[str, torch.Tensor]:
    """Tensors of ``model`` that are not re-read from the base folders when the model is built again."""
    cfg = model.config
    skip_v2 = bool(cfg.vision2d.enabled and cfg.vision2d.freeze and cfg.vision2d.path)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    out = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("llm.") and name not in trainable:
            continue
        if skip_v2 and name.startswith("vision2d.encoder.") and name not in trainable:
            continue
        out[name] = tensor.detach().to("cpu").contiguous()
    return out


def rng_state(python_rng: random.Random) -> dict:
    state = {"python": python_rng.getstate(), "torch": torch.get_rng_state(),
             "numpy": _numpy_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the legacy global state)
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def set_rng_state(state: dict, python_rng: random.Random) -> None:
    python_rng.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    legacy = (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    np.random.set_state(legacy)  # noqa: NPY002
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def save_training_checkpoint(folder: Path, model, optimizer, scheduler, scaler, step: int, samples: int,
                             python_rng: random.Random, export_model: bool = True, extra: dict | None = None,
                             rng_snapshot: dict | None = None) -> Path:
    """Write ``folder/step_{step:06d}`` atomically and point ``latest.json`` at it.

    ``rng_snapshot`` (from :func:`rng_state` taken when step ``step`` was complete) is stored instead of the
    current RNG states: a run interrupted inside step ``step + 1`` has drawn from them already.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:06d}"
    final = folder / name
    tmp = folder / f".{name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(resume_state_dict(model), str(tmp / WEIGHTS), metadata={"step": str(step)})
    state = {"step": int(step), "samples": int(samples), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict() if scheduler is not None else None,
             "scaler": scaler.state_dict() if scaler is not None else None,
             "rng": rng_snapshot or rng_state(python_rng), "extra": json.dumps(extra or {})}
    torch.save(state, tmp / STATE)
    if export_model:
        model.save_pretrained(tmp / MODEL_DIR)
    _put_in_place(tmp, final)
    write_json(folder / LATEST, {"step": int(step), "path": name})
    return final


def _put_in_place(tmp: Path, final: Path) -> None:
    """Rename the finished folder ``tmp`` to ``final``, replacing an older ``final`` (renamed aside first)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)


BEST = "best"
BEST_RECORD = "best.json"


def best_record(folder: Path) -> dict | None:
    path = Path(folder) / BEST_RECORD
    if not path.is_file() or not (Path(folder) / BEST).is_dir():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def update_best(folder: Path, model, step: int, metric: str, value) -> bool:
    """Export ``model`` to ``folder/best`` (atomically) when ``value`` of ``metric`` beats the recorded best
    (higher is better; a missing value never wins). ``best.json`` says which step and value it holds."""
    if value is None or not np.isfinite(float(value)):
        return False
    folder = Path(folder)
    record = best_record(folder)
    if record is not None and record.get("metric") == metric and float(value) <= float(record["value"]):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".best.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    _put_in_place(tmp, folder / BEST)
    write_json(folder / BEST_RECORD, {"step": int(step), "metric": metric, "value": float(value), "path": BEST})
    return True


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step folders (never the one latest.json names)."""
    if keep <= 0:
        return
    latest = latest_checkpoint(folder)
    steps = sorted(p for p in Path(folder).glob("step_*") if p.is_dir())
    for old in steps[:-keep]:
        if latest is None or old.resolve() != latest.resolve():
            shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(folder: Path) -> Path | None:
    folder = Path(folder)
    pointer = folder / LATEST
    if pointer.is_file():
        path = folder / json.loads(pointer.read_text(encoding="utf-8"))["path"]
        if (path / STATE).is_file():
            return path
    steps = sorted(p for p in folder.glob("step_*") if (p / STATE).is_file()) if folder.is_dir() else []
    return steps[-1] if steps else None


def load_training_checkpoint(path: Path, model, optimizer, scheduler, scaler, python_rng: random.Random) -> dict:
    """Restore the model tensors, optimizer, scheduler, scaler and RNG states; returns the trainer state."""
    from safetensors.torch import load_file

    path = Path(path)
    for name in (STATE, WEIGHTS):
        if not (path / name).is_file():
            raise InputError(f"checkpoint {path} lacks {name}; it is incomplete, resume from an earlier one or "
                             "start again with --no-resume.")
    weights = load_file(str(path / WEIGHTS))
    own = model.state_dict()
    unknown = sorted(set(weights) - set(own))
    wrong = sorted(k for k in set(weights) & set(own) if tuple(weights[k].shape) != tuple(own[k].shape))
    if unknown or wrong:
        raise InputError(f"checkpoint {path} does not match this model ({len(unknown)} unknown and {len(wrong)} "
                         f"mis-shaped tensors, e.g. {(unknown + wrong)[:2]}); the training config changed since it "
                         "was written, use a new output_dir or the original config.")
    model.load_state_dict(weights, strict=False)
    state = torch.load(path / STATE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], python_rng)
    return {"step": int(state["step"]), "samples": int(state["samples"]), "extra": json.loads(state["extra"])}
