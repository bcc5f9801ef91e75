"""Accuracy and ROC AUC of probabilities against 0/1 labels (no library needed)."""

from __future__ import annotations

from collections.abc import Sequence


def accuracy(probs: Sequence[float], labels: Sequence[int]) -> float:
    """Share of rows whose ``p >= 0.5`` matches the label."""
    if not labels:
        return float("nan")
    return sum(int(p >= 0.5) == y for p, y in zip(probs, labels)) / len(labels)


def roc_auc(probs: Sequence[float], labels: Sequence[int]) -> float:
    """The probability that a random positive scores above a random negative (ties count 1/2).

    ``nan`` when one class is missing.
    """
    pos = [p for p, y in zip(probs, labels) if y == 1]
    neg = [p for p, y in zip(probs, labels) if y == 0]
    if not pos or not neg:
        return float("nan")
    # Mann-Whitney U through average ranks: O(n log n).
    order = sorted(range(len(probs)), key=lambda i: probs[i])
    ranks = [0.0] * len(probs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and probs[order[j + 1]] == probs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    pos_ranks = sum(r for r, y in zip(ranks, labels) if y == 1)
    return (pos_ranks - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def agreement(a: Sequence[float], b: Sequence[float]) -> float:
    """Share of rows where two sets of probabilities give the same hard label."""
    if not a:
        return float("nan")
    return sum((x >= 0.5) == (y >= 0.5) for x, y in zip(a, b)) / len(a)
