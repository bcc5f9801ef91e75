"""Accuracy, ROC AUC (with ties) and agreement, against hand-computed values."""

from __future__ import annotations

import math

from tunesmith.serval.metrics import accuracy, agreement, roc_auc


def test_accuracy() -> None:
    assert accuracy([0.9, 0.4, 0.5, 0.1], [1, 1, 1, 0]) == 0.75


def test_roc_auc_counts_pairs_and_half_ties() -> None:
    # Positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4) (0.8>0.1) (0.4=0.4: 1/2) (0.4>0.1).
    assert roc_auc([0.8, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == 3.5 / 4
    assert roc_auc([0.1, 0.9], [1, 0]) == 0.0
    assert math.isnan(roc_auc([0.3, 0.4], [1, 1]))


def test_agreement() -> None:
    assert agreement([0.9, 0.2, 0.6], [0.7, 0.6, 0.1]) == 1 / 3
