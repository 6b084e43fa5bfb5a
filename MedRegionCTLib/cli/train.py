"""`medregionct train CONFIG`: train the region report model from a JSON or TOML configuration."""

from __future__ import annotations

import json
import os


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train the region report model (synthetic phantoms or RadGenome-ChestCT)",
        description="Train the region-focused report model from CONFIG (JSON or TOML; see "
                    "Testing/benchmarks/train_tiny_synthetic.json): datasets, model preset or tiny model, optimizer, "
                    "steps, mixed precision, gradient accumulation, checkpoints every N steps, evaluation on a "
                    "held-out split (NLG metrics and clinical efficacy), logs in OUTPUT/log.csv and eval.csv. "
                    "Runs again with the same output folder resume from the newest checkpoint; Ctrl-C saves one. "
                    "Several GPUs: torchrun --nproc_per_node N -m MedRegionCTLib.cli.main train CONFIG.")
    p.add_argument("config", metavar="CONFIG", help="training configuration (.json or .toml)")
    p.add_argument("--output-dir", default=None, metavar="DIR", help="override output_dir of the config")
    p.add_argument("--steps", type=int, default=None, help="override train.steps")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if checkpoints exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import MissingDependencyError
    from ..train.config import TrainConfig, load_train_config

    config = load_train_config(args.config)
    if args.output_dir or args.steps:
        data = config.to_dict()
        if args.output_dir:
            data["output_dir"] = args.output_dir
        if args.steps:
            data["train"]["steps"], data["train"]["epochs"] = args.steps, None
        config = TrainConfig.from_dict(data)
    try:
        from ..train.trainer import Trainer
    except ImportError as error:
        raise MissingDependencyError(f"training needs torch, transformers and peft ({error.name} is missing); "
                                     "pip install 'MedRegionCTLib[train]'") from None
    result = Trainer(config, resume=not args.no_resume, progress=False if args.no_progress else None).run()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only rank 0 reports
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "losses"}, indent=1, default=str))
    else:
        first, last = result["loss_first"], result["loss_last"]
        print(f"trained steps {result['start_step']} -> {result['steps']} in {result['train_time_s']:.1f} s "
              f"(total {result['total_time_s']:.1f} s); loss {first if first is None else round(first, 4)} -> "
              f"{last if last is None else round(last, 4)}; checkpoint {result['checkpoint']}")
    return 0
