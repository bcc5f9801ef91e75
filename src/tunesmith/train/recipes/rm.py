"""Reward model (stage rm), top to bottom.

The same run directory, renderer, pair data, adapters, optimiser, loop, checkpoints and resume as
the preference stages (``train/session.py``, ``recipes/preference.py``). What differs: the model
is the decoder with a one-output ``score`` head (``rl/reward_model.py``), the step scores chosen
and rejected replies in one padded forward pass and minimises the Bradley-Terry loss
``-log sigmoid(r_chosen - r_rejected)``, and validation reports the pairwise accuracy on the
held-out pairs (``data.val_size``). With LoRA the head trains in full beside the adapters; the
result is merged and saved as a standard sequence-classification folder in ``<run>/model``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from tunesmith.config.load import check_stage_settings
from tunesmith.config.schema import RunConfig
from tunesmith.train.loop import StepStats, optimizer_step
from tunesmith.train.session import Session, TrainResult


def _pair_scores(model: Any, batch: dict[str, Any], accelerator: Any) -> tuple[Any, Any]:
    from tunesmith.train.rl.reward_model import scores

    dev = accelerator.device
    with accelerator.autocast():
        r = scores(model, batch["input_ids"].to(dev), batch["attention_mask"].to(dev))
    b = batch["example_weight"].shape[0]
    return r[:b], r[b:]


def rm_step(cfg: RunConfig, accelerator: Any, model: Any, optimizer: Any, scheduler: Any) -> Any:
    """The loop's ``step_fn``: the step's loss is the sum of pair losses over the step's pairs."""
    from tunesmith.train.rl.reward_model import bradley_terry

    center = cfg.method.rm.center_coef

    def step(micro: list[dict[str, Any]]) -> StepStats:
        dev = accelerator.device
        pairs = sum(float(b["example_weight"].sum()) for b in micro)
        total = float(accelerator.reduce(torch.tensor(pairs, device=dev), reduction="sum"))
        scale = accelerator.num_processes / max(total, 1.0)
        sums = torch.zeros(5, dtype=torch.float64, device=dev)  # loss, right, chosen, rejected, n
        seq_tokens = 0
        for batch in micro:
            w = batch["example_weight"].to(dev)
            chosen, rejected = _pair_scores(model, batch, accelerator)
            losses = bradley_terry(chosen, rejected, center)
            accelerator.backward((losses * w).sum() * scale)
            with torch.no_grad():
                sums += torch.stack(
                    [
                        (losses * w).sum(),
                        ((chosen > rejected).float() * w).sum(),
                        (chosen * w).sum(),
                        (rejected * w).sum(),
                        w.sum(),
                    ]
                ).double()
            seq_tokens += int(batch["attention_mask"].sum())
        grad_norm = optimizer_step(
            model, optimizer, scheduler, accelerator, cfg.train.max_grad_norm
        )
        s = accelerator.reduce(sums, reduction="sum")
        n = float(s[4].clamp(min=1))
        return StepStats(
            loss=float(s[0]) / n,
            tokens=int(s[4]),  # pairs: the unit this stage trains on
            seq_tokens=seq_tokens,
            grad_norm=grad_norm,
            metrics={
                "accuracy": float(s[1]) / n,
                "rewards/chosen": float(s[2]) / n,
                "rewards/rejected": float(s[3]) / n,
                "rewards/margins": float(s[2] - s[3]) / n,
            },
        )

    return step


@torch.no_grad()
def evaluate_rm(
    cfg: RunConfig, accelerator: Any, model: Any, batches: list[dict[str, Any]]
) -> dict[str, float]:
    """``val_loss`` and the pairwise accuracy ``val_accuracy`` over the held-out pairs."""
    from tunesmith.train.rl.reward_model import bradley_terry

    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=accelerator.device)
    for batch in batches:
        w = batch["example_weight"].to(accelerator.device)
        chosen, rejected = _pair_scores(model, batch, accelerator)
        losses = bradley_terry(chosen, rejected, cfg.method.rm.center_coef)
        sums += torch.stack(
            [(losses * w).sum(), ((chosen > rejected).float() * w).sum(), w.sum()]
        ).double()
    model.train(was_training)
    s = accelerator.reduce(sums, reduction="sum")
    n = float(s[2].clamp(min=1))
    return {"val_loss": float(s[0]) / n, "val_accuracy": float(s[1]) / n}


# ---- the recipe -------------------------------------------------------------------------------
def run(cfg: RunConfig, *, console: Any = None, show_progress: bool = True) -> TrainResult:
    """Train a reward model according to ``cfg`` (``method.stage: rm``)."""
    from tunesmith.model.adapters import param_report
    from tunesmith.model.loader import tokenizer_for
    from tunesmith.train.batches import pair_batcher
    from tunesmith.train.rl.reward_model import (
        apply_rm_method,
        load_for_training,
        save_merged,
    )

    check_stage_settings(cfg)
    session = Session.start(cfg, console)
    tc, accelerator = cfg.train, session.accelerator

    # 1. Tokenizer, template, pairs (the same rendered pairs as DPO).
    tokenizer = tokenizer_for(cfg.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    renderer = session.renderer(tokenizer)
    data = session.data(renderer, "dpo")

    # 2. The decoder with a scalar head; what trains (the head always does).
    model = load_for_training(cfg, tokenizer.pad_token_id)
    if tc.gradient_checkpointing:
        from tunesmith.train.session import enable_activation_checkpointing

        enable_activation_checkpointing(model)
    model = apply_rm_method(model, cfg.method)
    session.say(f"method: rm with {cfg.method.type}; {param_report(model)}")

    # 3. Batches of pairs, schedule, optimiser; resume as the preference stages.
    batches_for = pair_batcher(cfg, tokenizer.pad_token_id, accelerator)

    n_micro = math.ceil(len(data.train) / (tc.batch_size * accelerator.num_processes))
    opt = session.optimise(
        model, batches_for, data.train, data.val, micro_per_epoch=n_micro,
        extra_guard={"stage": "rm"},
    )  # fmt: skip

    # 4. The loop with the Bradley-Terry step; pairwise accuracy on the held-out pairs.
    val = opt.val_batches
    loop = session.train(
        opt,
        step_fn=rm_step(cfg, accelerator, opt.model, opt.optimizer, opt.scheduler),
        eval_fn=(lambda: evaluate_rm(cfg, accelerator, opt.model, val)) if val else None,
        show_progress=show_progress,
    )

    def summary(loop: Any) -> str:
        last = next((r for r in reversed(loop.log.read()) if "val_accuracy" in r), None)
        return f", held-out pairwise accuracy {last['val_accuracy']:.3f}" if last else ""

    return session.finish(
        loop,
        opt.model,
        tokenizer,
        renderer,
        save=lambda unwrapped, _state: save_merged(unwrapped, tokenizer, session.run_dir),
        summary=summary,
    )
