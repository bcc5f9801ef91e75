"""Perplexity: the token-weighted validation loss, rendered and labelled exactly as in training.

The samples come from the data engine with the run's template, renderer options and labels (the
run's own validation split, or every row of the task's ``datasets`` entries); the loss is the
next-token cross-entropy over the trained tokens (with the training's per-token loss weights), so
``loss`` equals training's ``val_loss`` on the same split and ``perplexity = exp(loss)``.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.evaluate.base import EvalContext, Task, TaskResult
from tunesmith.evaluate.registry import register

IGNORE_INDEX = -100


def token_nll_sum(logits: Any, labels: Any, weights: Any = None) -> tuple[Any, Any]:
    """``(summed next-token NLL, trained-token count)``: position t predicts label t+1.

    The same sum as training's loss: only labels other than -100 count, each times its weight.
    """
    import torch.nn.functional as F

    target = labels[:, 1:].reshape(-1)
    flat = logits[:, :-1].reshape(-1, logits.shape[-1])
    keep = target != IGNORE_INDEX
    losses = F.cross_entropy(flat[keep].float(), target[keep], reduction="none")
    if weights is not None:
        losses = losses * weights[:, 1:].reshape(-1)[keep].to(losses.dtype)
    return losses.sum(), keep.sum()


def samples_for(ctx: EvalContext, spec: Any) -> tuple[list[dict[str, Any]], str, dict[str, int]]:
    """Rendered samples (``input_ids``, ``labels``[, ``weights``]), where they came from, and the
    rows the renderer skipped, by reason (too long for ``data.max_length``, ...)."""
    from tunesmith.config.schema import DataConfig
    from tunesmith.data.engine import build_renderer, prepare

    run = ctx.run if ctx.run is not None else ctx.engine.run
    if run is not None:
        cfg = run.config
        data, template, stage = cfg.data, cfg.model.template, cfg.method.stage
    elif spec.datasets:
        data, template, stage = DataConfig(datasets=spec.datasets), None, "sft"
    else:
        raise ConfigError(
            f"eval.tasks {spec.name}: a model without a run has no validation split; "
            "give the task datasets (or --data FILE)"
        )
    if stage not in ("sft", "pt"):
        raise ConfigError(f"eval.tasks {spec.name}: perplexity is for sft/pt runs, not {stage}")
    renderer = build_renderer(ctx.engine.tokenizer, data, template, stage=stage)
    if spec.datasets:
        # Every row of these sources once, rendered with the run's options: no split, no mix.
        data = data.model_copy(
            update={
                "datasets": spec.datasets,
                "val_size": 0,
                "total_samples": None,
                "packing": False,
            }
        )
        prepared = prepare(data, renderer, stage=stage, refuse=False)
        return prepared.train, "datasets", _skipped(prepared)
    if not data.val_size:
        raise ConfigError(
            f"eval.tasks {spec.name}: the run has no validation split (data.val_size is 0); "
            "set data.val_size or give the task datasets"
        )
    prepared = prepare(data, renderer, stage=stage, refuse=False)
    return prepared.val, "val split", _skipped(prepared)


def _skipped(prepared: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for source in prepared.report.sources:
        for reason, n in source.skipped.items():
            out[reason] = out.get(reason, 0) + n
    return out


@register
class Perplexity(Task):
    """Validation loss and perplexity."""

    kind = "perplexity"

    def run(self, ctx: EvalContext) -> TaskResult:
        """Score the samples in right-padded batches."""
        from tunesmith.data.collate import collate_padded

        t0 = time.perf_counter()
        samples, source, skipped = samples_for(ctx, self.spec)
        if self.spec.max_samples:
            samples = samples[: self.spec.max_samples]
        if not samples:
            raise ConfigError(f"eval.tasks {self.name}: no samples to score")
        pad = ctx.engine.tokenizer.pad_token_id or 0
        total, count, rows = 0.0, 0, []
        for i in range(0, len(samples), ctx.batch_size):
            chunk = samples[i : i + ctx.batch_size]
            batch = collate_padded(chunk, pad)
            logits = ctx.forward(batch["input_ids"], batch["attention_mask"])
            for b in range(len(chunk)):
                one = slice(b, b + 1)
                w = batch["weights"][one].to(logits.device) if "weights" in batch else None
                nll, n = token_nll_sum(logits[one], batch["labels"][one].to(logits.device), w)
                total, count = total + float(nll), count + int(n)
                rows.append(
                    {
                        "id": i + b,
                        "prompt": None,
                        "reference": None,
                        "prediction": None,
                        "tokens": int(n),
                        "loss": float(nll) / max(int(n), 1),
                    }
                )
        loss = total / max(count, 1)
        scores = {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}
        details = {"source": source, "tokens": count, "samples": len(samples), "skipped": skipped}
        return TaskResult(
            self.kind, self.name, scores, rows, details, len(rows), time.perf_counter() - t0
        )
