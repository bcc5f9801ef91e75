"""Mixing sources by absolute counts or by ratios, with seeded resampling.

Semantics (documented in the README):

* ``samples: N`` — an absolute count. ``N // len`` full copies of the source, then the remainder
  drawn **without replacement** (seeded). So every row appears either ``k`` or ``k + 1`` times and
  no row is favoured by chance more than that.
* ``weight: w`` — a ratio of the final mix. Weighted sources share ``data.total_samples`` (default:
  the sum of their sizes) in proportion to their weights; counts are rounded by the largest
  remainder so they sum exactly to the total and each is within one sample of the exact share.
  Each count is then drawn as for ``samples``.
* neither — the whole source once.

Counted sources (``samples``) come on top of the weighted total.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class MixPlan:
    """How many samples each source contributes."""

    counts: list[int]
    sizes: list[int]

    def resampled(self, i: int) -> int:
        """Rows of source ``i`` used more than once (extra copies beyond the first)."""
        return max(0, self.counts[i] - self.sizes[i])


def plan_mix(
    sizes: Sequence[int],
    samples: Sequence[int | None],
    weights: Sequence[float | None],
    total: int | None = None,
) -> MixPlan:
    """Decide each source's count from its size and its ``samples``/``weight`` setting."""
    counts = [
        s if s is not None else (n if w is None else 0) for n, s, w in zip(sizes, samples, weights)
    ]
    weighted = [i for i, w in enumerate(weights) if w is not None]
    if weighted:
        budget = total if total is not None else sum(sizes[i] for i in weighted)
        wsum = sum(float(weights[i] or 0) for i in weighted)
        exact = [budget * float(weights[i] or 0) / wsum for i in weighted]
        floors = [math.floor(x) for x in exact]
        short = budget - sum(floors)
        order = sorted(range(len(weighted)), key=lambda k: (-(exact[k] - floors[k]), k))
        for k in order[:short]:
            floors[k] += 1
        for k, i in enumerate(weighted):
            counts[i] = floors[k]
    return MixPlan(counts=counts, sizes=list(sizes))


def draw(size: int, count: int, rng: random.Random, *, shuffle: bool = True) -> list[int]:
    """Indices for ``count`` samples from a source of ``size`` rows (full copies + remainder)."""
    if size == 0 or count == 0:
        return []
    copies, rest = divmod(count, size)
    picked = list(range(size)) * copies + sorted(rng.sample(range(size), rest))
    if shuffle:
        rng.shuffle(picked)
    return picked


def interleave(groups: Sequence[Sequence[int]], rng: random.Random) -> list[tuple[int, int]]:
    """Shuffle ``(source, index)`` pairs from every group into one seeded order."""
    pairs = [(g, i) for g, idx in enumerate(groups) for i in idx]
    rng.shuffle(pairs)
    return pairs
