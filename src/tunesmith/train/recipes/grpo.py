"""GRPO (group relative policy optimisation), top to bottom.

The same run directory, renderer, adapters, optimiser, loop, checkpoints and resume as SFT
(``train/session.py``). What differs: the data are prompts (``rl/prompts.py``), every step
generates ``method.grpo.group_size`` completions per prompt with the inference engine on the model
being trained, scores them (``rl/rewards.py``) and optimises the clipped objective with a KL term
(``rl/loss.py``, ``rl/step.py``). Reference: with LoRA the policy with its adapters disabled (no
second copy); with full or freeze tuning a frozen copy, only when ``beta > 0``.

Resume is exact: the optimiser, schedule and RNG come back from the checkpoint, the stream skips
the prompts already trained, and each completion's sampling seed is fixed by the run's seed, the
step and the row.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from tunesmith.config.load import check_stage_settings
from tunesmith.config.schema import RunConfig
from tunesmith.train.session import Session, TrainResult


def prompt_batches(
    samples: list[dict[str, Any]], batch_size: int, seed: int, num_processes: int, rank: int
) -> list[dict[str, Any]]:
    """One epoch of this process's micro-batches of prompts, in a seeded order."""
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    width = batch_size * num_processes
    out = []
    for start in range(0, len(order) - width + 1, width):  # whole global batches only
        mine = order[start + rank * batch_size : start + (rank + 1) * batch_size]
        out.append({"prompts": [samples[i] for i in mine]})
    return out


def run(cfg: RunConfig, *, console: Any = None, show_progress: bool = True) -> TrainResult:
    """Train with GRPO according to ``cfg`` (``method.stage: grpo``)."""
    from tunesmith.model.adapters import apply_method, param_report
    from tunesmith.model.loader import tokenizer_for
    from tunesmith.train.rl.prompts import load_prompts
    from tunesmith.train.rl.rewards import build_rewards
    from tunesmith.train.rl.step import GRPOStep

    check_stage_settings(cfg)
    session = Session.start(cfg, console)
    tc, g, accelerator = cfg.train, cfg.method.grpo, session.accelerator

    # 1. Tokenizer, template, prompts.
    tokenizer = tokenizer_for(cfg.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    renderer = session.renderer(tokenizer)
    prompts = load_prompts(cfg.data)
    skipped = ", ".join(f"{n} {why}" for why, n in prompts.skipped.items())
    session.say(
        f"data: {len(prompts.train)} prompts, {len(prompts.val)} held out"
        + (f"; skipped: {skipped}" if skipped else "")
    )
    if len(prompts.train) < tc.batch_size * accelerator.num_processes:
        from tunesmith.errors import ConfigError

        raise ConfigError(
            f"train.batch_size {tc.batch_size}: more than the {len(prompts.train)} training prompts"
        )

    # 2. Model, what trains, the reference, the rewards.
    model = session.load_model()
    warm: dict[str, float] = {}
    if g.warmup_steps:
        # Full fine-tuning before the method (rl/warmup.py); repeated on resume, as checkpoints
        # hold only the trainable weights.
        from tunesmith.train.rl.warmup import run_warmup

        model.to(accelerator.device)
        warm = run_warmup(cfg, model, renderer, prompts.train, accelerator)
        session.say(
            f"warm-up: {g.warmup_steps} SFT steps on {int(warm['warmup/samples'])} answers, "
            f"loss {warm['warmup/loss_first']:.3f} -> {warm['warmup/loss_last']:.3f}"
        )
    frozen = None
    if g.beta and cfg.method.type not in ("lora", "qlora"):  # LoRA: the adapters switched off
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
    model = apply_method(model, cfg.method)
    reference = "none" if not g.beta else ("copy" if frozen is not None else "adapter")
    rewards = build_rewards(g.rewards, max_new_tokens=g.max_new_tokens, device=accelerator.device)
    session.say(
        f"method: grpo with {cfg.method.type}; {param_report(model)}; reference: {reference}; "
        f"rewards: {', '.join(f'{r.name} x{r.weight:g}' for r in rewards)}"
    )

    # 3. Batches of prompts, schedule, optimiser; resume as SFT.
    def batches_for(samples: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
        return prompt_batches(
            samples, tc.batch_size, seed, accelerator.num_processes, accelerator.process_index
        )

    opt = session.optimise(
        model,
        batches_for,
        prompts.train,
        [],
        extra_guard={"stage": "grpo", "group_size": g.group_size},
    )
    if frozen is not None:
        frozen.to(accelerator.device)

    # 4. The loop with the GRPO step, then save as SFT does.
    step = GRPOStep(
        cfg,
        accelerator,
        opt.model,
        opt.optimizer,
        opt.scheduler,
        tokenizer,
        rewards,
        step=opt.state["step"],
        frozen=frozen,
        samples_path=session.run_dir / "samples.jsonl",
    )
    if prompts.val and opt.state["step"] == 0 and accelerator.is_main_process:
        from tunesmith.train.callbacks import MetricsLog

        # The held-out reward before any update: the value the run starts from.
        MetricsLog(session.run_dir / "metrics.jsonl").write(
            {"step": 0, **warm, **step.evaluate(prompts.val)}
        )
    loop = session.train(
        opt,
        tokenizer=tokenizer,
        step_fn=step,
        eval_fn=(lambda: step.evaluate(prompts.val)) if prompts.val else None,
        show_progress=show_progress,
    )

    def summary(loop: Any) -> str:
        from tunesmith.train.rl.plots import plot_grpo

        records = loop.log.read()
        plot_grpo(records, session.run_dir / "rewards.png")
        first = next((r for r in records if "reward" in r), {})
        last = next((r for r in reversed(records) if "reward" in r), {})
        val = next((r for r in reversed(records) if "val_reward" in r), {})
        text = f", reward {first['reward']:.3f} -> {last['reward']:.3f}" if last else ""
        if not val:
            return text
        start = next((r for r in records if "val_reward" in r), val)
        return text + (
            f", held-out reward greedy {start['val_reward']:.3f} -> {val['val_reward']:.3f}, "
            f"sampled {start['val_sampled_reward']:.3f} -> {val['val_sampled_reward']:.3f}"
        )

    save = None
    if g.warmup_steps and cfg.method.type == "lora":
        # The adapter belongs to the warmed-up weights, not to model.name: save them merged.
        from tunesmith.train.rl.reward_model import save_merged

        def save(unwrapped: Any, _state: Any) -> Any:
            return save_merged(unwrapped, tokenizer, session.run_dir)

    return session.finish(loop, opt.model, tokenizer, renderer, save=save, summary=summary)
