"""Sample selection: confidence threshold, the Gaussian-mixture clean/noisy split, weights."""

from __future__ import annotations

import math

import pytest

from tunesmith.serval.noisy import confident_rows, cross_entropy, gmm_split, weights_for

pytest.importorskip("sklearn", reason="the mixture split uses scikit-learn (tunesmith[serval])")


def test_confident_rows_by_threshold() -> None:
    probs = [0.95, 0.5, 0.05, 0.6, 0.91, 0.2]
    assert confident_rows(probs, 0.9, min_kept=2) == [0, 2, 4]


def test_too_few_confident_rows_fill_up_with_both_labels() -> None:
    probs = [0.55, 0.52, 0.45, 0.3, 0.51]  # none reaches 0.9
    # The most confident two of each side: 0.55, 0.52 (label 1) and 0.3, 0.45 (label 0).
    assert confident_rows(probs, 0.9, min_kept=4) == [0, 1, 2, 3]
    # One side only above the threshold: the other side is filled in.
    assert confident_rows([0.99, 0.98, 0.4], 0.9, min_kept=2) == [0, 1, 2]


def test_weights() -> None:
    assert weights_for([1.0, 0.25, 0.5], "confidence") == pytest.approx([1.0, 0.5, 0.05])
    assert weights_for([1.0, 0.25], "none") == [1.0, 1.0]


def test_cross_entropy_against_the_hard_target() -> None:
    assert cross_entropy([0.8, 0.8], [0.9, 0.1]) == pytest.approx([-math.log(0.8), -math.log(0.2)])


def test_gmm_split_finds_the_low_loss_rows() -> None:
    # 30 clean rows with small losses, 10 noisy ones with large losses (constructed, interleaved).
    losses = []
    for i in range(40):
        losses.append(2.0 + 0.05 * (i % 5) if i % 4 == 3 else 0.1 + 0.01 * (i % 7))
    split = gmm_split(losses, seed=0)
    assert split.clean == tuple(i for i in range(40) if i % 4 != 3)
    assert split.means[0] < 0.2 < 2.0 < split.means[1]
    assert all(split.clean_prob[i] < 0.5 for i in range(3, 40, 4))


def test_gmm_split_of_equal_losses_keeps_everything() -> None:
    assert gmm_split([0.3] * 6).clean == tuple(range(6))
