"""What every training recipe does around its own step: start, optimise, resume, finish.

A recipe (``recipes/sft.py``, ``preference.py``, ``vlm.py``) reads top to bottom:
``Session.start`` (threads, run directory and checkpoint, seed, accelerator, main-process
logging), its tokenizer, renderer, data and model, ``session.optimise`` (optimiser, schedule,
``accelerator.prepare``, resume to the next untrained step), ``session.train`` (the loop) and
``session.finish`` (gather, save, ``template.json``, the summary line). A new stage is a new small
recipe that calls these in the same order; the order of random-number use (seed, model init,
data shuffles, dropout) is the recipe's, so the same seed gives the same run.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.atomic import replace_dir
from tunesmith.config.schema import RunConfig
from tunesmith.errors import ConfigError
from tunesmith.train.accelerator import make_accelerator
from tunesmith.train.optim import make_optimizer, make_scheduler
from tunesmith.train.run_dir import open_run

Say = Callable[..., Any]
BatchesFor = Callable[[list[dict[str, Any]], int], Sequence[dict[str, Any]]]
"""``(samples, seed) -> one epoch of this process's micro-batches``."""


@dataclass
class TrainResult:
    """What a finished run leaves behind (the model stays in memory for callers and tests)."""

    run_dir: Path
    model: Any
    tokenizer: Any
    first_loss: float
    last_loss: float
    steps: int


@dataclass
class Optimised:
    """The prepared model, optimiser and schedule, and where training continues."""

    model: Any
    optimizer: Any
    scheduler: Any
    total_steps: int
    guard: dict[str, Any]
    state: dict[str, Any]
    stream: Any
    val_batches: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def enable_activation_checkpointing(model: Any) -> None:
    """Turn on activation (gradient) checkpointing; renamed in transformers 5.x."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    (enable or model.gradient_checkpointing_enable)()


@dataclass
class Session:
    """One training run in progress (see the module docstring for the order of calls)."""

    cfg: RunConfig
    say: Say
    run_dir: Path
    ckpt: Path | None
    accelerator: Any
    t_start: float

    @classmethod
    def start(cls, cfg: RunConfig, console: Any = None) -> Session:
        """Threads, checkpoint and run directory, seed, accelerator; ``say`` on the main process."""
        import torch

        say: Say = console.print if console is not None else print
        t_start = time.perf_counter()
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        ckpt, run_dir = open_run(cfg, say)
        seed_everything(cfg.train.seed)
        accelerator = make_accelerator(cfg, run_dir, say)
        say = say if accelerator.is_main_process else (lambda *a, **k: None)
        return cls(cfg, say, run_dir, ckpt, accelerator, t_start)

    def renderer(self, tokenizer: Any, **vision: Any) -> Any:
        """The run's finished renderer (``data/render.build_renderer``); the tokenizer keeps its
        template, so the saved result carries the one training used. ``vision``: image options."""
        from tunesmith.data.render import build_renderer

        cfg = self.cfg
        renderer = build_renderer(
            tokenizer, cfg.data, cfg.model.template, stage=cfg.method.stage, **vision
        )
        tokenizer.chat_template = renderer.chat_template
        return renderer

    def data(self, renderer: Any, stage: str) -> Any:
        """The prepared data (the main process prepares; the others read its cache), reported."""
        from tunesmith.data.engine import prepare, write_report

        with self.accelerator.main_process_first():
            data = prepare(self.cfg.data, renderer, stage=stage)
        if self.accelerator.is_main_process:
            write_report(data.report, self.run_dir)
        r, see = data.report, self.run_dir / "data_report.md"
        if stage in ("dpo", "orpo", "simpo", "kto"):
            unit = "examples" if stage == "kto" else "pairs"
            self.say(f"data: {r.samples} {unit}, {r.trained_tokens:,} trained tokens — see {see}")
        else:
            self.say(
                f"data: {r.samples} samples, {r.trained_tokens:,} trained tokens "
                f"from {len(r.sources)} source(s) — see {see}"
            )
        for line in r.warnings():  # sources cut or dropped by more than 1 %
            self.say(line)
        return data

    def load_model(self) -> Any:
        """The text model to train, before its method: no KV cache, activation checkpointing as
        configured, and tunesmith's SDPA (``model/attention.py``): attention within each packed
        sample, stock SDPA for other batches, and on CPU in fp32 under bf16."""
        from tunesmith.model.loader import load_model

        m = self.cfg.model
        model = load_model(
            m.name,
            dtype=m.dtype,
            attn_implementation=m.attn_implementation,
            trust_remote_code=m.trust_remote_code,
            revision=m.revision,
            quant=self.cfg.method.quant if self.cfg.method.type == "qlora" else None,
        )
        model.config.use_cache = False  # a KV cache would break packed-sequence isolation
        from tunesmith.model.attention import use_varlen_sdpa

        use_varlen_sdpa(model)
        if self.cfg.train.gradient_checkpointing:
            enable_activation_checkpointing(model)
        return model

    def optimise(
        self,
        model: Any,
        batches_for: BatchesFor,
        train: list[dict[str, Any]],
        val: list[dict[str, Any]],
        *,
        micro_per_epoch: int | None = None,
        after_prepare: Callable[[Any], None] | None = None,
        extra_guard: dict[str, Any] | None = None,
    ) -> Optimised:
        """Optimiser, schedule, ``accelerator.prepare``, then resume at the next untrained step.

        Epoch ``e`` trains ``batches_for(train, seed + e)`` (one epoch kept in memory). With
        ``micro_per_epoch`` known up front, batches are built only after ``after_prepare`` ran
        on the prepared model (the preference recipe stores reference log-probs in the samples
        there); otherwise epoch 0 is built first to count its micro-batches.
        """
        from tunesmith.train.batches import steps_per_epoch

        tc, accelerator = self.cfg.train, self.accelerator
        epochs: dict[int, Sequence[dict[str, Any]]] = {}

        def batches_for_epoch(epoch: int) -> Sequence[dict[str, Any]]:
            if epoch not in epochs:
                epochs.clear()  # keep one epoch of batches in memory
                epochs[epoch] = batches_for(train, tc.seed + epoch)
            return epochs[epoch]

        n_micro = micro_per_epoch if micro_per_epoch is not None else len(batches_for_epoch(0))
        per_epoch = steps_per_epoch(n_micro, tc.grad_accum)
        total_steps = tc.max_steps or max(1, math.ceil(per_epoch * tc.epochs))
        optimizer = make_optimizer(model, self.cfg)
        scheduler = make_scheduler(optimizer, self.cfg, total_steps)
        model, optimizer = accelerator.prepare(model, optimizer)
        model.train()
        if after_prepare is not None:
            after_prepare(model)
        n_micro = len(batches_for_epoch(0))
        val_batches = list(batches_for(val, 0)) if val else []
        # Resume: restore weights, optimiser, scheduler, RNG; skip the batches already trained.
        guard, state, stream = resume(
            self.cfg,
            self.ckpt,
            accelerator,
            model,
            optimizer,
            scheduler,
            batches_for_epoch,
            n_micro,
            self.say,
            extra_guard=extra_guard,
        )
        return Optimised(
            model, optimizer, scheduler, total_steps, guard, state, stream, val_batches
        )

    def train(
        self,
        opt: Optimised,
        *,
        tokenizer: Any = None,
        step_fn: Any = None,
        eval_fn: Any = None,
        show_progress: bool = True,
    ) -> Any:
        """Run the loop to ``opt.total_steps``; sample ``eval.prompts`` given a tokenizer."""
        from tunesmith.train.callbacks import SampleGenerations
        from tunesmith.train.loop import Loop

        cfg = self.cfg
        sampler = None
        if tokenizer is not None and cfg.eval.prompts:
            sampler = SampleGenerations(
                cfg.eval.prompts,
                self.run_dir / "samples.jsonl",
                max_new_tokens=cfg.eval.max_new_tokens,
                system=cfg.data.system,
                show=self.say,
            )
        loop = Loop(
            cfg,
            self.accelerator,
            opt.model,
            opt.optimizer,
            opt.scheduler,
            self.run_dir,
            opt.val_batches,
            opt.guard,
            step_fn=step_fn,
            eval_fn=eval_fn,
            sampler=sampler,
            tokenizer=tokenizer,
        )
        loop.run(
            opt.stream,
            opt.state,
            opt.total_steps,
            show_progress=show_progress,
            t_start=self.t_start,
        )
        return loop

    def finish(
        self,
        loop: Any,
        model: Any,
        tokenizer: Any,
        renderer: Any,
        *,
        save: Callable[[Any, dict[str, Any] | None], Path] | None = None,
        summary: Callable[[Any], str] | None = None,
    ) -> TrainResult:
        """Gather and save the result (``save``; default ``save_result``) with ``template.json``,
        and say the summary line (``summary(loop)`` adds to it; main process only)."""
        from tunesmith.data.render import template_json

        accelerator, run_dir = self.accelerator, self.run_dir
        accelerator.wait_for_everyone()
        loop.finish(time.perf_counter() - self.t_start)  # every process: validation is collective
        # The mixed-precision forward wrapper goes: the returned model runs in its own dtype.
        unwrapped = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
        state_dict = gathered_state_dict(accelerator, model)
        if accelerator.is_main_process:
            (run_dir / "template.json").write_text(
                json.dumps(template_json(renderer), indent=2, ensure_ascii=False) + "\n",
                encoding="utf-8",
            )
            if save is None:
                save_result(unwrapped, tokenizer, self.cfg, run_dir, state_dict=state_dict)
            else:
                save(unwrapped, state_dict)
            extra = summary(loop) if summary is not None else ""
            word = "stopped" if loop.interrupted else "done"
            self.say(
                f"{word}: loss {loop.first_loss:.3f} -> {loop.last_loss:.3f} at step {loop.step}"
                f"{extra}, {time.perf_counter() - self.t_start:.1f} s; saved to {run_dir}"
            )
        return TrainResult(
            run_dir, unwrapped, tokenizer, loop.first_loss, loop.last_loss, loop.step
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
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.config.use_cache = True  # training turned it off; inference wants it back
    from tunesmith.model.attention import restore_sdpa

    restore_sdpa(base)
    kwargs: dict[str, Any] = {} if state_dict is None else {"state_dict": state_dict}
    pissa_init = getattr(model, "pissa_init_dir", None)
    if pissa_init:
        kwargs["path_initial_model_for_weight_conversion"] = pissa_init
    with replace_dir(target, f".{target.name}.") as tmp:  # written whole or not at all
        model.save_pretrained(tmp, **kwargs)
        tokenizer.save_pretrained(tmp)
    from tunesmith.export.card import write_run_card

    write_run_card(run_dir)  # the run's README.md: what was trained, how it went, what next
    return target
