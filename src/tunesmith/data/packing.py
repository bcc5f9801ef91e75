"""Best-fit-decreasing packing of rendered samples into fixed-capacity rows.

Packing only decides *which* samples share a row; isolating them from each other (position ids that
restart per sample, no cross-sample attention, no loss across a boundary) is ``collate.py``'s job.

The placement is deterministic: samples are taken longest first (ties: lower index first), each goes
into the open row with the *least* remaining capacity that still fits it (ties: the row opened
first), and a new row is opened only when none fits. Remaining capacities are integers in
``[1, max_length]``, so rows are bucketed by capacity and the smallest fitting capacity is found by
bisecting a sorted list of the distinct capacities in use: ``O(n log n)`` overall, and each
insertion moves at most ``max_length`` pointers, never one per row.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Mapping, Sequence
from typing import Any


def _check_lengths(lengths: Sequence[int], max_length: int) -> None:
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    for i, n in enumerate(lengths):
        if n < 1:
            raise ValueError(f"sample {i} has length {n}; empty samples cannot be packed")
        if n > max_length:
            raise ValueError(
                f"sample {i} has length {n} > max_length {max_length}; "
                "truncate or drop it before packing"
            )


def pack_best_fit_decreasing(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Assign sample indices to rows of at most ``max_length`` tokens, best-fit-decreasing.

    Args:
        lengths: Token count of each sample (all ``1 <= n <= max_length``).
        max_length: Capacity of one row in tokens.

    Returns:
        One list of sample indices per row, rows in the order they were opened and indices in the
        order they were placed (longest first). Every index appears exactly once.

    Raises:
        ValueError: A length is < 1 or > ``max_length`` (the renderer truncates or drops those),
            or ``max_length`` < 1.
    """
    _check_lengths(lengths, max_length)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))

    rows: list[list[int]] = []
    # capacity -> min-heap of row ids with exactly that much room left (min id = opened first).
    buckets: dict[int, list[int]] = {}
    # Distinct capacities that currently have at least one row, ascending.
    capacities: list[int] = []

    def add_row_capacity(row: int, room: int) -> None:
        if room == 0:  # a full row can never take another (non-empty) sample
            return
        bucket = buckets.get(room)
        if bucket is None:
            buckets[room] = [row]
            insort(capacities, room)
        else:
            heapq.heappush(bucket, row)

    for idx in order:
        n = lengths[idx]
        pos = bisect_left(capacities, n)
        if pos == len(capacities):
            rows.append([idx])
            add_row_capacity(len(rows) - 1, max_length - n)
            continue
        room = capacities[pos]
        bucket = buckets[room]
        row = heapq.heappop(bucket)
        if not bucket:
            del buckets[room]
            capacities.pop(pos)
        rows[row].append(idx)
        add_row_capacity(row, room - n)
    return rows


def packing_efficiency(
    lengths: Sequence[int], rows: Sequence[Sequence[int]], max_length: int
) -> float:
    """Fraction of row slots holding real tokens.

    That is ``sum(lengths in rows) / (len(rows) * max_length)``; 0.0 when there are no rows.
    """
    if not rows:
        return 0.0
    used = sum(lengths[i] for row in rows for i in row)
    return used / (len(rows) * max_length)


def pack_samples(
    samples: Sequence[Mapping[str, Any]], max_length: int
) -> list[list[Mapping[str, Any]]]:
    """Pack rendered samples (dicts with ``input_ids``) into rows ready for ``collate_packed``."""
    lengths = [len(s["input_ids"]) for s in samples]
    return [[samples[i] for i in row] for row in pack_best_fit_decreasing(lengths, max_length)]
