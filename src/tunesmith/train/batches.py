"""An epoch of micro-batches: packing or length grouping, seeded order, sharding by process.

Batches are collated once per epoch, before the first step, so the step never waits for data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from tunesmith.data.collate import VARLEN_KEYS, collate_packed, collate_padded, varlen_fields
from tunesmith.data.shard import shard_samples

if TYPE_CHECKING:
    from accelerate import Accelerator

    from tunesmith.config.schema import RunConfig

Batcher = Callable[[list[dict[str, Any]], int], list[dict[str, Any]]]
"""``(samples, seed) -> this process's micro-batches of one epoch``: what a recipe hands to
``Session.optimise``."""


def make_batches(
    samples: Sequence[dict[str, Any]],
    *,
    batch_size: int,
    max_length: int,
    packing: bool,
    pad_token_id: int,
    seed: int,
    num_processes: int = 1,
    rank: int = 0,
    group_by_length: bool = False,
    static_rows: bool = False,
    pin_memory: bool = False,
) -> list[dict[str, Any]]:
    """One epoch of this process's collated micro-batches, in a seeded order.

    Packed: samples are packed best-fit-decreasing into rows of ``max_length`` (isolated by
    position ids) and the rows shuffled. Padded: samples are shuffled and padded to the longest
    in each micro-batch; with ``group_by_length`` the shuffled samples are sorted by length within
    windows of ``GROUP_WINDOW`` global batches and the batches shuffled again, so each batch holds
    similar lengths (little padding) while the order stays random. Either way the units are
    grouped ``batch_size * num_processes`` per global micro-batch and process ``rank`` takes every
    ``num_processes``-th unit of it, so N processes see exactly the units one process would see
    with an N-times larger batch.

    ``static_rows`` pads every packed row to ``max_length``, and padded batches to a multiple of
    ``STATIC_MULTIPLE`` tokens (few shapes: for ``torch.compile`` and bf16 on CPU); ``pin_memory``
    pins the tensors for asynchronous copies to a GPU.
    """
    units, shards = shard_samples(
        samples,
        max_length=max_length,
        packing=packing,
        group_by_length=group_by_length,
        seed=seed,
        batch_size=batch_size,
        num_processes=num_processes,
        rank=rank,
    )
    batches = []
    for mine in shards:
        no_loss = not mine  # fewer units than processes: a batch that adds no loss
        picked = (
            [[_masked(samples[units[0][0]])]]
            if no_loss
            else [[samples[i] for i in u] for u in mine]
        )
        if packing:
            row_length = max_length if static_rows else None
            batches.append(collate_packed(picked, pad_token_id, row_length=row_length))
        else:
            multiple = STATIC_MULTIPLE if static_rows else None
            batches.append(
                collate_padded([u[0] for u in picked], pad_token_id, pad_to_multiple_of=multiple)
            )
    if pin_memory:
        batches = [
            {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in b.items()}
            for b in batches
        ]
    return batches


STATIC_MULTIPLE = 64


def static_pad_multiple(accelerator: Any) -> int | None:
    """``STATIC_MULTIPLE`` where padded lengths should be few (bf16/fp16 on CPU), else None."""
    from tunesmith.train.precision import static_shapes

    return STATIC_MULTIPLE if static_shapes(accelerator) else None


def sample_batcher(
    cfg: RunConfig, pad_token_id: int, accelerator: Accelerator, *, static_rows: bool = False
) -> Batcher:
    """The batcher of the token-sample stages (sft, distill): packing or length grouping as the
    config says, sharded over the processes. Rows are static (see ``make_batches``) when asked
    or when the run trains in bf16/fp16 on CPU (``precision.static_shapes``)."""
    from tunesmith.train.precision import static_shapes

    static_rows = static_rows or static_shapes(accelerator)

    def batches_for(samples: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
        return make_batches(
            samples,
            batch_size=cfg.train.batch_size,
            max_length=cfg.data.max_length,
            packing=cfg.data.packing,
            pad_token_id=pad_token_id,
            seed=seed,
            num_processes=accelerator.num_processes,
            rank=accelerator.process_index,
            group_by_length=cfg.data.group_by_length,
            static_rows=static_rows,
            pin_memory=accelerator.device.type == "cuda",
        )

    return batches_for


def pair_batcher(cfg: RunConfig, pad_token_id: int, accelerator: Accelerator) -> Batcher:
    """The batcher of the pair stages (preference, rm): padded pairs in a seeded order, their
    lengths a multiple of ``STATIC_MULTIPLE`` when the run trains in bf16/fp16 on CPU."""
    from tunesmith.data.pairs import make_pair_batches

    multiple = static_pad_multiple(accelerator)

    def batches_for(samples: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
        return make_pair_batches(
            samples,
            batch_size=cfg.train.batch_size,
            pad_token_id=pad_token_id,
            seed=seed,
            num_processes=accelerator.num_processes,
            rank=accelerator.process_index,
            pad_to_multiple_of=multiple,
        )

    return batches_for


def _masked(sample: dict[str, Any]) -> dict[str, Any]:
    return {**sample, "labels": [-100] * len(sample["labels"])}


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


def split_rows(batch: dict[str, Any], max_tokens: int | None) -> list[dict[str, Any]]:
    """``batch`` cut into passes of whole rows holding at most ``max_tokens`` tokens each.

    Every tensor (and the ``seq_lens`` list) with one entry per row is sliced; a batch with other
    per-batch data (images) or rows longer than ``max_tokens`` stays one pass of at least a row.
    Because the loss is normalised over the optimiser step, the passes train exactly what the
    whole batch would.
    """
    if max_tokens is None or "pixel_values" in batch:
        return [batch]
    rows, length = batch["input_ids"].shape
    per_pass = max(1, max_tokens // max(length, 1))
    if per_pass >= rows:
        return [batch]
    per_row = {k: v for k, v in batch.items() if k not in VARLEN_KEYS}
    for value in per_row.values():
        sized = isinstance(value, (torch.Tensor, list, tuple))
        if sized and (value.shape[0] if isinstance(value, torch.Tensor) else len(value)) != rows:
            return [batch]
    parts = []
    for i in range(0, rows, per_pass):
        part = {
            k: v[i : i + per_pass] if isinstance(v, (torch.Tensor, list, tuple)) else v
            for k, v in per_row.items()
        }
        if "cu_seq_lens_q" in batch:  # flash-attention's flat sequence bounds, for these rows
            part.update(varlen_fields(part["position_ids"]))
        parts.append(part)
    return parts
