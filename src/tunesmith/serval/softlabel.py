"""Soft labels from the LLM: p(label 1) for each record, through the inference engine.

By default (``read: tokens``) the probability is read from the log-likelihoods of the two label
words as the start of the answer (the engine's teacher-forced path, as multiple-choice scoring
uses): ``p1 = exp(l1) / (exp(l0) + exp(l1))``, which never fails to parse. ``read: parse``
asks for a number between 0 and 1 and parses the answer; unparsable answers fall back to the
token reading and are counted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_NUMBER = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?|\.\d+)\s*(%?)")


def two_way_probability(loglik_0: float, loglik_1: float) -> float:
    """p(label 1) when the answer is one of the two label words (a softmax of their scores)."""
    top = max(loglik_0, loglik_1)
    e0, e1 = math.exp(loglik_0 - top), math.exp(loglik_1 - top)
    return e1 / (e0 + e1)


def parse_probability(text: str) -> float | None:
    """The first number in ``text`` as a probability (``70%`` -> 0.7), or ``None``.

    Numbers above 1 without ``%`` are read as percentages when at most 100; others are no
    probability.
    """
    match = _NUMBER.search(text)
    if match is None:
        return None
    value = float(match.group(1))
    if match.group(2) == "%" or 1 < value <= 100:
        value /= 100
    return value if 0 <= value <= 1 else None


@dataclass(frozen=True)
class Annotation:
    """The LLM's soft labels for a list of records.

    Attributes:
        probs: p(label 1) per record.
        parse_failures: records whose generated answer had no probability (``read: parse``),
            given the token reading instead.
    """

    probs: tuple[float, ...]
    parse_failures: int = 0


def token_probs(ctx: Any, prompts: Sequence[str], label_words: tuple[str, str]) -> list[float]:
    """p(label 1) of each user prompt from the label words' log-likelihoods.

    Args:
        ctx: an ``evaluate.base.EvalContext`` (its ``loglik`` renders the chat template).
        prompts: user turns.
        label_words: the answers for label 0 and label 1.
    """
    contexts = [[{"role": "user", "content": p}] for p in prompts for _ in range(2)]
    continuations = [w for _ in prompts for w in label_words]
    scores = ctx.loglik(contexts, continuations)
    return [
        two_way_probability(scores[2 * i][0], scores[2 * i + 1][0]) for i in range(len(prompts))
    ]


def annotate(
    ctx: Any,
    texts: Sequence[str],
    *,
    prompt: str,
    label_words: tuple[str, str],
    read: str = "tokens",
    parse_prompt: str = "",
) -> Annotation:
    """The soft labels of ``texts`` (see the module docstring)."""
    fill = [prompt.replace("{text}", t) for t in texts]
    probs = token_probs(ctx, fill, label_words)
    if read == "tokens":
        return Annotation(tuple(probs))
    asks = [parse_prompt.replace("{text}", t) for t in texts]
    answers = ctx.generate(asks, max_new_tokens=8)
    parsed = [parse_probability(a) for a in answers]
    failures = sum(p is None for p in parsed)
    return Annotation(tuple(tok if p is None else p for p, tok in zip(parsed, probs)), failures)


def log_odds_mean(probs: Sequence[float]) -> float:
    """The mean log-odds of ``probs`` (what :func:`centre` removes)."""
    return sum(_logit(p) for p in probs) / max(len(probs), 1)


def _logit(p: float) -> float:
    eps = 1e-6
    return math.log(max(p, eps) / max(1 - p, eps))


def centre(probs: Sequence[float], shift: float | None = None) -> list[float]:
    """Probabilities with ``shift`` (default: their own mean log-odds) taken off their log-odds
    (contextual calibration).

    A weak LLM often prefers one label word for every record; what it knows is in how the
    records differ, which this keeps while removing the shared bias. Pass the train records'
    shift to calibrate other records the same way.
    """
    shift = log_odds_mean(probs) if shift is None else shift
    return [1 / (1 + math.exp(-(_logit(p) - shift))) for p in probs]
