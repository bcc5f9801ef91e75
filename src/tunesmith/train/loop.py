"""The shared optimiser step: forward, token-normalised loss, backward, accumulate, clip.

The loss of one optimiser step is ``sum of token losses / trained tokens in the whole step`` —
over every micro-batch and every process — so ``batch 8 x accum 1``, ``batch 2 x accum 4`` and two
processes with ``batch 4`` produce the same gradients.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tunesmith.data.collate import collate_packed, collate_padded, count_trained_tokens
from tunesmith.data.collate import model_inputs as to_model_inputs
from tunesmith.data.packing import pack_best_fit_decreasing
from tunesmith.train.losses import token_ce_sum


@dataclass
class StepStats:
    """What one optimiser step measured."""

    loss: float
    tokens: int  # trained tokens in the step (all processes)
    seq_tokens: int  # real (non-padding) tokens fed to the model on this process
    grad_norm: float | None


def make_batches(
    samples: Sequence[dict[str, Any]],
    *,
    batch_size: int,
    max_length: int,
    packing: bool,
    pad_token_id: int,
    seed: int,
) -> list[dict[str, Any]]:
    """One epoch of collated micro-batches in a seeded order.

    Packed: samples are packed best-fit-decreasing into rows of ``max_length`` (isolated by
    position ids), rows are shuffled, then grouped ``batch_size`` rows per micro-batch.
    Padded: samples are shuffled and padded to the longest in each micro-batch.
    """
    rng = random.Random(seed)
    if packing:
        rows = pack_best_fit_decreasing([len(s["input_ids"]) for s in samples], max_length)
        rng.shuffle(rows)
        return [
            collate_packed(
                [[samples[i] for i in row] for row in rows[b : b + batch_size]], pad_token_id
            )
            for b in range(0, len(rows), batch_size)
        ]
    order = list(range(len(samples)))
    rng.shuffle(order)
    return [
        collate_padded([samples[i] for i in order[b : b + batch_size]], pad_token_id)
        for b in range(0, len(order), batch_size)
    ]


def steps_per_epoch(n_micro: int, grad_accum: int) -> int:
    """Optimiser steps in an epoch of ``n_micro`` micro-batches (a short last step counts)."""
    return max(1, math.ceil(n_micro / grad_accum))


def micro_batch_stream(
    batches_for_epoch: Any, grad_accum: int, start_epoch: int = 0
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Yield ``(epoch, micro-batches of one optimiser step)`` forever, epoch after epoch."""
    epoch = start_epoch
    while True:
        batches = batches_for_epoch(epoch)
        for i in range(0, len(batches), grad_accum):
            yield epoch, batches[i : i + grad_accum]
        epoch += 1


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def train_step(
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    accelerator: Any,
    micro: list[dict[str, Any]],
    *,
    attn_implementation: str,
    max_grad_norm: float | None,
) -> StepStats:
    """One optimiser step over ``micro`` (the step's micro-batches on this process)."""
    device = accelerator.device
    local_tokens = sum(count_trained_tokens(b) for b in micro)
    total = accelerator.reduce(torch.tensor(local_tokens, device=device), reduction="sum")
    total_tokens = int(total.item())
    # DDP averages gradients over processes; scaling by the process count turns that average
    # back into the global sum divided by the global token count.
    scale = accelerator.num_processes / max(total_tokens, 1)
    loss_sum = torch.zeros((), device=device)
    seq_tokens = 0
    for k, batch in enumerate(micro):
        batch = _to_device(batch, device)
        sync = k == len(micro) - 1
        ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
        with ctx, accelerator.autocast():
            out = model(**to_model_inputs(batch, attn_implementation))
            part, _n = token_ce_sum(out.logits, batch["labels"], batch.get("weights"))
            accelerator.backward(part * scale)
        loss_sum += part.detach()
        seq_tokens += _real_tokens(batch)
    grad_norm = None
    if max_grad_norm is not None:
        norm = accelerator.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], max_grad_norm
        )
        grad_norm = float(norm) if norm is not None else None
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    global_loss = accelerator.reduce(loss_sum, reduction="sum")
    return StepStats(
        loss=float(global_loss) / max(total_tokens, 1),
        tokens=total_tokens,
        seq_tokens=seq_tokens,
        grad_norm=grad_norm,
    )


def _real_tokens(batch: dict[str, Any]) -> int:
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(sum(sum(lens) for lens in batch.get("seq_lens", [])))


@torch.no_grad()
def evaluate_loss(
    model: Any, accelerator: Any, batches: list[dict[str, Any]], *, attn_implementation: str
) -> float:
    """Mean loss per trained token over ``batches`` (validation)."""
    model.eval()
    total = torch.zeros((), device=accelerator.device)
    count = torch.zeros((), device=accelerator.device)
    for batch in batches:
        batch = _to_device(batch, accelerator.device)
        with accelerator.autocast():
            out = model(**to_model_inputs(batch, attn_implementation))
        part, n = token_ce_sum(out.logits, batch["labels"], batch.get("weights"))
        total += part
        count += n
    model.train()
    total = accelerator.reduce(total, reduction="sum")
    count = accelerator.reduce(count, reduction="sum")
    return float(total / count.clamp(min=1))
