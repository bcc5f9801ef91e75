"""Micro-batches across processes: one seeded order, one sharding rule for every stage.

SFT and pretraining (``train/batches.make_batches``), preference pairs
(``data/pairs.make_pair_batches``) and vision-language batches (``train/recipes/vlm.VLMBatches``)
all take their epoch's order and this process's share from :func:`shard`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any


def shard(
    units: list[list[int]],
    *,
    seed: int,
    batch_size: int,
    num_processes: int = 1,
    rank: int = 0,
    lengths: Sequence[int] | None = None,
) -> list[list[list[int]]]:
    """This process's units of each global micro-batch of an epoch, in a seeded order.

    The one place every stage orders and shards its micro-batches. ``units`` (lists of sample
    indices: a packed row, or one sample) are shuffled in place with ``random.Random(seed)``;
    with ``lengths`` (per sample) they are then grouped by length (see ``_grouped``). They are
    cut ``batch_size * num_processes`` per global micro-batch, of which process ``rank`` takes
    every ``num_processes``-th unit, so N processes see exactly the units one process would see
    with an N-times larger batch. An empty list: this process has no unit in that batch (the
    caller adds a filler that trains nothing, for the collectives). ``units`` is left in the
    shuffled order (callers pick their filler from it).
    """
    rng = random.Random(seed)
    rng.shuffle(units)
    global_size = batch_size * num_processes
    if lengths is not None:
        units[:] = _grouped(units, list(lengths), global_size, rng)
    return [
        units[b : b + global_size][rank::num_processes] for b in range(0, len(units), global_size)
    ]


GROUP_WINDOW = 32
"""Global batches per window of length grouping (as HF's megabatches: large enough to find
similar lengths, small enough to keep the order random)."""


def _grouped(
    units: list[list[int]], lengths: list[int], global_size: int, rng: random.Random
) -> list[list[int]]:
    window = global_size * GROUP_WINDOW
    ordered: list[list[int]] = []
    for w in range(0, len(units), window):
        ordered += sorted(units[w : w + window], key=lambda u: -lengths[u[0]])
    groups = [ordered[b : b + global_size] for b in range(0, len(ordered), global_size)]
    last = groups.pop() if groups and len(groups[-1]) < global_size else None
    rng.shuffle(groups)  # the short last batch stays last
    return [u for g in [*groups, *([last] if last else [])] for u in g]


def shard_samples(
    samples: Sequence[dict[str, Any]],
    *,
    max_length: int,
    packing: bool,
    group_by_length: bool,
    seed: int,
    batch_size: int,
    num_processes: int = 1,
    rank: int = 0,
) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Token samples as :func:`shard` units: packed best-fit-decreasing into rows of
    ``max_length``, or one sample a unit (grouped by length with ``group_by_length``).

    Returns ``(units in the epoch's order, this process's units of each micro-batch)``.
    """
    from tunesmith.data.packing import pack_best_fit_decreasing

    if packing:
        units = pack_best_fit_decreasing([len(s["input_ids"]) for s in samples], max_length)
    else:
        units = [[i] for i in range(len(samples))]
    lengths = [len(s["input_ids"]) for s in samples] if group_by_length and not packing else None
    mine = shard(
        units,
        seed=seed,
        batch_size=batch_size,
        num_processes=num_processes,
        rank=rank,
        lengths=lengths,
    )
    return units, mine
