"""Best-fit-decreasing packing: exact placement, coverage, capacity, efficiency, scale."""

from __future__ import annotations

import random
import time

import pytest

from tunesmith.data.packing import pack_best_fit_decreasing, pack_samples, packing_efficiency


def _reference_bfd(lengths: list[int], max_length: int) -> list[list[int]]:
    """Obvious O(n * rows) best-fit-decreasing with the documented tie-breaking."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        fitting = [(room[r], r) for r in range(len(rows)) if room[r] >= lengths[i]]
        if fitting:
            _, r = min(fitting)  # least room left, then the row opened first
            rows[r].append(i)
            room[r] -= lengths[i]
        else:
            rows.append([i])
            room.append(max_length - lengths[i])
    return rows


def test_hand_worked_example() -> None:
    # Sorted: 6(i0) 5(i3) 4(i1) 4(i4) 3(i2) 2(i5) 1(i6), capacity 10.
    # 6 -> r0 (room 4); 5 -> r1 (5); 4(i1) -> r0 (best fit: 4 <= 5, room 0);
    # 4(i4) -> r1 (1); 3 -> r2 (7); 2 -> r2 (5); 1 -> r1 (room 1 is the tightest, 0).
    lengths = [6, 4, 3, 5, 4, 2, 1]
    assert pack_best_fit_decreasing(lengths, 10) == [[0, 1], [3, 4, 6], [2, 5]]


def test_ties_break_by_index_and_row_order() -> None:
    assert pack_best_fit_decreasing([3, 3, 3, 3], 6) == [[0, 1], [2, 3]]
    # Two rows with equal room: the earlier row takes the sample.
    assert pack_best_fit_decreasing([4, 4, 2], 6) == [[0, 2], [1]]


def test_matches_brute_force_reference() -> None:
    for seed in range(500):
        rng = random.Random(seed)
        max_length = rng.randint(1, 40)
        lengths = [rng.randint(1, max_length) for _ in range(rng.randint(0, 30))]
        rows = pack_best_fit_decreasing(lengths, max_length)
        assert rows == _reference_bfd(lengths, max_length), f"seed {seed}"
        assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in row) <= max_length for row in rows)


def test_deterministic_and_input_not_mutated() -> None:
    rng = random.Random(7)
    lengths = [rng.randint(1, 64) for _ in range(500)]
    snapshot = list(lengths)
    assert pack_best_fit_decreasing(lengths, 64) == pack_best_fit_decreasing(lengths, 64)
    assert lengths == snapshot


@pytest.mark.parametrize(
    ("lengths", "max_length", "match"),
    [
        ([3, 11], 10, "sample 1 has length 11 > max_length 10"),
        ([3, 0], 10, "sample 1 has length 0"),
        ([1], 0, "max_length must be >= 1"),
    ],
)
def test_invalid_lengths(lengths: list[int], max_length: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pack_best_fit_decreasing(lengths, max_length)


def test_efficiency_value() -> None:
    lengths = [5, 5, 4]
    rows = pack_best_fit_decreasing(lengths, 10)
    assert rows == [[0, 1], [2]]
    assert packing_efficiency(lengths, rows, 10) == pytest.approx(14 / 20)
    assert packing_efficiency([], [], 10) == 0.0
    assert pack_best_fit_decreasing([], 10) == []


def test_pack_samples_groups_the_dicts() -> None:
    samples = [{"input_ids": [1] * n, "labels": [-100] * n} for n in (2, 7, 3)]
    rows = pack_samples(samples, 9)
    assert [[len(s["input_ids"]) for s in row] for row in rows] == [[7, 2], [3]]
    assert rows[0][0] is samples[1]


def test_hundred_thousand_samples_fast_and_tight() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 2048) for _ in range(100_000)]
    start = time.perf_counter()
    rows = pack_best_fit_decreasing(lengths, 4096)
    elapsed = time.perf_counter() - start
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert max(sum(lengths[i] for i in row) for row in rows) <= 4096
    assert packing_efficiency(lengths, rows, 4096) > 0.99
    assert elapsed < 5.0  # ~0.2 s measured; an O(n^2) scan takes minutes
