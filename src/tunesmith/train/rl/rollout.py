"""Completions for GRPO from the one inference engine, kept as token ids.

The engine's scheduler decodes the batch (KV cache, every row with its own seeded RNG) on the
model being trained: no second copy. A row's seed is a function of the run's seed, the step and
the row, so a resumed run draws exactly the completions an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.infer.decode import Request


class _Tracked(Request):
    """A request that remembers the token that stopped it (trained, so the model learns to end)."""

    stop_token: int | None = None

    def push(self, token: int, stop_ids: frozenset[int], max_positions: int) -> None:
        if token in stop_ids:
            self.stop_token = token
        super().push(token, stop_ids, max_positions)


@dataclass
class Rollout:
    """One completion: its trained token ids (answer, then the stop token if one ended it)."""

    text: str
    ids: list[int]
    answer_tokens: int


def row_seed(seed: int, step: int, row: int) -> int:
    """A seed for one completion, fixed by the run's seed, the step and the row."""
    return (seed * 1_000_003 + step) * 100_003 + row


def generate(engine: Any, prompts: Sequence[list[int]], params: Sequence[Any]) -> list[Rollout]:
    """Decode every ``(prompt ids, GenParams)`` together with the engine's default adapter (the
    one training); results in order."""
    from tunesmith.infer.batching import Scheduler
    from tunesmith.infer.decode import Delta

    adapter = engine.adapter_key(None)
    texts = [""] * len(prompts)
    requests = []
    sched = Scheduler(engine.runner, max_batch=engine.max_batch)
    for i, (ids, p) in enumerate(zip(prompts, params)):
        engine.check_prompt(ids)

        def emit(ev: Any, i: int = i) -> None:
            if isinstance(ev, Delta):
                texts[i] += ev.text

        req = _Tracked(prompt=list(ids), params=engine.with_stops(p.check()), emit=emit)
        req.adapter = adapter
        requests.append(req)
        sched.add(req)
    while sched.busy:
        sched.step()
    out = []
    for req, text in zip(requests, texts):
        ids = list(req.answer) + ([req.stop_token] if req.stop_token is not None else [])
        out.append(Rollout(text.strip(), ids, len(req.answer)))
    return out
