"""Which LLM labels to trust: confidence threshold, a loss-mixture split, sample weights."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def confidence(p: float) -> float:
    """How sure a probability is of its hard label: ``max(p, 1 - p)``."""
    return max(p, 1 - p)


def confident_rows(probs: Sequence[float], threshold: float, min_kept: int) -> list[int]:
    """Indices with ``confidence >= threshold``; when fewer than ``min_kept``, the most
    confident of each hard label fill up to ``min_kept // 2`` each (both labels stay present).
    """
    kept = [i for i, p in enumerate(probs) if confidence(p) >= threshold]
    if len(kept) >= min_kept and len({probs[i] >= 0.5 for i in kept}) == 2:
        return kept
    chosen = set(kept)
    for side in (False, True):
        rows = sorted(
            (i for i, p in enumerate(probs) if (p >= 0.5) == side),
            key=lambda i: -confidence(probs[i]),
        )
        chosen.update(rows[: max(min_kept // 2, 1)])
    return sorted(chosen)


def weights_for(probs: Sequence[float], kind: str) -> list[float]:
    """Sample weights: ``2 * |p - 0.5|`` (``confidence``, floored at 0.05) or 1 (``none``)."""
    if kind == "none":
        return [1.0] * len(probs)
    return [max(2 * abs(p - 0.5), 0.05) for p in probs]


def cross_entropy(pred: Sequence[float], target: Sequence[float]) -> list[float]:
    """Per-row loss of predicted p(label 1) against the hard label of ``target``."""
    eps = 1e-7
    return [-math.log(max(q if t >= 0.5 else 1 - q, eps)) for q, t in zip(pred, target)]


@dataclass(frozen=True)
class Split:
    """The clean/noisy split of a mixture fit.

    Attributes:
        clean: indices (into the losses) in the low-loss component.
        clean_prob: each row's posterior of the low-loss component.
        means: the two components' mean losses, low first.
    """

    clean: tuple[int, ...]
    clean_prob: tuple[float, ...]
    means: tuple[float, float]


def gmm_split(losses: Sequence[float], *, seed: int = 0, p_clean: float = 0.5) -> Split:
    """DivideMix's core idea: a two-component Gaussian mixture on per-sample losses; rows whose
    posterior of the low-mean component exceeds ``p_clean`` are clean.

    Losses are min-max normalised first (as DivideMix does); constant losses are all clean.
    """
    from sklearn.mixture import GaussianMixture

    lo, hi = min(losses), max(losses)
    if hi - lo < 1e-9 or len(losses) < 4:
        return Split(tuple(range(len(losses))), (1.0,) * len(losses), (lo, hi))
    x = [[(v - lo) / (hi - lo)] for v in losses]
    gmm = GaussianMixture(n_components=2, max_iter=100, reg_covar=5e-4, random_state=seed)
    gmm.fit(x)
    means = [float(m[0]) for m in gmm.means_]
    low = min(range(2), key=means.__getitem__)
    post = [float(r[low]) for r in gmm.predict_proba(x)]
    clean = tuple(i for i, q in enumerate(post) if q > p_clean)
    scale = [lo + m * (hi - lo) for m in sorted(means)]
    return Split(clean, tuple(post), (scale[0], scale[1]))
