"""A context whose model is a lookup table: tasks are tested on answers we choose."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tunesmith.evaluate.base import Context, EvalContext


class FakeEngine:
    """Just what tasks read off an engine besides generation."""

    system_prompt = None

    def __init__(self, run: Any = None) -> None:
        self.run = run  # a RunRecord (or what a test needs of one), None for a plain model


class FakeContext(EvalContext):
    """``generate`` answers with ``answer(prompt)``; ``loglik`` scores with ``score(ctx, cont)``."""

    def __init__(
        self,
        answer: Callable[[str], str] | None = None,
        score: Callable[[str, str], float] | None = None,
        run: Any = None,
    ) -> None:
        super().__init__(FakeEngine(run), batch_size=3, model="fake")
        self.answer, self.score = answer, score
        self.calls: list[dict[str, Any]] = []

    def generate(self, conversations: Sequence[Context], **kw: Any) -> list[str]:
        self.calls.append({"conversations": list(conversations), **kw})
        assert self.answer is not None
        return [self.answer(c if isinstance(c, str) else c[-1]["content"]) for c in conversations]

    def loglik(self, contexts: Sequence[Context], continuations: Sequence[str]) -> list:
        assert self.score is not None
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in contexts]
        return [(self.score(t, s), 1) for t, s in zip(texts, continuations)]


@pytest.fixture
def fake_ctx() -> type[FakeContext]:
    """The :class:`FakeContext` class (tests build one per case)."""
    return FakeContext
