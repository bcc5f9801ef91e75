"""Supervised fine-tuning and continued pre-training, top to bottom.

Read this file in order: prepare the run directory, load tokenizer and template, build the data,
load the model and choose what trains, then loop over optimiser steps, log, and save in the
standard ``transformers`` / ``peft`` format.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config.load import dump_config
from tunesmith.config.schema import RunConfig
from tunesmith.errors import ConfigError


@dataclass
class TrainResult:
    """What a finished run leaves behind (the model stays in memory for callers and tests)."""

    run_dir: Path
    model: Any
    tokenizer: Any
    first_loss: float
    last_loss: float
    steps: int


def prepare_run_dir(cfg: RunConfig) -> Path:
    """Create (or clear) the run directory and write the resolved config."""
    run_dir = Path(cfg.output.run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not cfg.output.overwrite:
            raise ConfigError(
                f"output.dir {run_dir}: exists and output.overwrite is false; choose another dir"
            )
        for name in ("metrics.jsonl", "loss.png", "data_report.md", "model", "adapter"):
            target = run_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
    return run_dir


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_renderer(cfg: RunConfig, tokenizer: Any) -> Any:
    """The renderer for this run's tokenizer, template and label policy."""
    from tunesmith.data.render import Renderer, RenderOptions
    from tunesmith.data.templates import resolve_chat_template

    jinja, stop = resolve_chat_template(tokenizer, cfg.model.template)
    tokenizer.chat_template = jinja  # saved with the result: inference uses the same template
    d = cfg.data
    options = RenderOptions(
        max_length=d.max_length,
        truncation=d.truncation,
        train_on_prompt=d.train_on_prompt or cfg.method.stage == "pt",
        mask_history=d.mask_history,
        system=d.system,
    )
    return Renderer(tokenizer, jinja, stop, options, cfg.model.template or "tokenizer")


def choose_precision(precision: str) -> str:
    """Accelerate's ``mixed_precision`` for a config value (``auto``: bf16 on capable GPUs)."""
    import torch

    if precision == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "no"
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]


def make_optimizer(model: Any, cfg: RunConfig) -> Any:
    """AdamW; no weight decay on biases and norms."""
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=cfg.train.adam_betas)


def run(cfg: RunConfig, *, console: Any = None, show_progress: bool = True) -> TrainResult:
    """Train according to ``cfg``."""
    import torch
    from accelerate import Accelerator
    from transformers import get_scheduler

    from tunesmith.data.engine import prepare, write_report
    from tunesmith.model.adapters import apply_method, param_report
    from tunesmith.model.loader import load_model, load_tokenizer
    from tunesmith.train.callbacks import MetricsLog, ProgressBar, plot_loss
    from tunesmith.train.loop import (
        evaluate_loss,
        make_batches,
        micro_batch_stream,
        steps_per_epoch,
        train_step,
    )

    say = console.print if console is not None else print
    t_start = time.perf_counter()
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    run_dir = prepare_run_dir(cfg)
    seed_everything(tc.seed)
    accelerator = Accelerator(
        mixed_precision=choose_precision(tc.precision), cpu=not torch.cuda.is_available()
    )

    # 1. Tokenizer, template, data.
    tokenizer = load_tokenizer(cfg.model.tokenizer or cfg.model.name)
    renderer = build_renderer(cfg, tokenizer)
    data = prepare(cfg.data, renderer, stage=cfg.method.stage)
    write_report(data.report, run_dir)
    say(
        f"data: {data.report.samples} samples, {data.report.trained_tokens:,} trained tokens "
        f"from {len(data.report.sources)} source(s) — see {run_dir / 'data_report.md'}"
    )

    # 2. Model and what trains.
    model = load_model(
        cfg.model.name,
        dtype=cfg.model.dtype,
        attn_implementation=cfg.model.attn_implementation,
        trust_remote_code=cfg.model.trust_remote_code,
        revision=cfg.model.revision,
    )
    model.config.use_cache = False  # a KV cache would break packed-sequence isolation
    if tc.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model = apply_method(model, cfg.method)
    say(f"method: {cfg.method.type}; {param_report(model)}")

    # 3. Batches, schedule, optimiser.
    pad_id = tokenizer.pad_token_id

    def batches_for_epoch(epoch: int) -> list[dict[str, Any]]:
        return make_batches(
            data.train,
            batch_size=tc.batch_size,
            max_length=cfg.data.max_length,
            packing=cfg.data.packing,
            pad_token_id=pad_id,
            seed=tc.seed + epoch,
        )

    first_epoch = batches_for_epoch(0)
    per_epoch = steps_per_epoch(len(first_epoch), tc.grad_accum)
    total_steps = tc.max_steps or max(1, math.ceil(per_epoch * tc.epochs))
    val_batches = (
        make_batches(
            data.val,
            batch_size=tc.batch_size,
            max_length=cfg.data.max_length,
            packing=cfg.data.packing,
            pad_token_id=pad_id,
            seed=0,
        )
        if data.val
        else []
    )
    optimizer = make_optimizer(model, cfg)
    scheduler = get_scheduler(
        tc.scheduler if tc.scheduler != "constant" else "constant_with_warmup",
        optimizer,
        num_warmup_steps=round(tc.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    # 4. The loop.
    log = MetricsLog(run_dir / "metrics.jsonl")
    stream = micro_batch_stream(
        lambda e: first_epoch if e == 0 else batches_for_epoch(e), tc.grad_accum
    )
    window_tokens, window_start = 0, time.perf_counter()
    first_loss = last_loss = None
    with ProgressBar(total_steps, enabled=show_progress and accelerator.is_main_process) as bar:
        for step in range(1, total_steps + 1):
            epoch, micro = next(stream)
            stats = train_step(
                model,
                optimizer,
                scheduler,
                accelerator,
                micro,
                attn_implementation=cfg.model.attn_implementation,
                max_grad_norm=tc.max_grad_norm,
            )
            first_loss = stats.loss if first_loss is None else first_loss
            last_loss = stats.loss
            window_tokens += stats.seq_tokens * accelerator.num_processes
            if step % tc.log_every == 0 or step == total_steps or step == 1:
                elapsed = time.perf_counter() - window_start
                record = {
                    "step": step,
                    "epoch": round(epoch + 1, 3),
                    "loss": round(stats.loss, 6),
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": stats.grad_norm,
                    "trained_tokens": stats.tokens,
                    "tokens_per_s": window_tokens / max(elapsed, 1e-9),
                    "elapsed_s": round(time.perf_counter() - t_start, 2),
                }
                if val_batches and (step == total_steps or step % (tc.log_every * 10) == 0):
                    record["val_loss"] = evaluate_loss(
                        model,
                        accelerator,
                        val_batches,
                        attn_implementation=cfg.model.attn_implementation,
                    )
                if accelerator.is_main_process:
                    log.write(record)
                bar.update(step, record)
                window_tokens, window_start = 0, time.perf_counter()

    # 5. Save in standard formats.
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        save_result(unwrapped, tokenizer, cfg, run_dir)
        plot_loss(log.read(), run_dir / "loss.png")
        summary = {
            "first_loss": first_loss,
            "last_loss": last_loss,
            "steps": total_steps,
            "seconds": round(time.perf_counter() - t_start, 1),
        }
        (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        say(
            f"done: loss {first_loss:.3f} -> {last_loss:.3f} in {total_steps} steps, "
            f"{summary['seconds']} s; saved to {run_dir}"
        )
    assert first_loss is not None and last_loss is not None
    return TrainResult(run_dir, unwrapped, tokenizer, first_loss, last_loss, total_steps)


def save_result(model: Any, tokenizer: Any, cfg: RunConfig, run_dir: Path) -> Path:
    """Save the adapter (LoRA) or the full model, with the tokenizer and its chat template."""
    target = run_dir / ("adapter" if cfg.method.type != "full" else "model")
    tmp = run_dir / f".{target.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.config.use_cache = True  # training turned it off; inference wants it back
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target
