"""Group-relative advantages, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from tunesmith.train.rl.advantages import EPS, group_advantages


def test_group_scaling_by_hand() -> None:
    # group 1: rewards 1, 0, 0, 1 -> mean 0.5, sample std sqrt(1/3); group 2 all equal -> 0
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    a = group_advantages(r, 4)
    s = math.sqrt(1 / 3)
    expect = [0.5 / (s + EPS), -0.5 / (s + EPS), -0.5 / (s + EPS), 0.5 / (s + EPS), 0, 0, 0, 0]
    assert a.tolist() == pytest.approx(expect, abs=1e-6)


def test_batch_and_no_scaling() -> None:
    r = torch.tensor([3.0, 1.0, 0.0, 0.0])
    assert group_advantages(r, 2, "none").tolist() == [1.0, -1.0, 0.0, 0.0]
    std = float(r.std())  # sample std over the batch: sqrt(((2)^2+0+1+1)/3) = sqrt(2)
    assert std == pytest.approx(math.sqrt(2))
    assert group_advantages(r, 2, "batch").tolist() == pytest.approx(
        [1 / (std + EPS), -1 / (std + EPS), 0.0, 0.0]
    )


def test_groups_must_divide() -> None:
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), 4)
