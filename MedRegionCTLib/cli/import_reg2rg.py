"""`medregionct import-reg2rg CKPT --llama DIR --out OUT`: the published Reg2RG checkpoint as a MedRegionCT model."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "import-reg2rg", help="convert the published Reg2RG checkpoint into a MedRegionCT model folder",
        description="Convert Reg2RG's published checkpoint (a full Reg2RG state dict: RadFM 3D ViT, Perceiver, mask "
                    "ViT, projections, LLaMA-2-7B with LoRA) into a checkpoint of the reg2rg preset with Reg2RG's "
                    "preprocessing and prompt, for `medregionct report --reporter model:OUT` and "
                    "`medregionct serve --model OUT`. Nothing is downloaded.")
    p.add_argument("checkpoint", metavar="CKPT", help="the published checkpoint (.pth/.bin state dict or .safetensors)")
    p.add_argument("--llama", required=True, metavar="DIR",
                   help="the base LLaMA folder Reg2RG was trained on (Hugging Face layout: config, tokenizer, "
                        "weights); the output refers to it (stored relative to the output folder)")
    p.add_argument("--out", required=True, metavar="DIR", help="output checkpoint folder")
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"],
                   help="dtype of the language model when the output is used (default: float16, as Reg2RG ran)")
    p.add_argument("--lora-alpha", type=int, default=32,
                   help="LoRA alpha (not stored in the checkpoint; Reg2RG's code sets 32)")
    p.add_argument("--embed-llm", action="store_true",
                   help="store the checkpoint's own LM weights in OUT/llm (when they differ from --llama's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import shutil
    from pathlib import Path

    from ..errors import InputError, MissingDependencyError

    out = Path(args.out).expanduser()
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise InputError(f"--out {out} is not empty; pass --overwrite to replace it or choose another folder.")
        shutil.rmtree(out)
    try:
        from ..model.reg2rg import import_reg2rg
    except ImportError as error:
        raise MissingDependencyError(f"the import needs torch, transformers and peft ({error.name} is missing); "
                                     "pip install 'MedRegionCTLib[model]'") from None
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    try:
        summary = import_reg2rg(args.checkpoint, args.llama, partial, dtype=args.dtype, lora_alpha=args.lora_alpha,
                                embed_llm=args.embed_llm, log=(lambda m: None) if args.json else print)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(out)
    summary["out"] = str(out)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"{out}: reg2rg model, {summary['tensors']} tensors; base LM {summary['base_llm']}. Use it with "
              f"`medregionct report CT --reporter model:{out}` or `medregionct serve --model {out}`.")
    return 0
