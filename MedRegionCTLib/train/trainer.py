"""The training loop: data loading with workers, mixed precision, gradient accumulation, checkpoint and exact
resume, evaluation during training, CSV/TensorBoard logs, progress, cancel, and several processes through
``torchrun`` (DistributedDataParallel; one process per GPU, or gloo processes on a CPU).

::

    trainer = Trainer(load_train_config("run.json"))
    summary = trainer.run()        # resumes from output_dir/checkpoints when a checkpoint is there

Multi-GPU: ``torchrun --nproc_per_node 4 -m MedRegionCTLib.cli.main train run.json``. Every process reads its
share of each global batch (the data order is one seeded permutation per epoch, split by rank), gradients are
averaged by DDP, and only rank 0 writes checkpoints, logs and evaluations.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import write_json
from ..errors import CancelledError, InputError
from ..progress import is_cancelled
from .checkpointing import (
    latest_checkpoint,
    load_training_checkpoint,
    prune_checkpoints,
    rng_state,
    save_training_checkpoint,
    update_best,
)
from .config import TrainConfig
from .datasets import PreparedDataset, collate_cases, die_with_parent, make_source
from .evaluation import generate_and_score, summary, write_evaluation

LOG_FIELDS = ("step", "epoch", "samples", "loss", "lr", "grad_norm", "elapsed_s")


# --- distributed ------------------------------------------------------------------------------------------
@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup_distributed(device_pref: str = "auto") -> DistInfo:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and start the process group when needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device_pref == "auto" else device_pref == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise InputError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'.")
    device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local, device)


def _barrier(dist: DistInfo) -> None:
    if dist.distributed:
        torch.distributed.barrier()


class _LossModule(nn.Module):
    """Wraps the model so that DDP sees the whole loss computation (encoders included) as one forward."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, cases, rng):
        return self.model.loss(cases, rng=rng)


class StreamSampler(torch.utils.data.Sampler):
    """An endless stream of dataset indices: epoch e is the permutation seeded by (seed, e); rank r of w takes
    every w-th position from ``start`` on (``start``: positions of the global stream already consumed)."""

    def __init__(self, n: int, seed: int, start: int = 0, rank: int = 0, world: int = 1):
        self.n, self.seed, self.start, self.rank, self.world = n, seed, start, rank, world

    def __iter__(self):
        position = self.start + self.rank
        perm_epoch, perm = -1, None
        while True:
            epoch, offset = divmod(position, self.n)
            if epoch != perm_epoch:
                perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
                perm_epoch = epoch
            yield int(perm[offset])
            position += self.world


def lr_lambda(schedule: str, total: int, warmup: float, min_ratio: float):
    warm = int(round(warmup * total)) if warmup < 1 else int(warmup)

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if schedule == "constant":
            return 1.0
        progress = min(max(step - warm, 0) / max(total - warm, 1), 1.0)
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
        return min_ratio + (1 - min_ratio) * shape

    return factor


# --- the model --------------------------------------------------------------------------------------------
TINY_DEFAULTS = {"hidden_size": 128, "layers": 2, "heads": 4, "vocab_size": 600, "vision_hidden": 32,
                 "patch_size": 8, "preprocess": {"grid": [32, 32, 16], "num_slices": 16, "slice_size": 32}}


def tiny_corpus(texts, regions, prompt) -> list[str]:
    """Texts a tiny tokenizer is trained on: the reports plus the prompt pieces for every slot number."""
    pieces = [prompt.global_intro, prompt.instruction, ". "]
    for i in range(max(len(regions), 1) + 1):
        pieces += [prompt.question.format(i=i), prompt.region_intro.format(i=i)]
        pieces += [prompt.answer.format(i=i, name=name, paragraph="") for name in regions]
    return (pieces + [t + " " for t in texts]) * 3


def _write_once(folder: Path, write) -> Path:
    """Write a folder under a temporary name and rename it (kept when it exists: a resumed run reuses it)."""
    if (folder / "config.json").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    write(tmp)
    os.replace(tmp, folder)
    return folder


def build_model(config: TrainConfig, texts, region_names, output_dir: Path, dist: DistInfo):
    """The model the config asks for, on ``dist.device`` (tiny base weights are written by rank 0 first)."""
    from ..model import MedRegionModel, preset
    from ..model.config import PromptConfig

    m = config.model
    if m.pretrained:
        return MedRegionModel.from_pretrained(m.pretrained, device=dist.device, trainable=True)
    overrides = {k: dict(v) for k, v in (m.config or {}).items()}
    if m.tiny is not None:
        from ..model.tiny import tiny_config, write_tiny_llm, write_tiny_vision2d

        unknown = sorted(set(m.tiny) - set(TINY_DEFAULTS) - {"seed"})
        if unknown:
            raise InputError(f"unknown model.tiny key(s) {unknown}; valid: {sorted(TINY_DEFAULTS)}.")
        t = {**TINY_DEFAULTS, **m.tiny}
        base = output_dir / "base"
        llm_dir, v2_dir = base / "llm", base / "vision2d"
        prep = {**TINY_DEFAULTS["preprocess"], **t["preprocess"], **overrides.pop("preprocess", {})}
        prompt = PromptConfig(**{k: v for k, v in overrides.get("prompt", {}).items()
                                 if k in PromptConfig.__dataclass_fields__})
        if dist.main:
            base.mkdir(parents=True, exist_ok=True)
            _write_once(llm_dir, lambda d: write_tiny_llm(
                d, tiny_corpus(texts, region_names, prompt), hidden_size=t["hidden_size"], layers=t["layers"],
                heads=t["heads"], vocab_size=t["vocab_size"], seed=int(t.get("seed", config.seed))))
            _write_once(v2_dir, lambda d: write_tiny_vision2d(
                d, image_size=int(prep["slice_size"]), patch_size=t["patch_size"], hidden_size=t["vision_hidden"],
                seed=int(t.get("seed", config.seed))))
        _barrier(dist)
        model_config = tiny_config(llm_dir, v2_dir, name=m.preset, preprocess=prep, **overrides)
    else:
        model_config = preset(m.preset, **overrides)
    return MedRegionModel.from_config(model_config, device=dist.device)


# --- the trainer ------------------------------------------------------------------------------------------
class Trainer:
    """One training run of ``config``; ``resume`` continues from the newest checkpoint in output_dir.

    ``train_source`` / ``eval_source`` (CaseSource objects built in Python, e.g. by a benchmark) replace
    ``data.train`` / ``data.eval`` of the config; ``cancel`` (an Event or a callable) stops after the current step
    with a checkpoint; ``log`` receives one-line messages.
    """

    def __init__(self, config: TrainConfig, resume: bool = True, progress: bool | None = None, cancel=None,
                 log=print, train_source=None, eval_source=None):
        self.config = config
        self.sources = (train_source, eval_source)
        self.resume = resume
        self.progress = progress
        self.cancel = cancel
        self.log = log
        self.output_dir = Path(config.output_dir)

    # -- setup --
    def _seed(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)  # noqa: NPY002 (third-party code may draw from the legacy global state)
        torch.manual_seed(seed)

    def _loader(self, dataset, sampler=None, batch_size: int = 1):
        workers = self.config.data.num_workers
        generator = torch.Generator()
        generator.manual_seed(self.config.seed)  # keeps DataLoader seeding off the global RNG (exact resume)
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_cases,
            persistent_workers=False, prefetch_factor=2 if workers else None, generator=generator,
            worker_init_fn=die_with_parent if workers else None)

    def _prepare_all(self, dataset, limit=None) -> list:
        n = len(dataset) if limit is None else min(limit, len(dataset))
        indices = list(range(n))
        loader = self._loader(torch.utils.data.Subset(dataset, indices))
        return [case for batch in loader for case in batch]

    def run(self) -> dict:
        cfg = self.config
        t_start, cpu_start = time.perf_counter(), time.process_time()
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # per-file loading bars would drown the training bar
        dist = setup_distributed(cfg.train.device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if cfg.train.precision == "fp16" and dist.device.type != "cuda":
            raise InputError("train.precision 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on a CPU.")
        out = self.output_dir
        if dist.main:
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "train_config.json", cfg.to_dict())
        if not cfg.data.train and self.sources[0] is None:
            raise InputError('the training config has no data.train dataset; add e.g. {"kind": "synthetic", "n": 16}.')
        train_source = self.sources[0] or make_source(cfg.data.train)
        eval_source = self.sources[1] or (make_source(cfg.data.eval) if cfg.data.eval else None)
        texts = train_source.texts() + (eval_source.texts() if eval_source is not None else [])
        region_names = sorted({n for s in (train_source, eval_source) if s is not None
                               for n in getattr(s, "regions", [])})

        self._seed(cfg.seed)
        model = build_model(cfg, texts, region_names, out, dist)
        self._seed(cfg.seed + dist.rank)
        cache = Path(cfg.data.cache_dir) if cfg.data.cache_dir else out / "cache"
        need = model.config.needed_inputs()
        train_set = PreparedDataset(train_source, model.config.preprocess, need, cache)
        eval_set = PreparedDataset(eval_source, model.config.preprocess, need, cache) if eval_source else None

        world_batch = cfg.data.batch_size * cfg.train.grad_accum * dist.world
        total = cfg.train.steps or max(1, math.ceil(cfg.train.epochs * len(train_set) / world_batch))
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                      weight_decay=cfg.optim.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(cfg.optim.schedule, total, cfg.optim.warmup, cfg.optim.min_lr_ratio))
        scaler = torch.amp.GradScaler("cuda") if cfg.train.precision == "fp16" else None
        rng = random.Random(cfg.seed + dist.rank)  # slot shuffling

        step = samples = 0
        resumed_from = None
        ckpt_dir = out / "checkpoints"
        if self.resume:
            latest = latest_checkpoint(ckpt_dir)
            if latest is not None:
                state = load_training_checkpoint(latest, model, optimizer, scheduler, scaler, rng)
                step, samples, resumed_from = state["step"], state["samples"], str(latest)
                if dist.distributed:  # each rank continues its own RNG stream
                    torch.manual_seed(cfg.seed + dist.rank + 7919 * step)
                    rng.seed(cfg.seed + dist.rank + 7919 * step)
                self.log(f"resumed from {latest} at step {step}")
        start_step = step
        if dist.main:  # rows written after the checkpoint we start from belong to a lost continuation
            for name in ("log.csv", "eval.csv"):
                self._trim_csv(out / name, start_step)
        trainable = sum(p.numel() for p in params)
        if dist.main:
            self.log(f"model: {trainable:,} trainable of {sum(p.numel() for p in model.parameters()):,} parameters; "
                     f"{len(train_set)} training cases, batch {cfg.data.batch_size} x {cfg.train.grad_accum} "
                     f"accumulation x {dist.world} process(es); {total} steps on {dist.device}")

        t_data = time.perf_counter()
        eval_cases = None
        if eval_set is not None and dist.main:
            eval_cases = self._prepare_all(eval_set, cfg.eval.max_cases)
        data_time = time.perf_counter() - t_data

        wrapped = _LossModule(model)
        if dist.distributed:
            wrapped = nn.parallel.DistributedDataParallel(
                wrapped, device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
                find_unused_parameters=cfg.train.find_unused_parameters)
        sampler = StreamSampler(len(train_set), cfg.seed, start=samples, rank=dist.rank, world=dist.world)
        batches = iter(self._loader(train_set, sampler, cfg.data.batch_size))

        evals: dict[int, dict] = {}
        losses: list[tuple[int, float]] = []
        writer = self._tensorboard(dist)
        if eval_cases is not None and cfg.train.eval_at_start and step == 0:
            evals[0] = self._evaluate(model, eval_cases, 0, writer)
        _barrier(dist)

        bar = None
        if dist.main:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=step, desc="train", unit="step",
                       disable=None if self.progress is None else not self.progress)
        window: list[float] = []
        t_loop = time.perf_counter()
        autocast = (torch.autocast(dist.device.type, dtype=torch.bfloat16) if cfg.train.precision == "bf16" else
                    torch.autocast("cuda", dtype=torch.float16) if cfg.train.precision == "fp16" else
                    contextlib.nullcontext())
        model.train()
        last_ckpt = None
        # the RNG states when the last step completed: what a checkpoint must hold if the next step is cut short
        snapshot = rng_state(rng)
        try:
            while step < total:
                if is_cancelled(self.cancel):
                    raise CancelledError("training was cancelled")
                step_loss = 0.0
                for micro in range(cfg.train.grad_accum):
                    cases = next(batches)
                    sync = (contextlib.nullcontext() if not dist.distributed or micro == cfg.train.grad_accum - 1
                            else wrapped.no_sync())
                    with sync:
                        with autocast:
                            loss = wrapped(cases, rng) / cfg.train.grad_accum
                        (scaler.scale(loss) if scaler else loss).backward()
                    step_loss += float(loss.detach())
                if scaler:
                    scaler.unscale_(optimizer)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)) \
                    if cfg.optim.grad_clip else float("nan")
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                samples += world_batch
                snapshot = rng_state(rng)
                if dist.distributed:
                    t = torch.tensor([step_loss], device=dist.device)
                    torch.distributed.all_reduce(t)
                    step_loss = float(t) / dist.world
                losses.append((step, step_loss))
                window.append(step_loss)
                if dist.main:
                    bar.update(1)
                    bar.set_postfix(loss=f"{step_loss:.4f}")
                    if step % cfg.train.log_every == 0 or step == total or step == start_step + 1:
                        row = {"step": step, "epoch": round(samples / len(train_set), 4), "samples": samples,
                               "loss": float(np.mean(window)), "lr": scheduler.get_last_lr()[0],
                               "grad_norm": grad_norm, "elapsed_s": round(time.perf_counter() - t_start, 2)}
                        self._append_csv(out / "log.csv", row, LOG_FIELDS)
                        if writer is not None:
                            writer.add_scalar("train/loss", row["loss"], step)
                            writer.add_scalar("train/lr", row["lr"], step)
                        window = []
                    if cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0 and step < total:
                        last_ckpt = self._checkpoint(model, optimizer, scheduler, scaler, step, samples, rng)
                    if (eval_cases is not None and cfg.train.eval_every and step % cfg.train.eval_every == 0
                            and step < total):
                        evals[step] = self._evaluate(model, eval_cases, step, writer)
                _barrier(dist)
        except (KeyboardInterrupt, CancelledError):
            if dist.main and step > start_step:
                optimizer.zero_grad(set_to_none=True)  # gradients of an unfinished step are dropped
                last_ckpt = self._checkpoint(model, optimizer, scheduler, scaler, step, samples, rng, snapshot)
                self.log(f"stopped at step {step}; checkpoint {last_ckpt}; run the same command to resume")
            if bar is not None:
                bar.close()
            raise
        train_time = time.perf_counter() - t_loop
        if bar is not None:
            bar.close()
        if dist.main:
            if step > start_step or last_ckpt is None:
                last_ckpt = self._checkpoint(model, optimizer, scheduler, scaler, step, samples, rng)
            if eval_cases is not None and step not in evals:
                evals[step] = self._evaluate(model, eval_cases, step, writer)
        if writer is not None:
            writer.close()
        result = {"steps": step, "start_step": start_step, "resumed_from": resumed_from,
                  "loss_first": losses[0][1] if losses else None,
                  "loss_last": float(np.mean([v for _, v in losses[-max(1, cfg.train.log_every):]])) if losses
                  else None,
                  "losses": losses, "train_time_s": train_time, "eval_data_time_s": data_time,
                  "total_time_s": time.perf_counter() - t_start,
                  "main_process_cpu_s": time.process_time() - cpu_start, "evals": evals,
                  "checkpoint": str(last_ckpt) if last_ckpt else None, "device": str(dist.device),
                  "world_size": dist.world}
        if dist.main:
            write_json(out / "summary.json", {k: v for k, v in result.items() if k != "losses"})
        _barrier(dist)
        self.model = model
        return result

    # -- helpers --
    def _checkpoint(self, model, optimizer, scheduler, scaler, step, samples, rng, snapshot=None) -> Path:
        folder = self.output_dir / "checkpoints"
        path = save_training_checkpoint(folder, model, optimizer, scheduler, scaler, step, samples, rng,
                                        export_model=self.config.train.export_model, rng_snapshot=snapshot)
        prune_checkpoints(folder, self.config.train.keep_checkpoints)
        return path

    def _evaluate(self, model, cases, step: int, writer) -> dict:
        cfg = self.config.eval
        settings = model.config.generation
        changes = {k: v for k, v in (("max_new_tokens", cfg.max_new_tokens), ("batch_size", cfg.batch_size))
                   if v is not None}
        if changes:
            import dataclasses

            settings = dataclasses.replace(settings, **changes)
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            result = generate_and_score(model, cases, cfg.metrics, settings=settings, classifier=cfg.classifier)
        model.train()
        figures = summary(result)
        figures["eval_time_s"] = round(time.perf_counter() - t0, 2)
        write_evaluation(self.output_dir / "eval", step, result)
        metric = cfg.best()
        if metric not in figures:
            raise InputError(f"eval.best_metric {metric!r} is not among the evaluation figures "
                             f"({', '.join(sorted(figures))}); name one of them in the training config.")
        if update_best(self.output_dir / "checkpoints", model, step, metric, figures[metric]):
            self.log(f"checkpoints/best: step {step}, {metric} {figures[metric]:.4f}")
        self._append_csv(self.output_dir / "eval.csv", {"step": step, **figures}, ("step", *figures))
        if writer is not None:
            for key, value in figures.items():
                if value is not None:
                    writer.add_scalar(f"eval/{key}", value, step)
        shown = ", ".join(f"{k} {v:.3f}" for k, v in figures.items()
                          if v is not None and (k.startswith(("BLEU-1", "BLEU-4", "ROUGE-L", "METEOR"))
                                                or k in ("CE_micro_f1", "CE_macro_f1", "region_name_accuracy")))
        self.log(f"eval at step {step}: {shown}")
        return figures

    def _tensorboard(self, dist: DistInfo):
        if not (self.config.train.tensorboard and dist.main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.log("tensorboard is not installed; logging to CSV only (pip install tensorboard)")
            return None
        return SummaryWriter(str(self.output_dir / "tensorboard"))

    @staticmethod
    def _trim_csv(path: Path, step: int) -> None:
        """Keep the rows of ``path`` up to ``step`` (a fresh start, step 0, removes the file)."""
        if not path.is_file():
            return
        if step == 0:
            path.unlink()
            return
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[0])) <= step]
        if len(kept) < len(rows):
            import io

            from ..atomic import atomic_write

            buffer = io.StringIO()
            csv.writer(buffer).writerows(kept)
            text = buffer.getvalue()

            def _write(tmp):
                with open(tmp, "w", newline="", encoding="utf-8") as fh:
                    fh.write(text)

            atomic_write(path, _write)

    @staticmethod
    def _append_csv(path: Path, row: dict, fields) -> None:
        new = not path.is_file()
        if not new:
            with path.open(newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), None)
            fields = header or list(fields)
        with path.open("a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
