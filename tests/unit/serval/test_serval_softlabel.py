"""Soft labels: the probability read from the label words' token distribution, and parsing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from tunesmith.evaluate.base import EvalContext
from tunesmith.serval.softlabel import (
    annotate,
    centre,
    log_odds_mean,
    parse_probability,
    token_probs,
    two_way_probability,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass
class FixedLogits(EvalContext):
    """A constructed model: every position's next-token distribution is the same, with
    ``logits`` at the given token ids and -30 elsewhere (through the real loglik code)."""

    logits: dict[int, float] = field(default_factory=dict)

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        import torch

        vocab = len(self.engine.tokenizer)
        row = torch.full((vocab,), -30.0)
        for token, value in self.logits.items():
            row[token] = value
        return row.expand(input_ids.shape[0], input_ids.shape[1], vocab).clone()


def test_two_way_probability_is_a_softmax_of_the_two_scores() -> None:
    assert two_way_probability(math.log(0.2), math.log(0.6)) == pytest.approx(0.75)
    assert two_way_probability(-1000.0, -1000.0) == pytest.approx(0.5)  # no underflow


def test_token_probs_read_the_label_words_distribution(qwen2_engine: Any) -> None:
    tok = qwen2_engine.tokenizer
    yes, no = tok.encode("yes"), tok.encode("no")
    assert len(yes) == len(no) == 1  # single tokens: p is exactly the two-way softmax
    ctx = FixedLogits(qwen2_engine, batch_size=2)
    ctx.logits = {yes[0]: math.log(3.0), no[0]: 0.0}
    probs = token_probs(ctx, ["record one", "record two", "three"], ("no", "yes"))
    assert probs == pytest.approx([0.75, 0.75, 0.75])
    ctx.logits = {yes[0]: 0.0, no[0]: math.log(9.0)}
    assert token_probs(ctx, ["x"], ("no", "yes")) == pytest.approx([0.1])


def test_parse_probability() -> None:
    assert parse_probability("0.7") == 0.7
    assert parse_probability("I'd say 70% likely") == pytest.approx(0.7)
    assert parse_probability("about 85") == pytest.approx(0.85)
    assert parse_probability(".25 or so") == 0.25
    assert parse_probability("very likely") is None
    assert parse_probability("150") is None


def test_parse_reading_falls_back_to_tokens_and_counts(qwen2_engine: Any) -> None:
    tok = qwen2_engine.tokenizer

    class Answers(FixedLogits):
        def generate(self, conversations: Any, **_: Any) -> list[str]:
            assert conversations == ["Rate: a", "Rate: b"]  # the parse prompt, filled in
            return ["0.9", "no idea"]

    ctx = Answers(qwen2_engine)
    ctx.logits = {tok.encode("yes")[0]: math.log(3.0), tok.encode("no")[0]: 0.0}
    got = annotate(
        ctx,
        ["a", "b"],
        prompt="{text}?",
        label_words=("no", "yes"),
        read="parse",
        parse_prompt="Rate: {text}",
    )
    assert got.probs == pytest.approx((0.9, 0.75))
    assert got.parse_failures == 1


def test_centre_removes_the_mean_log_odds() -> None:
    assert centre([0.8, 0.2]) == pytest.approx([0.8, 0.2])  # mean log-odds already 0
    p = 1 / (1 + math.exp(-3))  # log-odds 3 and 1: mean 2, centred to 1 and -1
    q = 1 / (1 + math.exp(-1))
    assert log_odds_mean([p, q]) == pytest.approx(2.0)
    assert centre([p, q]) == pytest.approx([q, 1 - q])
    assert centre([0.5], shift=2.0) == pytest.approx([1 / (1 + math.exp(2))])


def test_token_probs_with_digit_labels(qwen2_engine: Any) -> None:
    tok = qwen2_engine.tokenizer
    zero, one = tok.encode("0"), tok.encode("1")
    assert len(zero) == len(one) == 1
    ctx = FixedLogits(qwen2_engine)
    ctx.logits = {one[0]: 2.0, zero[0]: 1.0, tok.encode("yes")[0]: 5.0}  # other words: ignored
    expected = math.exp(2.0) / (math.exp(1.0) + math.exp(2.0))
    assert token_probs(ctx, ["r"], ("0", "1")) == pytest.approx([expected])
