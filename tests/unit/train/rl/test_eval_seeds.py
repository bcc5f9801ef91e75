"""Held-out sampling draws the same seeds at every evaluation, apart from every training step."""

from __future__ import annotations

from tunesmith.train.rl.rollout import row_seed
from tunesmith.train.rl.step import EVAL_SEED_STEP


def test_eval_seeds_never_meet_a_training_step() -> None:
    eval_seeds = {row_seed(42, EVAL_SEED_STEP, row) for row in range(64)}
    train_seeds = {row_seed(42, step, row) for step in range(0, 2000) for row in range(64)}
    assert len(eval_seeds) == 64 and not eval_seeds & train_seeds
