"""Preference tuning (DPO, ORPO, SimPO, KTO), top to bottom.

The same run directory, renderer, adapters, optimiser, loop, checkpoints and resume as SFT
(``recipes/sft.py``); what differs is the data (pairs, ``data/pairs.py``), the reference model and
the step (``train/pref_step.py``). Read ``run`` in order.

Reference model (DPO, KTO; ORPO and SimPO need none):

* LoRA / QLoRA: the policy itself with its adapters disabled (no second copy in memory);
* full / freeze tuning: a frozen copy, or with ``method.pref.precompute_ref`` the reference
  log-probs computed once before training and cached on disk beside the data cache, keyed by the
  samples' tokens, the model files and the method;
* PiSSA moves the principal components out of the base weights, so the adapter-disabled model is
  not the starting model: its reference log-probs are always precomputed.

Pairs are padded, not packed (``data.packing`` does not apply to preference stages). Settings this
recipe does not honour are refused by the config schema (``config/schema.py``,
``stage_problems``), so ``tunesmith validate`` catches them too.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import torch

from tunesmith.config.load import check_stage_settings
from tunesmith.config.schema import RunConfig
from tunesmith.train.pref_step import (
    Scorer,
    evaluate_preference,
    precompute_reference,
    preference_step,
    reference_cache_key,
)
from tunesmith.train.recipes.sft import (
    TrainResult,
    build_renderer,
    enable_activation_checkpointing,
    gathered_state_dict,
    make_accelerator,
    make_optimizer,
    make_scheduler,
    resume,
    save_result,
    seed_everything,
)


def reference_mode(cfg: RunConfig) -> str:
    """``none`` (ORPO, SimPO), ``precomputed``, ``adapter`` (LoRA disabled) or ``copy``."""
    m = cfg.method
    if m.stage in ("orpo", "simpo"):
        return "none"
    if m.pref.precompute_ref or (m.type in ("lora", "qlora") and m.lora.init == "pissa"):
        return "precomputed"
    return "adapter" if m.type in ("lora", "qlora") else "copy"


def plot_rewards(records: list[dict[str, Any]], out: Path) -> Path | None:
    """``rewards.png``: chosen/rejected rewards and the margin, and the reward accuracy."""
    rows = [r for r in records if "rewards/chosen" in r or "rewards/margins" in r]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            ax.plot(*zip(*pts), label=key.split("/")[1], linewidth=1.5)
    acc = [(r["step"], r["rewards/accuracies"]) for r in rows if "rewards/accuracies" in r]
    if acc:
        ax2.plot(*zip(*acc), linewidth=1.5)
    for a, label in ((ax, "reward"), (ax2, "reward accuracy")):
        a.set_xlabel("optimiser step")
        a.set_ylabel(label)
        a.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


# ---- the recipe -------------------------------------------------------------------------------
def run(cfg: RunConfig, *, console: Any = None, show_progress: bool = True) -> TrainResult:
    """Preference-tune according to ``cfg`` (``method.stage``: dpo, orpo, simpo or kto)."""

    from tunesmith.data.engine import write_report
    from tunesmith.data.pairs import make_pair_batches, prepare_pairs
    from tunesmith.model.adapters import apply_method, param_report
    from tunesmith.model.loader import load_model, tokenizer_for
    from tunesmith.train.batches import steps_per_epoch
    from tunesmith.train.loop import Loop
    from tunesmith.train.run_dir import open_run

    say = console.print if console is not None else print
    t_start = time.perf_counter()
    tc, stage = cfg.train, cfg.method.stage
    check_stage_settings(cfg)  # the schema's rules (load_config ran them)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    ckpt, run_dir = open_run(cfg, say)
    seed_everything(tc.seed)
    accelerator = make_accelerator(cfg, run_dir, say)
    say = say if accelerator.is_main_process else (lambda *a, **k: None)

    # 1. Tokenizer, template, pairs (prompt once, labels on the replies only).
    tokenizer = tokenizer_for(cfg.model)  # errors name model.tokenizer or model.name
    renderer = build_renderer(cfg, tokenizer)
    with accelerator.main_process_first():
        data = prepare_pairs(cfg.data, renderer, stage=stage)
    if accelerator.is_main_process:
        write_report(data.report, run_dir)
    unit = "examples" if stage == "kto" else "pairs"
    say(
        f"data: {data.report.samples} {unit}, {data.report.trained_tokens:,} trained tokens — "
        f"see {run_dir / 'data_report.md'}"
    )
    for line in data.report.warnings():  # sources cut or dropped by more than 1 %
        say(line)

    # 2. Model, what trains, and the reference.
    model = load_model(
        cfg.model.name,
        dtype=cfg.model.dtype,
        attn_implementation=cfg.model.attn_implementation,
        trust_remote_code=cfg.model.trust_remote_code,
        revision=cfg.model.revision,
        quant=cfg.method.quant if cfg.method.type == "qlora" else None,
    )
    model.config.use_cache = False
    if tc.gradient_checkpointing:
        enable_activation_checkpointing(model)
    ref_mode = reference_mode(cfg)
    frozen = None
    if ref_mode == "copy":  # full / freeze tuning: a frozen copy of the starting weights
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
    model = apply_method(model, cfg.method)
    say(f"method: {stage} with {cfg.method.type}; {param_report(model)}; reference: {ref_mode}")

    # 3. Batches, schedule, optimiser.
    def batches_for(samples: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
        return make_pair_batches(
            samples,
            batch_size=tc.batch_size,
            pad_token_id=tokenizer.pad_token_id,
            seed=seed,
            num_processes=accelerator.num_processes,
            rank=accelerator.process_index,
        )

    n_micro = math.ceil(len(data.train) / (tc.batch_size * accelerator.num_processes))
    per_epoch = steps_per_epoch(n_micro, tc.grad_accum)
    total_steps = tc.max_steps or max(1, math.ceil(per_epoch * tc.epochs))
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    if frozen is not None:
        frozen.to(accelerator.device)
    if ref_mode == "precomputed":  # before any update (and before a resumed checkpoint loads)
        everything = data.train + data.val
        with accelerator.main_process_first():
            status = precompute_reference(
                model,
                accelerator,
                everything,
                pad_token_id=tokenizer.pad_token_id,
                batch_size=tc.batch_size,
                cache_key=reference_cache_key(cfg, everything),
            )
        say(f"reference log-probs precomputed for {len(everything)} {unit} (cache: {status})")
    # Collated only now: batches carry the precomputed reference log-probs of their samples.
    epochs: dict[int, list[dict[str, Any]]] = {0: batches_for(data.train, tc.seed)}

    def batches_for_epoch(epoch: int) -> list[dict[str, Any]]:
        if epoch not in epochs:
            epochs.clear()
            epochs[epoch] = batches_for(data.train, tc.seed + epoch)
        return epochs[epoch]

    val_batches = batches_for(data.val, 0) if data.val else []

    # 4. Resume: as SFT (weights, optimiser, schedule, RNG, data position).
    guard, state, stream = resume(
        cfg,
        ckpt,
        accelerator,
        model,
        optimizer,
        scheduler,
        batches_for_epoch,
        len(epochs[0]),
        say,
        extra_guard={"stage": stage},
    )

    from tunesmith.train.callbacks import SampleGenerations

    sampler = SampleGenerations(
        cfg.eval.prompts,
        run_dir / "samples.jsonl",
        max_new_tokens=cfg.eval.max_new_tokens,
        system=cfg.data.system,
        show=say,
    )
    scorer = Scorer(cfg, accelerator, model, ref_mode, frozen)
    loop = Loop(
        cfg,
        accelerator,
        model,
        optimizer,
        scheduler,
        run_dir,
        val_batches,
        guard,
        step_fn=lambda micro: preference_step(
            scorer, optimizer, scheduler, micro, tc.max_grad_norm
        ),
        eval_fn=(lambda: evaluate_preference(scorer, val_batches)) if val_batches else None,
        sampler=sampler if cfg.eval.prompts else None,
        tokenizer=tokenizer,
    )
    loop.run(stream, state, total_steps, show_progress=show_progress, t_start=t_start)

    # 5. Save in standard formats.
    accelerator.wait_for_everyone()
    loop.finish(time.perf_counter() - t_start)
    # The mixed-precision forward wrapper goes: the returned model runs in its own dtype.
    unwrapped = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    state_dict = gathered_state_dict(accelerator, model)
    if accelerator.is_main_process:
        save_result(unwrapped, tokenizer, cfg, run_dir, state_dict=state_dict)
        records = loop.log.read()
        plot_rewards(records, run_dir / "rewards.png")
        last = next((r for r in reversed(records) if "rewards/margins" in r), {})
        word = "stopped" if loop.interrupted else "done"
        say(
            f"{word}: loss {loop.first_loss:.3f} -> {loop.last_loss:.3f} at step {loop.step}"
            + (f", reward margin {last['rewards/margins']:.3f}" if last else "")
            + f", {time.perf_counter() - t_start:.1f} s; saved to {run_dir}"
        )
    return TrainResult(run_dir, unwrapped, tokenizer, loop.first_loss, loop.last_loss, loop.step)
