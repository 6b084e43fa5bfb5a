"""Generation speed of the region report model (the GPU benchmark): 10 regions x 100 new tokens per CT.

Measures preprocessing, encoding, prefill and decoding with the 10 regions batched into one ``generate`` call
versus one region at a time, several CTs batched into one call, and compares decoding tokens/s with the
memory-bandwidth bound (every decode step reads all LM weights once, so tokens/s <= batch x bandwidth / weight
bytes). The closing ``figures`` line gives seconds per CT, tokens per second, batched CTs per minute, peak
(GPU) memory and the ratio to the bandwidth bound.

    python Testing/benchmarks/bench_model_generate.py            # CUDA: 7B-shaped model in bf16; else a small one
    python Testing/benchmarks/bench_model_generate.py --size small --device cpu
    python Testing/benchmarks/bench_model_generate.py --size tiny --device cpu --new-tokens 4   # CI smoke run

The 7B-shaped configuration (LLaMA-2-7B + SigLIP-so400m + Reg2RG ViT, random weights, nothing downloaded) is
always built on the meta device first to report its parameter count.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

N_REGIONS = 10
NEW_TOKENS = 100
H200_BANDWIDTH_GBS = 4800.0  # HBM3e, vendor figure, for the estimate printed without a GPU

SMALL_LLM = {"model_type": "llama", "hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 8,
             "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 32000,
             "max_position_embeddings": 4096}
SMALL_SECTIONS = {
    "preprocess": {"grid": (64, 64, 32), "num_slices": 32},
    "vision2d": {"hf_config": {"model_type": "siglip_vision_model", "hidden_size": 128, "intermediate_size": 256,
                               "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 64,
                               "patch_size": 8}},
    "vision3d": {"patch_size": (16, 16, 8), "hidden_size": 128, "mlp_dim": 256, "num_layers": 2, "num_heads": 4,
                 "num_latents": 32, "perceiver_depth": 2, "perceiver_heads": 4, "perceiver_dim_head": 32},
    "mask": {"patch_size": (16, 16, 8), "hidden_size": 64, "mlp_dim": 128, "num_layers": 1, "num_heads": 4},
}


TINY_LLM = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 2000, "max_position_embeddings": 2048}
TINY_SECTIONS = {
    "preprocess": {"grid": (32, 32, 16), "num_slices": 16},
    "vision2d": {"hf_config": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                               "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32,
                               "patch_size": 8}},
    "vision3d": {"patch_size": (16, 16, 8), "hidden_size": 32, "mlp_dim": 64, "num_layers": 1, "num_heads": 2,
                 "num_latents": 4, "perceiver_depth": 1, "perceiver_heads": 2, "perceiver_dim_head": 16},
    "mask": {"patch_size": (16, 16, 8), "hidden_size": 32, "mlp_dim": 64, "num_layers": 1, "num_heads": 2},
}


def peak_memory_gb(torch, device) -> tuple[float, str]:
    """(peak GB, what): GPU memory allocated by torch on CUDA, else the process's peak resident memory."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 1e9, "GPU memory allocated"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, "process resident memory (CPU run)"


def bench_case(shape=(160, 160, 96), seed=0) -> dict:
    """A body with 10 ellipsoid regions (the benchmark needs 10 regions, not anatomy)."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000, dtype=np.int16)
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    c = np.array(shape) / 2
    body = ((x - c[0]) / (shape[0] * 0.45)) ** 2 + ((y - c[1]) / (shape[1] * 0.4)) ** 2 < 1
    hu[body] = 40
    regions = {}
    for i in range(N_REGIONS):
        centre = c + rng.uniform(-0.25, 0.25, 3) * np.array(shape)
        radii = rng.uniform(0.06, 0.15, 3) * np.array(shape)
        mask = (((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
                + ((z - centre[2]) / radii[2]) ** 2 < 1) & body
        hu[mask] = int(rng.integers(-850, 80))
        regions[f"region_{i}"] = mask
    hu = (hu + rng.normal(0, 10, shape)).astype(np.int16)
    return {"volume": hu, "affine": np.diag([1.5, 1.5, 2.5, 1.0]), "regions": regions}


def memory_bandwidth_gbs(torch, device) -> float:
    """Measured copy bandwidth (read + write bytes / s) of a 512 MiB buffer."""
    n = 128 * 1024 * 1024  # float32 -> 512 MiB
    a = torch.ones(n, device=device)
    b = torch.empty_like(a)
    best = float("inf")
    for _ in range(5):
        sync(torch, device)
        t = time.perf_counter()
        b.copy_(a)
        sync(torch, device)
        best = min(best, time.perf_counter() - t)
    return 2 * a.numel() * a.element_size() / best / 1e9


def sync(torch, device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(torch, device, fn, repeat=1):
    best = float("inf")
    out = None
    for _ in range(repeat):
        sync(torch, device)
        t = time.perf_counter()
        out = fn()
        sync(torch, device)
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["auto", "tiny", "small", "7b"], default="auto")
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=NEW_TOKENS, help="new tokens per region")
    parser.add_argument("--cts", type=int, default=4, help="CTs batched into one generate call (CTs per minute)")
    args = parser.parse_args(argv)
    new_tokens = int(args.new_tokens)

    import torch

    from MedRegionCTLib.model import MedRegionModel
    from MedRegionCTLib.model.config import GenerationSettings, preset
    from MedRegionCTLib.model.llm import base_model
    from MedRegionCTLib.model.tiny import corpus_for, seven_b_config, train_tokenizer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    size = args.size if args.size != "auto" else ("7b" if device.startswith("cuda") else "small")
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else f", {torch.get_num_threads()} "
             "threads"))

    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp) / "tokenizer"
        train_tokenizer(corpus_for([]) * 3, 2000).save_pretrained(str(tok_dir))

        # --- the 7B-shaped configuration always builds (meta device: no memory) -------------------------
        t = time.perf_counter()
        with torch.device("meta"):
            big = MedRegionModel.from_config(seven_b_config(tok_dir))
        parts = big.num_parameters_by_part()
        total = sum(v[0] for v in parts.values())
        # a decode step reads every LM weight except the input embedding table (only the new token's row)
        llm_params = parts["llm"][0] - parts["llm"][1] - big.hidden_size * 32000
        print(f"\n7B-shaped hybrid config built on meta in {time.perf_counter() - t:.1f} s: "
              f"{total / 1e9:.3f} B parameters ({sum(v[1] for v in parts.values()) / 1e6:.1f} M trainable)")
        for part, (n, tr) in parts.items():
            print(f"  {part:20s} {n / 1e6:10.1f} M   trainable {tr / 1e6:8.1f} M")
        weight_gb = llm_params * 2 / 1e9
        print(f"  LM weights read per decode step in bf16: {weight_gb:.2f} GB -> decode bound on an H200 "
              f"({H200_BANDWIDTH_GBS:.0f} GB/s): "
              f"{H200_BANDWIDTH_GBS / weight_gb:.0f} tokens/s for one sequence, "
              f"{N_REGIONS * H200_BANDWIDTH_GBS / weight_gb:.0f} tokens/s for {N_REGIONS} batched (estimate)")
        del big

        # --- the model that is timed --------------------------------------------------------------------
        if size == "7b":
            config = seven_b_config(tok_dir).replace(llm={"gradient_checkpointing": False})
        elif size == "tiny":
            config = preset("hybrid", **TINY_SECTIONS,
                            llm={"hf_config": dict(TINY_LLM), "tokenizer_path": str(tok_dir), "dtype": "float32"})
        else:
            config = preset("hybrid", **SMALL_SECTIONS,
                            llm={"hf_config": dict(SMALL_LLM), "tokenizer_path": str(tok_dir), "dtype": "float32"})
        torch.manual_seed(0)
        t = time.perf_counter()
        with torch.device(device):
            model = MedRegionModel.from_config(config, device=device)
        model.eval()
        lm = base_model(model.llm)
        n_lm = sum(p.numel() for n, p in lm.named_parameters() if "lora_" not in n)
        embed = lm.get_input_embeddings().weight
        lm_bytes = sum(p.numel() * p.element_size() for n, p in lm.named_parameters() if "lora_" not in n) \
            - embed.numel() * embed.element_size()  # per decode step only one row of the input embeddings is read
        print(f"\ntimed model: {size}, LM {n_lm / 1e6:.1f} M parameters ({lm.dtype}), built in "
              f"{time.perf_counter() - t:.1f} s; global tokens {config.num_global_tokens()}, "
              f"region tokens {config.num_region_tokens()}")

        if torch.device(device).type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        case = bench_case(shape=(96, 96, 48) if size == "tiny" else (160, 160, 96))
        t_prep, prepared = timed(torch, device, lambda: model.prepare([case]))
        with torch.no_grad():
            t_enc, visual = timed(torch, device, lambda: model.encode(prepared), args.repeat)
        rows = model.builder.rows(prepared[0], 0)
        prompt_len = max(len(r.input_ids) for r in rows)
        print(f"one CT {case['volume'].shape}, {len(rows)} regions: preprocessing {t_prep:.2f} s, encoders "
              f"{t_enc * 1000:.0f} ms, prompt {prompt_len} tokens per region")

        from transformers import StoppingCriteria, StoppingCriteriaList

        class StepTimer(StoppingCriteria):
            """Time stamps of the decode steps (called once per new token): decoding time without the prefill."""

            def __init__(self):
                self.stamps = []

            def __call__(self, input_ids, scores, **kwargs):
                sync(torch, device)
                self.stamps.append(time.perf_counter())
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        def run(batch_rows, new_tokens, timer=None):
            settings = GenerationSettings(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
            from MedRegionCTLib.model.llm import generation_config

            gen = generation_config(settings, model.ids.eos, model.ids.pad, new_tokens)
            with torch.no_grad():
                inputs = model.collate(batch_rows, visual, padding_side="left")
                return model.llm.generate(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask,
                                          generation_config=gen,
                                          stopping_criteria=StoppingCriteriaList([timer] if timer else []))

        results = {}
        for mode, groups in (("batched", [rows]), ("one at a time", [[r] for r in rows])):
            t_pre, _ = timed(torch, device, lambda g=groups: [run(b, 1) for b in g], args.repeat)
            best = None
            for _ in range(max(args.repeat, 1)):
                timers = [StepTimer() for _ in groups]
                t_all, out = timed(torch, device, lambda g=groups, tm=timers: [run(b, new_tokens, t)
                                                                               for b, t in zip(g, tm)])
                # decoding: from the first new token to the last, summed over the generate calls
                decode = sum(t.stamps[-1] - t.stamps[0] for t in timers if len(t.stamps) > 1)
                if best is None or t_all < best[0]:
                    best = (t_all, out, decode)
            t_all, out, decode = best
            n_new = sum(o.shape[0] * o.shape[1] for o in out)
            decode = max(decode, 1e-9)
            results[mode] = (t_pre, t_all, n_new, decode)
            print(f"{mode:14s}: prefill {t_pre * 1000:8.1f} ms, generate {n_new} tokens in {t_all:7.2f} s "
                  f"-> {n_new / t_all:7.1f} tokens/s overall, {(n_new - len(rows)) / decode:7.1f} tokens/s decoding")
        speedup = results["one at a time"][1] / results["batched"][1]
        print(f"batching the {len(rows)} regions: {speedup:.1f}x faster end to end")

        bw = memory_bandwidth_gbs(torch, device)
        bound_1 = bw * 1e9 / lm_bytes
        ratio = {}
        for mode, batch in (("batched", len(rows)), ("one at a time", 1)):
            t_pre, t_all, n_new, decode = results[mode]
            achieved = (n_new - len(rows)) / decode
            ratio[mode] = achieved / (batch * bound_1)
            print(f"{mode:14s}: bandwidth bound {batch * bound_1:8.1f} tokens/s (measured copy bandwidth {bw:.1f} "
                  f"GB/s, {lm_bytes / 1e9:.3f} GB read per step) -> achieved "
                  f"{100 * ratio[mode]:5.1f} % of it")

        # several CTs in one generate call: what a server batching concurrent jobs reaches
        cases = [bench_case(shape=(96, 96, 48) if size == "tiny" else (160, 160, 96), seed=s) for s in range(args.cts)]
        settings = GenerationSettings(max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                      batch_size=N_REGIONS * args.cts)
        t_batch, _ = timed(torch, device, lambda: model.generate_reports(cases, settings=settings))
        per_ct = t_prep + t_enc + results["batched"][1]
        peak, what = peak_memory_gb(torch, device)
        t_pre, t_all, n_new, decode = results["batched"]
        figures = {"seconds_per_ct": round(per_ct, 3),
                   "tokens_per_s": round((n_new - len(rows)) / decode, 1),
                   "batched_cts_per_minute": round(60.0 * args.cts / t_batch, 2),
                   "peak_memory_gb": round(peak, 3),
                   "bandwidth_bound_ratio": round(ratio["batched"], 4)}
        print(f"{args.cts} CTs batched ({args.cts * N_REGIONS} sequences, preprocessing and encoders included): "
              f"{t_batch:.2f} s -> {figures['batched_cts_per_minute']} CTs/minute; peak {what} {peak:.2f} GB")
        print(f"figures ({size}, {device}, {lm.dtype}): seconds per CT {figures['seconds_per_ct']}, tokens per second "
              f"{figures['tokens_per_s']}, batched CTs per minute {figures['batched_cts_per_minute']}, peak memory "
              f"{figures['peak_memory_gb']} GB, ratio to the bandwidth bound {figures['bandwidth_bound_ratio']}")
    return figures


if __name__ == "__main__":
    main()
    sys.exit(0)
