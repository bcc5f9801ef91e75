"""Preference tuning (DPO, ORPO, SimPO, KTO), top to bottom.

The same run directory, renderer, adapters, optimiser, loop, checkpoints and resume as SFT
(``train/session.py``); what differs is the data (pairs, ``data/pairs.py``), the reference model and
the step (``train/pref_step.py``). Read ``run`` in order.

Reference model (DPO, KTO; ORPO and SimPO need none):

* LoRA / QLoRA: the policy itself with its adapters disabled (no second copy in memory);
* full / freeze tuning: a frozen copy, or with ``method.pref.precompute_ref`` the reference
  log-probs computed once before training and cached on disk beside the data cache, keyed by the
  samples' tokens, the model files and the method;
* PiSSA moves the principal components out of the base weights, so the adapter-disabled model is
  not the starting model: its reference log-probs are always precomputed.

Pairs are padded, in data order (the schema resolves ``data.packing`` and ``group_by_length`` to
false for these stages and refuses an explicit true). Settings this recipe does not honour are
refused by the config schema (``config/schema/run.py``, ``stage_problems``), so
``tunesmith validate`` catches them too.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from tunesmith.config.load import check_stage_settings
from tunesmith.config.schema import RunConfig
from tunesmith.train.pref_step import (
    Scorer,
    evaluate_preference,
    precompute_reference,
    preference_step,
    reference_cache_key,
)
from tunesmith.train.session import Session, TrainResult


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
    from tunesmith.model.adapters import apply_method, param_report
    from tunesmith.model.loader import tokenizer_for
    from tunesmith.train.batches import pair_batcher

    check_stage_settings(cfg)  # the schema's rules (load_config ran them)
    session = Session.start(cfg, console)
    tc, stage, accelerator = cfg.train, cfg.method.stage, session.accelerator

    # 1. Tokenizer, template, pairs (prompt once, labels on the replies only).
    tokenizer = tokenizer_for(cfg.model)  # errors name model.tokenizer or model.name
    renderer = session.renderer(tokenizer)
    data = session.data(renderer, stage)

    # 2. Model, what trains, and the reference.
    model = session.load_model()
    ref_mode = reference_mode(cfg)
    frozen = None
    if ref_mode == "copy":  # full / freeze tuning: a frozen copy of the starting weights
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
    model = apply_method(model, cfg.method)
    session.say(
        f"method: {stage} with {cfg.method.type}; {param_report(model)}; reference: {ref_mode}"
    )

    # 3. Batches, schedule, optimiser, the reference; resume as SFT.
    batches_for = pair_batcher(cfg, tokenizer.pad_token_id, accelerator)

    def reference(prepared: Any) -> None:  # before any update (and before a checkpoint loads)
        if frozen is not None:
            frozen.to(accelerator.device)
        if ref_mode == "precomputed":
            everything = data.train + data.val
            with accelerator.main_process_first():
                status = precompute_reference(
                    prepared,
                    accelerator,
                    everything,
                    pad_token_id=tokenizer.pad_token_id,
                    batch_size=tc.batch_size,
                    cache_key=reference_cache_key(cfg, everything),
                )
            unit = "examples" if stage == "kto" else "pairs"
            n = len(everything)
            session.say(f"reference log-probs precomputed for {n} {unit} (cache: {status})")

    # Collated after ``reference``: batches carry the precomputed log-probs of their samples.
    n_micro = math.ceil(len(data.train) / (tc.batch_size * accelerator.num_processes))
    opt = session.optimise(
        model,
        batches_for,
        data.train,
        data.val,
        micro_per_epoch=n_micro,
        after_prepare=reference,
        extra_guard={"stage": stage},
    )

    # 4. The loop with the preference step, then save in standard formats.
    scorer = Scorer(cfg, accelerator, opt.model, ref_mode, frozen)
    val = opt.val_batches
    loop = session.train(
        opt,
        tokenizer=tokenizer,
        step_fn=lambda micro: preference_step(
            scorer, opt.optimizer, opt.scheduler, micro, tc.max_grad_norm
        ),
        eval_fn=(lambda: evaluate_preference(scorer, val)) if val else None,
        show_progress=show_progress,
    )
    return session.finish(loop, opt.model, tokenizer, renderer, summary=reward_summary(session))


def reward_summary(session: Session) -> Any:
    """The summary line's reward margin, after plotting ``rewards.png``."""

    def summary(loop: Any) -> str:
        records = loop.log.read()
        plot_rewards(records, session.run_dir / "rewards.png")
        last = next((r for r in reversed(records) if "rewards/margins" in r), {})
        return f", reward margin {last['rewards/margins']:.3f}" if last else ""

    return summary
