"""Training throughput and model FLOP utilisation against this machine's measured matmul peak.

Trains the built-in tiny Qwen2 on alpaca_en_demo + identity (from ../shared/data/llamafactory)
with LoRA r=8 on all linear layers and with full fine-tuning, in several variants:

* ``padded``  — every batch padded to its longest sample (what peers run by default);
* ``packed``  — isolated packing into rows of ``max_length`` (position ids, no 2-D mask);
* ``packed+bf16`` — the same under bf16 autocast (measured, not assumed).

Each variant runs in its own process (so peak RSS is its own) and reports real tokens/s (tokens
of real samples, padding excluded), padding fraction, peak RSS, model FLOP/s and that as a share of
the fp32 matmul peak measured in this same run (``torch.matmul`` of large square matrices).

Model FLOPs per real token (documented formula):
  full: 6 * N_matmul + 12 * n_layers * d * L_ctx
  lora: 4 * N_matmul + 6 * N_adapter + 12 * n_layers * d * L_ctx
where N_matmul counts every weight used in a matmul per token (all linear layers including the
lm_head; embeddings are lookups), N_adapter the LoRA parameters, d the hidden size and L_ctx the
mean attended context per token (for a causal sample of length n: (n + 1) / 2). The 4N of LoRA is
the forward (2N) plus the input-gradient half of the backward (2N); frozen weights get no weight
gradient.

The last line is ``mfu_full=X mfu_lora=Y`` (best variant of each, fractions of the fp32 peak).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "llamafactory"
VARIANTS = {
    "padded": {"packing": False, "precision": "fp32"},
    "packed": {"packing": True, "precision": "fp32"},
    "packed+bf16": {"packing": True, "precision": "bf16"},
}


def matmul_peak(dtype: str, n: int = 2048, seconds: float = 3.0) -> float:
    """Sustained FLOP/s of a large square matmul in ``dtype`` on this machine."""
    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    torch.matmul(a, b)  # warm-up
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.matmul(a, b)
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - start)


def bench_config(method: str, variant: str, max_length: int) -> dict:
    v = VARIANTS[variant]
    return {
        "model": {"name": "builtin:tiny-qwen2"},
        "data": {
            "datasets": [
                {"path": str(SHARED / "alpaca_en_demo.json")},
                {"path": str(SHARED / "identity.json")},
            ],
            "identity": {"name": "Nova", "author": "the Tunesmith team"},
            "max_length": max_length,
            "packing": v["packing"],
            "truncation": "truncate_right",
        },
        "method": {"type": method, "lora": {"rank": 8, "alpha": 16, "targets": "all-linear"}},
        "train": {"lr": 1e-4, "batch_size": 8, "precision": v["precision"], "seed": 0},
    }


def run_variant(method: str, variant: str, steps: int, warmup: int, max_length: int) -> dict:
    """Train ``steps`` timed steps (after ``warmup``) and measure; runs in a child process."""
    import torch
    from accelerate import Accelerator

    from tunesmith.config.load import load_config
    from tunesmith.data.engine import prepare
    from tunesmith.model.adapters import apply_method
    from tunesmith.model.loader import load_model, load_tokenizer
    from tunesmith.train.loop import make_batches, train_step
    from tunesmith.train.recipes.sft import build_renderer, choose_precision, make_optimizer

    cfg = load_config(tree=bench_config(method, variant, max_length))
    torch.manual_seed(0)
    tok = load_tokenizer(cfg.model.name)
    data = prepare(cfg.data, build_renderer(cfg, tok))
    model = load_model(cfg.model.name, dtype="float32")
    model.config.use_cache = False
    model = apply_method(model, cfg.method)
    acc = Accelerator(mixed_precision=choose_precision(cfg.train.precision), cpu=True)
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    model, opt = acc.prepare(model, opt)
    model.train()
    batches = make_batches(
        data.train,
        batch_size=cfg.train.batch_size,
        max_length=cfg.data.max_length,
        packing=cfg.data.packing,
        pad_token_id=tok.pad_token_id,
        seed=0,
    )
    need = warmup + steps
    batches = (batches * (need // len(batches) + 1))[:need]
    real = fed = 0
    ctx_sum = 0.0
    for i, batch in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        train_step(model, opt, sched, acc, [batch], attn_implementation="sdpa", max_grad_norm=1.0)
        if i >= warmup:
            lens = _sample_lengths(batch)
            real += sum(lens)
            ctx_sum += sum(n * (n + 1) / 2 for n in lens)
            fed += batch["input_ids"].numel()
    seconds = time.perf_counter() - start
    cfgm = model.config if hasattr(model, "config") else model.module.config
    n_matmul = sum(
        m.weight.numel()
        for name, m in acc.unwrap_model(model).named_modules()
        if isinstance(m, torch.nn.Linear) and "lora_" not in name
    )
    n_adapter = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    l_ctx = ctx_sum / max(real, 1)
    attn = 12 * cfgm.num_hidden_layers * cfgm.hidden_size * l_ctx
    per_token = (6 * n_matmul if method == "full" else 4 * n_matmul + 6 * n_adapter) + attn
    return {
        "method": method,
        "variant": variant,
        "tokens_per_s": real / seconds,
        "padding_fraction": 1 - real / max(fed, 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "model_flops_per_s": per_token * real / seconds,
        "step_s": seconds / steps,
    }


def _sample_lengths(batch: dict) -> list[int]:
    if "seq_lens" in batch:
        return [n for row in batch["seq_lens"] for n in row]
    return [int(x) for x in batch["attention_mask"].sum(dim=1)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--methods", default="full,lora")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--child", nargs=2, metavar=("METHOD", "VARIANT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        out = run_variant(*args.child, args.steps, args.warmup, args.max_length)
        print("RESULT " + json.dumps(out))
        return

    if not SHARED.is_dir():
        sys.exit(f"missing {SHARED}: the shared demo data must sit beside the repository")
    peak32, peak16 = matmul_peak("fp32"), matmul_peak("bf16")
    print(f"matmul peak: fp32 {peak32 / 1e9:.1f} GFLOP/s, bf16 {peak16 / 1e9:.1f} GFLOP/s")
    results = []
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    for method in args.methods.split(","):
        for variant in args.variants.split(","):
            cmd = [sys.executable, __file__, "--child", method, variant]
            cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
            cmd += ["--max-length", str(args.max_length)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{method}/{variant} failed:\n{out.stderr[-2000:]}")
            r = json.loads(line[len("RESULT ") :])
            peak = peak16 if "bf16" in variant else peak32
            r["mfu"] = r["model_flops_per_s"] / peak32
            r["mfu_own_dtype"] = r["model_flops_per_s"] / peak
            results.append(r)
            print(
                f"{method:4s} {variant:12s} {r['tokens_per_s']:8,.0f} real tok/s  "
                f"pad {100 * r['padding_fraction']:4.1f}%  rss {r['peak_rss_mib']:6.0f} MiB  "
                f"{r['model_flops_per_s'] / 1e9:6.1f} GFLOP/s  mfu(fp32 peak) {r['mfu']:.3f}  "
                f"mfu(own dtype) {r['mfu_own_dtype']:.3f}"
            )
    for method in args.methods.split(","):
        mine = {r["variant"]: r for r in results if r["method"] == method}
        if "padded" in mine:
            for v, r in mine.items():
                if v != "padded":
                    ratio = r["tokens_per_s"] / mine["padded"]["tokens_per_s"]
                    print(f"{method}: {v} / padded = {ratio:.2f}x real tokens/s")
    best = {
        m: max((r["mfu"] for r in results if r["method"] == m), default=0.0)
        for m in ("full", "lora")
    }
    print(f"mfu_full={best['full']:.3f} mfu_lora={best['lora']:.3f}")


if __name__ == "__main__":
    main()
