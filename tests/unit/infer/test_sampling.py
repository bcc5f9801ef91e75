"""Per-row token choice: penalties, top-k / top-p, seeds, validation."""

from __future__ import annotations

import pytest
import torch

from tunesmith.errors import ConfigError
from tunesmith.infer.sampling import (
    GenParams,
    apply_penalties,
    choose_tokens,
    make_generator,
    sample_row,
)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"stop": [""]}, "stop"),
    ],
)
def test_invalid_params_are_one_line_config_errors(kwargs: dict, word: str) -> None:
    with pytest.raises(ConfigError, match=word) as info:
        GenParams(**kwargs).check()
    assert "\n" not in str(info.value)


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits() -> None:
    logits = torch.tensor([2.0, -2.0, 1.0, 4.0])
    out = apply_penalties(logits, GenParams(repetition_penalty=2.0), prompt=[0], answer=[1])
    assert out.tolist() == [1.0, -4.0, 1.0, 4.0]
    assert logits.tolist() == [2.0, -2.0, 1.0, 4.0]  # input untouched


def test_presence_and_frequency_penalties_follow_openai() -> None:
    logits = torch.zeros(4)
    params = GenParams(presence_penalty=0.5, frequency_penalty=0.25)
    out = apply_penalties(logits, params, prompt=[3], answer=[1, 1, 2])
    # token 1: 0.5 + 2 * 0.25; token 2: 0.5 + 0.25; prompt tokens are not penalised
    assert out.tolist() == [0.0, -1.0, -0.75, 0.0]


def test_top_k_one_and_tiny_top_p_are_the_argmax() -> None:
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    gen = make_generator(0)
    for params in (GenParams(temperature=5.0, top_k=1), GenParams(temperature=5.0, top_p=1e-6)):
        assert {sample_row(logits, params, gen) for _ in range(50)} == {1}


def test_top_k_restricts_samples_to_the_k_best() -> None:
    logits = torch.tensor([0.0, 1.0, 0.5, 0.9, -3.0])
    gen = make_generator(1)
    draws = {sample_row(logits, GenParams(temperature=10.0, top_k=2), gen) for _ in range(300)}
    assert draws == {1, 3}


def test_top_p_keeps_the_smallest_set_covering_p() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    gen = make_generator(2)
    params = GenParams(temperature=1.0, top_p=0.75)
    draws = {sample_row(probs.log(), params, gen) for _ in range(300)}
    assert draws == {0, 1}  # 0.5 < 0.75 so token 1 is needed; 0.8 covers p


def test_seeded_generators_repeat() -> None:
    logits = torch.randn(50, generator=torch.Generator().manual_seed(0))
    params = GenParams(temperature=1.0)
    a = [sample_row(logits, params, g) for g in [make_generator(7)] for _ in range(20)]
    b = [sample_row(logits, params, g) for g in [make_generator(7)] for _ in range(20)]
    assert a == b
    assert len(set(a)) > 1


def test_choose_tokens_mixes_greedy_and_sampled_rows() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0], [0.0, 0.0, 9.0]])
    params = [GenParams(), GenParams(repetition_penalty=100.0), GenParams(temperature=1e-3)]
    out = choose_tokens(
        logits, params, [[], [0], []], [[], [], []], [None, None, make_generator(0)]
    )
    # row 1: token 0 was seen in the prompt, 3.0 / 100 = 0.03 < 1.0
    assert out == [1, 2, 2]
