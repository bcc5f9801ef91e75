"""Training throughput and model FLOP utilisation against this machine's measured matmul peak.

Trains a bench model built by ``tunesmith model tiny`` (Qwen2, hidden 512, 4 layers, MLP 1536,
8 heads / 4 KV heads, the shipped BPE tokenizer: 14M parameters, random weights; a step of 4 x 512
tokens takes about a second on 2 CPU cores) on alpaca_en_demo + identity from
``../shared/data/llamafactory``, with LoRA r=8 on all linear layers and with full fine-tuning, in
these variants (each in its own process, so peak memory is its own):

* ``padded``          padded to the longest sample of each batch, logits at every position:
                      what peers run by default (the baseline);
* ``padded+fast``     length-grouped batches, the loss only at trained positions (fused chunked
                      lm_head + cross-entropy);
* ``packed``          isolated packing into rows of ``--max-length`` (position ids, no 2-D mask),
                      logits at every position;
* ``packed+fast``     packing + the fused chunked loss + passes of at most ``train.pass_tokens``
                      (tunesmith's default);
* ``packed+fast+bf16``  the same under bf16 autocast (``train.precision: bf16``);
* ``packed+compile``  ``packed+fast`` with ``train.compile``: each decoder layer compiled on
                      static rows of ``--max-length`` (per-sample attention and the fused loss
                      stay eager, see ``train/compile.py``). Compile time is reported
                      separately and excluded from the timed steps.

For each: real tokens/s (tokens of real samples, padding excluded), padding fraction, peak RSS
(and peak GPU memory on CUDA), model FLOP/s and that as a share of the matmul peak measured in this
same run (``torch.matmul`` of large square matrices in fp32 and bf16): each line shows the share
of both peaks, and ``mfu`` is the share of the peak of the precision the variant trained in.

Model FLOPs count the *useful* work of a training step, the same for every variant:

  full:  6 * N_body * T  +  6 * N_head * T_trained  +  12 * L * d * sum_s n_s^2 / 2
  lora:  4 * N_body * T  +  4 * N_head * T_trained  +  6 * N_adapter * T  +  (attention as full)

where T is the number of real tokens, T_trained the trained ones (a label follows), N_body the
weights used in matmuls inside the decoder layers, N_head the ``lm_head`` (vocab x hidden; the
loss needs it only at trained positions, so logits elsewhere are waste, not work), L the layer
count, d the hidden size and n_s each sample's length (causal attention: QK^T and AV, forward
2 x 2 x d x n^2 / 2 per layer, backward twice that). LoRA's 4N is the forward (2N) plus the
input-gradient half of the backward (2N): frozen weights get no weight gradient.

The benchmark runs unchanged on CPU and GPU (CUDA: bf16 peak, SDPA; Liger's fused loss when
installed). The last line is ``mfu_full=X mfu_lora=Y`` (the best variant of each method, each
against the peak of its own precision).
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
BASE = {"packing": False, "group": False, "ce": "full", "precision": "fp32", "compile": False}
VARIANTS = {
    "padded": BASE,
    "padded+fast": {**BASE, "group": True, "ce": "auto"},
    "packed": {**BASE, "packing": True},
    "packed+fast": {**BASE, "packing": True, "ce": "auto"},
    "packed+fast+bf16": {**BASE, "packing": True, "ce": "auto", "precision": "bf16"},
    "packed+compile": {**BASE, "packing": True, "ce": "auto", "compile": True},
}


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_peak(dtype: str, n: int = 2048, seconds: float = 3.0) -> float:
    """Sustained FLOP/s of a large square matmul in ``dtype`` (best of several windows)."""
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda":
        n = 8192
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(n, n, dtype=dt, device=dev), torch.randn(n, n, dtype=dt, device=dev)
    torch.matmul(a, b)  # warm-up
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        _sync()
        start, reps = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / 6:
            torch.matmul(a, b)
            reps += 1
        _sync()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


BENCH_MODEL = ["--arch", "qwen2", "--hidden-size", "512", "--intermediate-size", "1536"]
BENCH_MODEL += ["--layers", "4", "--heads", "8", "--kv-heads", "4"]


def _child_env() -> dict[str, str]:
    """The environment of child processes: this checkout's ``src`` first, any other path kept
    (``bench/gpu_bench.sh`` puts its installed wheels there)."""
    paths = [str(REPO / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def build_bench_model(out: Path) -> Path:
    """The bench model, built with ``tunesmith model tiny`` (deterministic, a few seconds)."""
    cmd = [sys.executable, "-m", "tunesmith", "model", "tiny", *BENCH_MODEL, "--out", str(out)]
    env = _child_env()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return out


def bench_config(
    method: str,
    variant: str,
    max_length: int,
    batch_size: int,
    model: str = "builtin:tiny-qwen2",
    ce_impl: str | None = None,
    data: Path = SHARED,
) -> dict:
    """The run config of one variant; ``ce_impl`` replaces the "+fast" variants' ``auto`` loss."""
    v = VARIANTS[variant]
    ce = ce_impl if ce_impl and v["ce"] != "full" else v["ce"]
    return {
        "model": {"name": model},
        "data": {
            "datasets": [
                {"path": str(data / "alpaca_en_demo.json")},
                {"path": str(data / "identity.json")},
            ],
            "identity": {"name": "Nova", "author": "the Tunesmith team"},
            "max_length": max_length,
            "packing": v["packing"],
            "group_by_length": v["group"],
            "truncation": "truncate_right",
        },
        "method": {"type": method, "lora": {"rank": 8, "alpha": 16, "targets": "all-linear"}},
        "train": {
            "lr": 1e-4,
            "batch_size": batch_size,
            "precision": v["precision"],
            "seed": 0,
            "ce_impl": ce,
            "compile": v["compile"],
        },
    }


def run_variant(
    method: str,
    variant: str,
    steps: int,
    warmup: int,
    max_length: int,
    batch_size: int,
    model_dir: str,
    ce_impl: str | None = None,
    data: Path = SHARED,
) -> dict:
    """Train ``steps`` timed steps (after ``warmup``) and measure; runs in a child process."""
    import torch
    from accelerate import Accelerator

    from tunesmith.config.load import load_config
    from tunesmith.data.engine import prepare
    from tunesmith.model.adapters import apply_method
    from tunesmith.model.attention import use_varlen_sdpa
    from tunesmith.model.loader import load_model, load_tokenizer
    from tunesmith.train.accelerator import use_cpu_attention
    from tunesmith.train.batches import make_batches
    from tunesmith.train.compile import compile_layers
    from tunesmith.train.loop import resolve_loss_impl, resolve_pass_tokens, train_step
    from tunesmith.train.precision import choose_precision, model_shape
    from tunesmith.train.recipes.sft import build_renderer, make_optimizer

    tree = bench_config(method, variant, max_length, batch_size, model_dir, ce_impl, data)
    cfg = load_config(tree=tree)
    cuda = torch.cuda.is_available()
    torch.manual_seed(0)
    tok = load_tokenizer(cfg.model.name)
    data = prepare(cfg.data, build_renderer(cfg, tok))
    model = load_model(cfg.model.name, dtype="float32")
    model.config.use_cache = False
    if cfg.data.packing and VARIANTS[variant]["ce"] != "full":
        use_varlen_sdpa(model)  # attention per packed sample, as `tunesmith train` does
    model = apply_method(model, cfg.method)
    if cfg.train.compile:
        compile_layers(model)
    acc = Accelerator(mixed_precision=choose_precision(cfg.train.precision), cpu=not cuda)
    attention = "bf16" if acc.mixed_precision == "bf16" else "fp32"
    if not cuda:  # as `tunesmith train` decides it: bf16 attention only where it measures faster
        shape = model_shape(cfg.model.name, cfg.data.max_length, cfg.train.batch_size)
        attention = "bf16" if use_cpu_attention(acc.mixed_precision, shape).bf16 else "fp32"
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    model, opt = acc.prepare(model, opt)
    model.train()
    impl = resolve_loss_impl(cfg, model, acc)
    fast = VARIANTS[variant]["ce"] != "full"  # the "+fast" variants run as `tunesmith train` does
    pass_tokens = resolve_pass_tokens(cfg.train.pass_tokens, acc.device) if fast else None
    batches = make_batches(
        data.train,
        batch_size=cfg.train.batch_size,
        max_length=cfg.data.max_length,
        packing=cfg.data.packing,
        pad_token_id=tok.pad_token_id,
        seed=0,
        group_by_length=cfg.data.group_by_length,
        static_rows=cfg.train.compile,
        pin_memory=cuda,
    )
    need = warmup + steps
    batches = (batches * (need // len(batches) + 1))[:need]
    real = fed = trained = 0
    attn_pairs = 0.0
    warm_s = 0.0
    t0 = time.perf_counter()
    for i, batch in enumerate(batches):
        if i == warmup:
            _sync()
            warm_s = time.perf_counter() - t0
            start = time.perf_counter()
        train_step(
            model, opt, sched, acc, [batch], attn_implementation="sdpa", max_grad_norm=1.0,
            ce_impl=impl, ce_chunk_size=cfg.train.ce_chunk_size, pass_tokens=pass_tokens,
        )  # fmt: skip
        if i >= warmup:
            lens = _sample_lengths(batch)
            real += sum(lens)
            trained += int((batch["labels"][..., 1:] != -100).sum())
            attn_pairs += sum(n * n / 2 for n in lens)
            fed += batch["input_ids"].numel()
    _sync()
    seconds = time.perf_counter() - start
    inner = acc.unwrap_model(model)
    mcfg = inner.config
    head = inner.get_output_embeddings()
    n_head = head.weight.numel()
    n_body = sum(
        m.weight.numel()
        for name, m in inner.named_modules()
        if isinstance(m, torch.nn.Linear) and "lora_" not in name and m is not head
    )
    n_adapter = sum(p.numel() for n, p in inner.named_parameters() if "lora_" in n)
    attn = 12 * mcfg.num_hidden_layers * mcfg.hidden_size * attn_pairs
    if method == "full":
        flops = 6 * n_body * real + 6 * n_head * trained + attn
    else:
        flops = 4 * n_body * real + 4 * n_head * trained + 6 * n_adapter * real + attn
    return {
        "method": method,
        "variant": variant,
        "ce_impl": impl,
        "attention": attention,
        "tokens_per_s": real / seconds,
        "padding_fraction": 1 - real / max(fed, 1),
        "trained_fraction": trained / max(real, 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "model_flops_per_s": flops / seconds,
        "step_s": seconds / steps,
        "warmup_s": warm_s,
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
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--model", help="model to train (default: build the bench model)")
    p.add_argument("--methods", default="full,lora")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument(
        "--ce-impl",
        choices=["chunked", "logits", "liger"],
        help="the loss of the '+fast' variants instead of auto (on CUDA: chunked = without Liger)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=SHARED,
        help="folder holding alpaca_en_demo.json and identity.json (default ../shared's)",
    )
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument(
        "--child", nargs=3, metavar=("METHOD", "VARIANT", "MODEL"), help=argparse.SUPPRESS
    )
    args = p.parse_args()
    if args.child:
        method, variant, model_dir = args.child
        out = run_variant(
            method,
            variant,
            args.steps,
            args.warmup,
            args.max_length,
            args.batch_size,
            model_dir,
            args.ce_impl,
            args.data,
        )
        print("RESULT " + json.dumps(out))
        return

    if not (args.data / "alpaca_en_demo.json").is_file():
        sys.exit(f"missing {args.data}/alpaca_en_demo.json: the shared demo data (see --data)")
    import tempfile

    import torch

    tmp = tempfile.TemporaryDirectory(prefix="tunesmith-bench-")
    model_dir = args.model or str(build_bench_model(Path(tmp.name) / "bench-model"))
    from tunesmith.sysinfo import cpu_info
    from tunesmith.train.precision import cpu_has_bf16_units

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else f"cpu ({cpu_info()['model']})"
    # Emulated bf16 (no avx512_bf16 / AMX) ran at 0.3 GFLOP/s on an AVX2 EPYC: its peak and its
    # variants would take many minutes to show what the CPU flags already say.
    bf16 = cuda or cpu_has_bf16_units()
    peak32 = matmul_peak("fp32")
    peak16 = matmul_peak("bf16") if bf16 else float("nan")
    variants = [v for v in args.variants.split(",") if bf16 or VARIANTS[v]["precision"] != "bf16"]
    skipped = [v for v in args.variants.split(",") if v not in variants]
    print(
        f"device {device}, {torch.get_num_threads()} threads; matmul peak: fp32 "
        f"{peak32 / 1e9:.1f} GFLOP/s, bf16 "
        + (f"{peak16 / 1e9:.1f} GFLOP/s" if bf16 else "not measured (no bf16 hardware)")
        + " (each variant's mfu is against the peak of the precision it ran in)"
        + (f"; skipped {', '.join(skipped)}" if skipped else "")
    )
    results = []
    env = _child_env()
    for method in args.methods.split(","):
        for variant in variants:
            cmd = [sys.executable, __file__, "--child", method, variant, model_dir]
            cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
            cmd += ["--max-length", str(args.max_length), "--batch-size", str(args.batch_size)]
            cmd += ["--ce-impl", args.ce_impl] if args.ce_impl else []
            cmd += ["--data", str(args.data)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{method}/{variant} failed:\n{out.stderr[-3000:]}")
            r = json.loads(line[len("RESULT ") :])
            # MFU against both peaks, and against the peak of the precision this variant ran in
            # (bf16 autocast is limited by the bf16 peak, fp32 by the fp32 one).
            precision = VARIANTS[variant]["precision"]
            r["precision"] = precision
            r["mfu_fp32_peak"] = r["model_flops_per_s"] / peak32
            r["mfu_bf16_peak"] = r["model_flops_per_s"] / peak16
            r["mfu"] = r["mfu_bf16_peak"] if precision == "bf16" else r["mfu_fp32_peak"]
            results.append(r)
            gpu = f"  gpu {r['peak_gpu_mib']:6.0f} MiB" if r["peak_gpu_mib"] else ""
            extra = f"  (compile/warm-up {r['warmup_s']:.0f} s)" if "compile" in variant else ""
            print(
                f"{method:4s} {variant:17s} {r['tokens_per_s']:8,.0f} real tok/s  "
                f"pad {100 * r['padding_fraction']:4.1f}%  rss {r['peak_rss_mib']:5.0f} MiB{gpu}  "
                f"{r['model_flops_per_s'] / 1e9:6.1f} GFLOP/s  {precision} (attention "
                f"{r['attention']})  mfu {r['mfu']:.3f} "
                f"(vs fp32 peak {r['mfu_fp32_peak']:.3f}, vs bf16 peak {r['mfu_bf16_peak']:.3f})"
                f"  [{r['ce_impl']}]{extra}"
            )
    for method in args.methods.split(","):
        mine = {r["variant"]: r for r in results if r["method"] == method}
        if "padded" in mine:
            for v, r in mine.items():
                if v != "padded":
                    ratio = r["tokens_per_s"] / mine["padded"]["tokens_per_s"]
                    print(f"{method}: {v} / padded = {ratio:.2f}x real tokens/s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    best = {
        m: max((r["mfu"] for r in results if r["method"] == m), default=0.0)
        for m in ("full", "lora")
    }
    print(f"mfu_full={best['full']:.3f} mfu_lora={best['lora']:.3f}")


if __name__ == "__main__":
    main()
