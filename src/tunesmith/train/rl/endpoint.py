"""A GRPO reward from an OpenAI-compatible model acting as a grader (``kind: endpoint``).

Each completion is sent with its question (and the reference answer when the prompt has one) to
``<url>/chat/completions`` through ``tunesmith.remote.ChatClient`` (retries, concurrency, the
key from ``api_key_env``), asking for one integer from 0 to 10; the reward is that number / 10.
A reply without a number scores 0 and is counted (``unparsed``), reported in the step's metrics
as ``rewards/<name>/unparsed``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

GRADE = re.compile(r"-?\d+(?:\.\d+)?")

INSTRUCTION = (
    "You grade answers. Reply with one integer from 0 (wrong or useless) to 10 (fully correct "
    "and well put), and nothing else."
)


def grading_messages(question: str, answer: str, reference: str | None) -> list[dict[str, str]]:
    """The grader's conversation for one completion."""
    ref = f"\nReference answer: {reference}" if reference is not None else ""
    user = f"Question: {question}{ref}\nAnswer to grade: {answer}\nGrade (0-10):"
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": user}]


def parse_grade(text: str) -> float | None:
    """The first number in ``text`` clamped to 0-10 and divided by 10; ``None`` without one."""
    m = GRADE.search(text)
    if m is None:
        return None
    return min(10.0, max(0.0, float(m.group()))) / 10


class EndpointReward:
    """The reward function (callable as every reward is); ``unparsed`` counts replies without a
    number since the last ``take_unparsed``."""

    def __init__(self, client: Any, concurrency: int = 4) -> None:
        self.client = client
        self.concurrency = concurrency
        self.unparsed = 0

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[str], samples: Any, lengths: Any
    ) -> list[float]:
        convs = [
            grading_messages(p[-1]["content"], c, s.get("answer"))
            for p, c, s in zip(prompts, completions, samples)
        ]
        replies = self.client.complete_many(
            convs, concurrency=self.concurrency, temperature=0, max_tokens=8
        )
        out = []
        for r in replies:
            grade = parse_grade(r.text)
            self.unparsed += grade is None
            out.append(0.0 if grade is None else grade)
        return out

    def take_unparsed(self) -> int:
        n, self.unparsed = self.unparsed, 0
        return n


def endpoint_reward(spec: Any, where: str) -> EndpointReward:
    """An ``EndpointReward`` for a ``kind: endpoint`` spec (``url``, ``model``, ``api_key_env``)."""
    from tunesmith.remote import ChatClient, api_key_from_env

    client = ChatClient(
        spec.url,
        spec.model,
        api_key=api_key_from_env(spec.api_key_env, f"{where}.api_key_env"),
        label=f"{where} (endpoint reward)",
        url_field=f"{where}.url",
        key_hint=f"{where}.api_key_env",
    )
    return EndpointReward(client)
