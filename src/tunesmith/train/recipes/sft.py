"""Supervised fine-tuning and continued pre-training, top to bottom.

Read this file in order: prepare the run directory, load tokenizer and template, build the data,
load the model and choose what trains, then loop over optimiser steps, log, and save in the
standard ``transformers`` / ``peft`` format.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.config.schema import RunConfig
from tunesmith.errors import ConfigError
from tunesmith.train.precision import (
    DEFAULT_DIMS,
    choose_precision,
    cpu_bf16_speedup,
    model_dims,
)
from tunesmith.train.run_dir import (  # noqa: F401  (checkpoint_step, prepare_run_dir: re-exported)
    checkpoint_step,
    open_run,
    prepare_run_dir,
)


@dataclass
class TrainResult:
    """What a finished run leaves behind (the model stays in memory for callers and tests)."""

    run_dir: Path
    model: Any
    tokenizer: Any
    first_loss: float
    last_loss: float
    steps: int


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


TRACKER_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def make_accelerator(cfg: RunConfig, run_dir: Path, say: Any = None) -> Any:
    """The run's Accelerator: precision, device, and the trackers of ``train.report_to``.

    Trackers log under ``<run_dir>/trackers`` (tensorboard) or wherever the tracker's own
    environment points (wandb, mlflow); a tracker that is not installed is a config error.
    """
    import importlib.util

    import torch
    from accelerate import Accelerator

    trackers = list(cfg.train.report_to)
    for name in trackers:
        if importlib.util.find_spec(TRACKER_MODULES[name]) is None:
            raise ConfigError(
                f"train.report_to: {name} is not installed; pip install {name}, or remove it"
            )
    dims = None
    if cfg.train.precision == "auto" and not torch.cuda.is_available():
        dims = model_dims(cfg.model.name)
    mixed_precision = choose_precision(cfg.train.precision, dims)
    allow_precision(mixed_precision)
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        cpu=not torch.cuda.is_available(),
        log_with=trackers or None,
        project_dir=str(run_dir / "trackers") if trackers else None,
    )
    if trackers:
        accelerator.init_trackers(cfg.output.name, config=flat_hparams(cfg))
    if say is not None and cfg.train.precision == "auto" and accelerator.is_main_process:
        where = "CUDA" if torch.cuda.is_available() else "this CPU"
        note = ""
        if not torch.cuda.is_available() and accelerator.num_processes > 1:
            note = "; several processes take fp32 unmeasured"
        elif not torch.cuda.is_available():
            speedup = cpu_bf16_speedup(*(dims or DEFAULT_DIMS))  # cached: no second measurement
            note = f"; a bf16 training step measures {speedup:.2f}x fp32"
        chosen = {"no": "fp32"}.get(accelerator.mixed_precision, accelerator.mixed_precision)
        say(f"precision auto -> {chosen} on {where}{note}")
    return accelerator


def allow_precision(mixed_precision: str) -> None:
    """Let a later run in the same Python process (a notebook, a test session) change precision.

    Accelerate keeps one process-wide state and refuses an ``Accelerator`` whose precision differs
    from the first one's. Only its precision part is cleared here (Accelerate's own reset, which
    its tests use); the process group and device (``PartialState``) stay as they are.
    """
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed_precision) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def flat_hparams(cfg: RunConfig) -> dict[str, Any]:
    """The config as ``{"train.lr": 2e-4, ...}`` with scalar values only (what trackers take)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(value, (bool, int, float, str)):
            out[prefix] = value
        elif value is not None:
            out[prefix] = str(value)

    walk("", cfg.model_dump(mode="json"))
    return out


def enable_activation_checkpointing(model: Any) -> None:
    """Turn on activation (gradient) checkpointing; renamed in transformers 5.x."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    (enable or model.gradient_checkpointing_enable)()


def make_optimizer(model: Any, cfg: RunConfig) -> Any:
    """AdamW without weight decay on biases and norms; LoRA+ gives B matrices a higher lr."""
    import torch

    tc = cfg.train
    ratio = cfg.method.lora.lora_plus_ratio if cfg.method.type in ("lora", "qlora") else None
    groups: dict[tuple[bool, bool], list[Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "norm" in name
        fast = ratio is not None and "lora_B" in name
        groups.setdefault((no_decay, fast), []).append(p)
    params = [
        {
            "params": ps,
            "weight_decay": 0.0 if no_decay else tc.weight_decay,
            "lr": tc.lr * (ratio if fast and ratio else 1.0),
        }
        for (no_decay, fast), ps in sorted(groups.items())
    ]
    # The fused kernel is one pass over all parameters (4x faster than the per-tensor loop on
    # CPU); it needs floating-point parameters on a device it supports.
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    devices = set(_get_fused_kernels_supported_devices())
    fused = all(
        p.is_floating_point() and p.device.type in devices for g in params for p in g["params"]
    )
    return torch.optim.AdamW(params, lr=tc.lr, betas=tc.adam_betas, fused=fused or None)


def make_scheduler(optimizer: Any, cfg: RunConfig, total_steps: int) -> Any:
    """The learning-rate schedule (warmup, then cosine / linear / constant)."""
    from transformers import get_scheduler

    tc = cfg.train
    return get_scheduler(
        tc.scheduler if tc.scheduler != "constant" else "constant_with_warmup",
        optimizer,
        num_warmup_steps=round(tc.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )


def resume(
    cfg: RunConfig,
    ckpt: Path | None,
    accelerator: Any,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    batches_for_epoch: Any,
    micro_per_epoch: int,
    say: Any,
    *,
    extra_guard: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Restore a checkpoint (if any) and position the batch stream after the trained steps.

    Returns ``(guard, state, stream)``: the settings a checkpoint must match, the loop state
    (fresh, or restored together with weights, optimiser, scheduler and RNG in place), and the
    stream of micro-batch groups starting at the next untrained step.
    """
    from tunesmith.train.batches import micro_batch_stream
    from tunesmith.train.checkpoint import load_checkpoint

    tc = cfg.train
    guard = {
        "batch_size": tc.batch_size,
        "grad_accum": tc.grad_accum,
        **(extra_guard or {}),
        "num_processes": accelerator.num_processes,
        "micro_per_epoch": micro_per_epoch,
        "seed": tc.seed,
    }
    state: dict[str, Any] = {"step": 0, "epoch": 0, "steps_in_epoch": 0}
    if ckpt is not None:
        state = load_checkpoint(  # verified by resolve_resume (open_run) already
            ckpt,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            accelerator=accelerator,
            verify=False,
        )
        check_guard(state.get("guard", {}), guard, ckpt)
        say(f"resumed from {ckpt} (step {state['step']})")
    stream = micro_batch_stream(batches_for_epoch, tc.grad_accum, start_epoch=state["epoch"])
    for _ in range(state["steps_in_epoch"]):
        next(stream)
    return guard, state, stream


def run(cfg: RunConfig, *, console: Any = None, show_progress: bool = True) -> TrainResult:
    """Train according to ``cfg``."""
    import torch

    from tunesmith.data.engine import prepare, write_report
    from tunesmith.model.adapters import apply_method, param_report
    from tunesmith.model.loader import load_model, tokenizer_for
    from tunesmith.train.batches import make_batches, steps_per_epoch
    from tunesmith.train.loop import Loop

    say = console.print if console is not None else print
    t_start = time.perf_counter()
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    ckpt, run_dir = open_run(cfg, say)
    seed_everything(tc.seed)
    accelerator = make_accelerator(cfg, run_dir, say)
    say = say if accelerator.is_main_process else (lambda *a, **k: None)

    # 1. Tokenizer, template, data (the main process prepares; the others read its cache).
    tokenizer = tokenizer_for(cfg.model)  # errors name model.tokenizer or model.name
    renderer = build_renderer(cfg, tokenizer)
    with accelerator.main_process_first():
        data = prepare(cfg.data, renderer, stage=cfg.method.stage)
    if accelerator.is_main_process:
        write_report(data.report, run_dir)
    say(
        f"data: {data.report.samples} samples, {data.report.trained_tokens:,} trained tokens "
        f"from {len(data.report.sources)} source(s) — see {run_dir / 'data_report.md'}"
    )
    for line in data.report.warnings():  # sources cut or dropped by more than 1 %
        say(line)

    # 2. Model and what trains.
    model = load_model(
        cfg.model.name,
        dtype=cfg.model.dtype,
        attn_implementation=cfg.model.attn_implementation,
        trust_remote_code=cfg.model.trust_remote_code,
        revision=cfg.model.revision,
        quant=cfg.method.quant if cfg.method.type == "qlora" else None,
    )
    model.config.use_cache = False  # a KV cache would break packed-sequence isolation
    if cfg.data.packing and not tc.compile:
        # Attention within each packed sample instead of over whole rows (model/attention.py);
        # compiled models keep the block mask: per-sample shapes would make compile retrace.
        from tunesmith.model.attention import use_varlen_sdpa

        use_varlen_sdpa(model)
    if tc.gradient_checkpointing:
        enable_activation_checkpointing(model)
    model = apply_method(model, cfg.method)
    say(f"method: {cfg.method.type}; {param_report(model)}")
    if tc.compile:
        model.compile()  # in place: the module and its parameter names stay as they are

    # 3. Batches, schedule, optimiser.
    def batches_for(samples: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
        return make_batches(
            samples,
            batch_size=tc.batch_size,
            max_length=cfg.data.max_length,
            packing=cfg.data.packing,
            pad_token_id=tokenizer.pad_token_id,
            seed=seed,
            num_processes=accelerator.num_processes,
            rank=accelerator.process_index,
            group_by_length=cfg.data.group_by_length,
            static_rows=tc.compile,
            pin_memory=accelerator.device.type == "cuda",
        )

    epochs: dict[int, list[dict[str, Any]]] = {0: batches_for(data.train, tc.seed)}

    def batches_for_epoch(epoch: int) -> list[dict[str, Any]]:
        if epoch not in epochs:
            epochs.clear()  # keep one epoch of batches in memory
            epochs[epoch] = batches_for(data.train, tc.seed + epoch)
        return epochs[epoch]

    per_epoch = steps_per_epoch(len(epochs[0]), tc.grad_accum)
    total_steps = tc.max_steps or max(1, math.ceil(per_epoch * tc.epochs))
    val_batches = batches_for(data.val, 0) if data.val else []
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    # 4. Resume: restore weights, optimiser, scheduler, RNG; skip the batches already trained.
    guard, state, stream = resume(
        cfg, ckpt, accelerator, model, optimizer, scheduler, batches_for_epoch, len(epochs[0]), say
    )

    from tunesmith.train.callbacks import SampleGenerations

    sampler = SampleGenerations(
        cfg.eval.prompts,
        run_dir / "samples.jsonl",
        max_new_tokens=cfg.eval.max_new_tokens,
        system=cfg.data.system,
        show=say,
    )
    loop = Loop(
        cfg,
        accelerator,
        model,
        optimizer,
        scheduler,
        run_dir,
        val_batches,
        guard,
        sampler=sampler if cfg.eval.prompts else None,
        tokenizer=tokenizer,
    )
    loop.run(stream, state, total_steps, show_progress=show_progress, t_start=t_start)

    # 5. Save in standard formats.
    accelerator.wait_for_everyone()
    loop.finish(time.perf_counter() - t_start)  # every process: validation is collective
    # The mixed-precision forward wrapper goes: the returned model runs in its own dtype.
    unwrapped = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    state_dict = gathered_state_dict(accelerator, model)
    if accelerator.is_main_process:
        save_result(unwrapped, tokenizer, cfg, run_dir, state_dict=state_dict)
        word = "stopped" if loop.interrupted else "done"
        say(
            f"{word}: loss {loop.first_loss:.3f} -> {loop.last_loss:.3f} at step {loop.step}, "
            f"{time.perf_counter() - t_start:.1f} s; saved to {run_dir}"
        )
    return TrainResult(run_dir, unwrapped, tokenizer, loop.first_loss, loop.last_loss, loop.step)


def check_guard(saved: dict[str, Any], now: dict[str, Any], ckpt: Path) -> None:
    diff = [k for k in now if k in saved and saved[k] != now[k]]
    if diff:
        what = ", ".join(f"{k} {saved[k]} -> {now[k]}" for k in diff)
        raise ConfigError(
            f"train.resume: {ckpt} was written with other settings ({what}); resume with the "
            "same batch_size, grad_accum, processes and seed, or start fresh"
        )


def gathered_state_dict(accelerator: Any, model: Any) -> dict[str, Any] | None:
    """The full state dict under FSDP / DeepSpeed (a collective: every process calls it).

    ``None`` otherwise: the unwrapped model already holds whole weights.
    """
    kind = getattr(accelerator.distributed_type, "value", str(accelerator.distributed_type))
    return accelerator.get_state_dict(model) if kind in ("FSDP", "DEEPSPEED") else None


def save_result(
    model: Any,
    tokenizer: Any,
    cfg: RunConfig,
    run_dir: Path,
    *,
    state_dict: dict[str, Any] | None = None,
) -> Path:
    """Save the adapter (LoRA) or the full model, with the tokenizer and its chat template.

    ``state_dict``: the weights gathered from a sharded run (see ``gathered_state_dict``).
    """
    target = run_dir / ("adapter" if cfg.method.type in ("lora", "qlora") else "model")
    tmp = run_dir / f".{target.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.config.use_cache = True  # training turned it off; inference wants it back
    from tunesmith.model.attention import restore_sdpa

    restore_sdpa(base)
    kwargs: dict[str, Any] = {} if state_dict is None else {"state_dict": state_dict}
    pissa_init = getattr(model, "pissa_init_dir", None)
    if pissa_init:
        kwargs["path_initial_model_for_weight_conversion"] = pissa_init
    model.save_pretrained(tmp, **kwargs)
    tokenizer.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    from tunesmith.export.card import write_run_card

    write_run_card(run_dir)  # the run's README.md: what was trained, how it went, what next
    return target
