"""The shared optimiser step: forward, token-normalised loss, backward, accumulate, clip.

The loss of one optimiser step is ``sum of token losses / trained tokens in the whole step`` —
over every micro-batch and every process — so ``batch 8 x accum 1``, ``batch 2 x accum 4`` and two
processes with ``batch 4`` produce the same gradients.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from tunesmith.data.collate import count_trained_tokens
from tunesmith.train.batches import split_rows
from tunesmith.train.lm_loss import lm_loss_sum


@dataclass
class StepStats:
    """What one optimiser step measured."""

    loss: float
    tokens: int  # trained tokens in the step (all processes)
    seq_tokens: int  # real (non-padding) tokens fed to the model on this process
    grad_norm: float | None
    metrics: dict[str, float] = field(default_factory=dict)  # extra numbers for the log


StepFn = Callable[[list[dict[str, Any]]], StepStats]
"""One optimiser step over the step's micro-batches on this process (see ``train_step``)."""

EvalFn = Callable[[], dict[str, float]]
"""Validation numbers for the log, e.g. ``{"val_loss": ...}`` (called on every process)."""


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    # Pinned tensors (see make_batches) copy to a GPU asynchronously, overlapping the step.
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


def train_step(
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    accelerator: Any,
    micro: list[dict[str, Any]],
    *,
    attn_implementation: str,
    max_grad_norm: float | None,
    ce_impl: str = "full",
    ce_chunk_size: int = 4096,
    pass_tokens: int | None = None,
) -> StepStats:
    """One optimiser step over ``micro`` (the step's micro-batches on this process).

    ``ce_impl``: how the loss reaches the vocabulary (see ``lm_loss``; resolved, not ``auto``).
    ``pass_tokens``: run each micro-batch as passes of at most this many tokens (whole rows; see
    ``split_rows``); the gradients are the same, the activations smaller.
    """
    device = accelerator.device
    local_tokens = sum(count_trained_tokens(b) for b in micro)
    total = accelerator.reduce(torch.tensor(local_tokens, device=device), reduction="sum")
    total_tokens = int(total.item())
    # DDP averages gradients over processes; scaling by the process count turns that average
    # back into the global sum divided by the global token count.
    scale = accelerator.num_processes / max(total_tokens, 1)
    loss_sum = torch.zeros((), device=device)
    seq_tokens = 0
    passes = [part for batch in micro for part in split_rows(batch, pass_tokens)]
    for k, batch in enumerate(passes):
        batch = _to_device(batch, device)
        sync = k == len(passes) - 1
        ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
        with ctx, accelerator.autocast():
            part, _n = lm_loss_sum(
                model,
                batch,
                attn_implementation=attn_implementation,
                impl=ce_impl,
                chunk_size=ce_chunk_size,
            )
            accelerator.backward(part * scale)
        loss_sum += part.detach()
        seq_tokens += _real_tokens(batch)
    grad_norm = optimizer_step(model, optimizer, scheduler, accelerator, max_grad_norm)
    global_loss = accelerator.reduce(loss_sum, reduction="sum")
    return StepStats(
        loss=float(global_loss) / max(total_tokens, 1),
        tokens=total_tokens,
        seq_tokens=seq_tokens,
        grad_norm=grad_norm,
    )


def optimizer_step(
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    accelerator: Any,
    max_grad_norm: float | None,
) -> float | None:
    """Clip (when asked), step the optimiser and the schedule, clear gradients; the grad norm."""
    grad_norm = None
    if max_grad_norm is not None:
        norm = accelerator.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], max_grad_norm
        )
        grad_norm = float(norm) if norm is not None else None
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def _real_tokens(batch: dict[str, Any]) -> int:
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(sum(sum(lens) for lens in batch.get("seq_lens", [])))


@torch.no_grad()
def evaluate_loss(
    model: Any,
    accelerator: Any,
    batches: list[dict[str, Any]],
    *,
    attn_implementation: str,
    ce_impl: str = "full",
    ce_chunk_size: int = 4096,
) -> float:
    """Mean loss per trained token over ``batches`` (validation)."""
    model.eval()
    total = torch.zeros((), device=accelerator.device)
    count = torch.zeros((), device=accelerator.device)
    for batch in batches:
        batch = _to_device(batch, accelerator.device)
        with accelerator.autocast():
            part, n = lm_loss_sum(
                model,
                batch,
                attn_implementation=attn_implementation,
                impl=ce_impl,
                chunk_size=ce_chunk_size,
            )
        total += part
        count += n
    model.train()
    total = accelerator.reduce(total, reduction="sum")
    count = accelerator.reduce(count, reduction="sum")
    return float(total / count.clamp(min=1))


def step_timing(seconds: list[float]) -> dict[str, float]:
    """First and median step time: their difference is what compilation (or warm-up) cost."""
    if not seconds:
        return {}
    rest = sorted(seconds[1:]) or seconds
    return {
        "first_step_s": round(seconds[0], 3),
        "median_step_s": round(rest[len(rest) // 2], 3),
    }


def resolve_loss_impl(cfg: Any, model: Any, accelerator: Any) -> str:
    """``train.ce_impl`` resolved for this model and device (see ``lm_loss``)."""
    from tunesmith.errors import ConfigError
    from tunesmith.train.lm_loss import resolve_ce_impl

    kind = getattr(accelerator.distributed_type, "value", str(accelerator.distributed_type))
    try:
        return resolve_ce_impl(
            cfg.train.ce_impl,
            model,
            device=accelerator.device,
            sharded=kind in ("FSDP", "DEEPSPEED"),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


CPU_PASS_TOKENS = 2048
"""``train.pass_tokens: auto`` on CPU. Measured on 2 cores (4M Qwen2, LoRA, rows of 1024): passes of
2 rows ran 1.1-1.2x faster than 8 rows at once, with 0.55x the peak memory; 1 row was slower."""


def resolve_pass_tokens(setting: int | str | None, device: torch.device) -> int | None:
    """``train.pass_tokens`` for this device: ``auto`` splits on CPU only (GPUs want big passes)."""
    if setting == "auto":
        return CPU_PASS_TOKENS if device.type == "cpu" else None
    return setting if isinstance(setting, int) else None


class Loop:
    """Runs optimiser steps with logging, validation, checkpoints and a clean Ctrl-C.

    ``step_fn`` (default: SFT's ``train_step``) does one optimiser step; the numbers in its
    ``StepStats.metrics`` join each logged record. ``eval_fn`` (default: the validation loss over
    ``val_batches``, when there are any) gives the validation numbers.
    """

    def __init__(
        self,
        cfg: Any,
        accelerator: Any,
        model: Any,
        optimizer: Any,
        scheduler: Any,
        run_dir: Any,
        val_batches: list[dict[str, Any]],
        guard: dict[str, Any],
        *,
        step_fn: StepFn | None = None,
        eval_fn: EvalFn | None = None,
        sampler: Any = None,
        tokenizer: Any = None,
    ) -> None:
        from tunesmith.train.callbacks import EarlyStopping, MetricsLog

        self.cfg, self.accelerator = cfg, accelerator
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.run_dir, self.val_batches, self.guard = run_dir, val_batches, guard
        self.step_fn: StepFn = step_fn or self._sft_step
        self.eval_fn: EvalFn | None = eval_fn or (self._val_loss if val_batches else None)
        self.log = MetricsLog(run_dir / "metrics.jsonl")
        self.step = 0
        self.first_loss: float = float("nan")
        self.last_loss: float = float("nan")
        self.interrupted = False
        self.stopped_early = False
        self.sampler, self.tokenizer = sampler, tokenizer
        self.early = EarlyStopping(cfg.eval.early_stopping_patience)
        self.eval_every = cfg.eval.every or cfg.train.log_every * 10
        self.ce_impl = resolve_loss_impl(cfg, model, accelerator)
        self.pass_tokens = resolve_pass_tokens(cfg.train.pass_tokens, accelerator.device)
        self.step_seconds: list[float] = []  # this session's steps (the first one compiles)

    def _sft_step(self, micro: list[dict[str, Any]]) -> StepStats:
        return train_step(
            self.model,
            self.optimizer,
            self.scheduler,
            self.accelerator,
            micro,
            attn_implementation=self.cfg.model.attn_implementation,
            max_grad_norm=self.cfg.train.max_grad_norm,
            ce_impl=self.ce_impl,
            ce_chunk_size=self.cfg.train.ce_chunk_size,
            pass_tokens=self.pass_tokens,
        )

    def _val_loss(self) -> dict[str, float]:
        return {
            "val_loss": evaluate_loss(
                self.model,
                self.accelerator,
                self.val_batches,
                attn_implementation=self.cfg.model.attn_implementation,
                ce_impl=self.ce_impl,
                ce_chunk_size=self.cfg.train.ce_chunk_size,
            )
        }

    def run(
        self,
        stream: Iterator[tuple[int, list[dict[str, Any]]]],
        state: dict[str, Any],
        total_steps: int,
        *,
        show_progress: bool,
        t_start: float,
    ) -> None:
        """Train from ``state`` (fresh or resumed) up to ``total_steps``."""
        import signal
        import threading
        import time

        from tunesmith.train.callbacks import ProgressBar

        tc = self.cfg.train
        self.step = state["step"]
        epoch_now, in_epoch = state["epoch"], state["steps_in_epoch"]
        self.first_loss = state.get("first_loss", float("nan"))
        self.last_loss = state.get("last_loss", float("nan"))
        self.early.load(state.get("early", {}))
        if self.step == 0:
            self.generate_samples()  # answers before training, for comparison
        stop = threading.Event()
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
        window_tokens, window_start = 0, time.perf_counter()
        main = self.accelerator.is_main_process
        # --no-progress: a plain line per logged step instead of the bar (logs, CI).
        bar = ProgressBar(total_steps, enabled=main, plain=not show_progress, start=self.step)
        try:
            with bar:
                while self.step < total_steps:
                    epoch, micro = next(stream)
                    if epoch != epoch_now:
                        epoch_now, in_epoch = epoch, 0
                    t_step = time.perf_counter()
                    stats = self.step_fn(micro)
                    self.step_seconds.append(time.perf_counter() - t_step)
                    self.step += 1
                    in_epoch += 1
                    if self.first_loss != self.first_loss:  # NaN: not set yet
                        self.first_loss = stats.loss
                    self.last_loss = stats.loss
                    window_tokens += stats.seq_tokens * self.accelerator.num_processes
                    last = self.step == total_steps
                    due_eval = self.step % self.eval_every == 0 and not last
                    if self.step % tc.log_every == 0 or last or self.step == 1 or due_eval:
                        elapsed = time.perf_counter() - window_start
                        record = self._record(
                            stats, epoch_now, window_tokens / elapsed, t_start, due_eval
                        )
                        bar.update(self.step, record)
                        window_tokens, window_start = 0, time.perf_counter()
                    position = {"epoch": epoch_now, "steps_in_epoch": in_epoch}
                    periodic = tc.save_every and (self.step % tc.save_every == 0 or last)
                    halt = stop.is_set() or self.stopped_early
                    if periodic or halt:
                        self._save(position)  # last thing in the step: see checkpoint.py
                    if halt and not last:
                        self.interrupted = stop.is_set()
                        break
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _record(
        self,
        stats: StepStats,
        epoch: int,
        tokens_per_s: float,
        t_start: float,
        evaluate: bool = False,
    ) -> dict[str, Any]:
        import time

        from tunesmith.train.callbacks import memory_mib

        record = {
            "step": self.step,
            "epoch": epoch + 1,
            "loss": round(stats.loss, 6),
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": stats.grad_norm,
            "trained_tokens": stats.tokens,
            "tokens_per_s": tokens_per_s,
            "elapsed_s": round(time.perf_counter() - t_start, 2),
            **stats.metrics,
            **memory_mib(),
        }
        if evaluate:
            record.update(self.evaluate())
            self.generate_samples()
        if self.accelerator.is_main_process:
            self.log.write(record)
        if self.cfg.train.report_to:  # Accelerate's trackers log from the main process only
            numbers = {k: v for k, v in record.items() if isinstance(v, (int, float))}
            self.accelerator.log(numbers, step=self.step)
        return record

    def evaluate(self) -> dict[str, float]:
        """Validation numbers (every process: the reduction is collective), early stopping."""
        if self.eval_fn is None:
            return {}
        out = dict(self.eval_fn())
        if "val_loss" in out:
            if self.eval_fn == self._val_loss:  # a language-model loss: perplexity is meaningful
                out["val_ppl"] = math.exp(min(out["val_loss"], 50.0))
            self.stopped_early = self.early.update(out["val_loss"])
        return out

    def generate_samples(self) -> None:
        """Answer ``eval.prompts`` with the current weights (main process only)."""
        if self.sampler is None or not self.accelerator.is_main_process:
            return
        self.sampler(self.accelerator.unwrap_model(self.model), self.tokenizer, self.step)

    def _save(self, position: dict[str, Any]) -> None:
        from tunesmith.train.checkpoint import save_checkpoint

        state = {
            "step": self.step,
            **position,
            "first_loss": self.first_loss,
            "last_loss": self.last_loss,
            "early": self.early.state(),
            "guard": self.guard,
        }
        save_checkpoint(
            self.run_dir,
            self.step,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            accelerator=self.accelerator,
            state=state,
            keep_last=self.cfg.train.keep_last,
        )
        if self.accelerator.is_main_process:  # the plot follows the run, not only its end
            from tunesmith.train.callbacks import plot_loss

            plot_loss(self.log.read(), self.run_dir / "loss.png")

    def finish(self, seconds: float) -> None:
        """Final validation, the loss plot and a summary file (written by the main process)."""
        import json

        from tunesmith.train.callbacks import plot_loss

        val = self.evaluate()
        self.generate_samples()
        if not self.accelerator.is_main_process:
            return
        if val:
            self.log.write({"step": self.step, **val})
            if self.cfg.train.report_to:
                self.accelerator.log(val, step=self.step)
        if self.cfg.train.report_to:
            self.accelerator.end_training()
        plot_loss(self.log.read(), self.run_dir / "loss.png")
        summary = {
            "first_loss": self.first_loss,
            "last_loss": self.last_loss,
            "steps": self.step,
            "interrupted": self.interrupted,
            "stopped_early": self.stopped_early,
            "best_val_loss": self.early.best if self.early.best != float("inf") else None,
            "seconds": round(seconds, 1),
            "ce_impl": self.ce_impl,
            **step_timing(self.step_seconds),
        }
        (self.run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
