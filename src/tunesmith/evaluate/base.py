"""The evaluation task API: one context over the inference engine, tasks that score with it.

A :class:`Task` asks its :class:`EvalContext` for generations (``ctx.generate``) or
log-likelihoods (``ctx.loglik``), both batched through the one ``infer.engine.Engine``, and
returns a :class:`TaskResult`, which saves as ``<run>/eval/<name>.json`` plus
``<name>.predictions.jsonl`` (one row per example).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

Context = str | list[dict[str, Any]]
"""A prompt: plain text (used as is) or messages (rendered with the chat template)."""


@dataclass
class TaskResult:
    """What one task measured, with every example's row for inspection."""

    task: str
    name: str
    metrics: dict[str, float]
    rows: list[dict[str, Any]]
    details: dict[str, Any]
    n: int
    seconds: float
    model: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``eval/<name>.json`` object (without the rows)."""
        return {
            "task": self.task,
            "name": self.name,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "details": self.details,
            "n": self.n,
            "seconds": round(self.seconds, 3),
            "model": self.model,
            "config": self.config,
        }

    def save(self, eval_dir: str | Path) -> Path:
        """Write ``<name>.json`` and ``<name>.predictions.jsonl`` in ``eval_dir``; the JSON path."""
        out = Path(eval_dir)
        out.mkdir(parents=True, exist_ok=True)
        rows = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows)
        (out / f"{self.name}.predictions.jsonl").write_text(rows, encoding="utf-8")
        path = out / f"{self.name}.json"
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n"
        path.write_text(text, encoding="utf-8")
        return path


class Task(ABC):
    """One evaluation, configured by its spec (a pydantic class of ``config.schema``)."""

    kind: ClassVar[str]
    """The registry name (the spec's ``type``)."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.name: str = getattr(spec, "name", None) or self.kind

    @abstractmethod
    def run(self, ctx: EvalContext) -> TaskResult:
        """Evaluate the context's model."""


def _say_nothing(_: str) -> None:
    return None


@dataclass
class EvalContext:
    """The model under evaluation and how to ask it things.

    Args:
        engine: the loaded ``infer.engine.Engine``.
        run: the run's ``RunRecord`` when evaluating a run directory, else ``None``.
        seed: seed of sampled generations (greedy ones ignore it).
        batch_size: prompts per engine call / sequences per log-likelihood forward pass.
        say: progress lines for the user.
        model: what is evaluated, as written into results (a run directory or model name).
    """

    engine: Any
    run: Any = None
    seed: int = 0
    batch_size: int = 16
    say: Callable[[str], None] = _say_nothing
    model: str = ""

    @property
    def system(self) -> str | None:
        """The run's ``data.system``: put before conversations without one, as in training."""
        return self.engine.system_prompt

    def conversation(self, item: Context, *, add_system: bool = True) -> list[dict[str, Any]]:
        """``item`` as messages (text: one user turn), with the run's system prompt first."""
        messages = [{"role": "user", "content": item}] if isinstance(item, str) else list(item)
        system = self.system if add_system else None
        if system and not any(m.get("role") == "system" for m in messages):
            messages = [{"role": "system", "content": system}, *messages]
        return messages

    def generate(
        self,
        conversations: Sequence[Context],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
        add_system: bool = True,
    ) -> list[str]:
        """Answers to ``conversations`` (stripped), in order, ``batch_size`` at a time.

        Greedy when ``temperature`` is 0; otherwise sampled with ``seed`` (default: the context's)
        so the same call gives the same answers.
        """
        from tunesmith.infer.sampling import GenParams

        params = GenParams(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=None if temperature == 0 else (self.seed if seed is None else seed),
        )
        convs = [self.conversation(c, add_system=add_system) for c in conversations]
        out: list[str] = []
        for i in range(0, len(convs), self.batch_size):
            out += self.engine.generate(convs[i : i + self.batch_size], params)
        return out

    def encode_pair(self, context: Context, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of ``context`` and of ``continuation`` right after it.

        Messages render with the chat template and its generation prompt (the continuation is
        then the start of the assistant turn, tokenised as training tokenises it: inside the
        whole text); plain text is used as is, with the tokenizer's special tokens.
        """
        engine = self.engine
        if isinstance(context, str):
            prompt, special = context, True
        else:
            prompt, special = engine.render(self.conversation(context)), False
        ctx_ids = engine.encode(prompt, special=special)
        whole = engine.encode(prompt + continuation, special=special)
        if whole[: len(ctx_ids)] == ctx_ids and len(whole) > len(ctx_ids):
            return ctx_ids, whole[len(ctx_ids) :]
        # A token merged across the boundary: tokenise the continuation on its own.
        return ctx_ids, engine.encode(continuation, special=False)

    def loglik(
        self, contexts: Sequence[Context], continuations: Sequence[str]
    ) -> list[tuple[float, int]]:
        """``(summed log-probability, token count)`` of each continuation after its context.

        Teacher-forced: each context + continuation is one right-padded row of a forward pass
        through the engine's model (with its default adapter).
        """
        if len(contexts) != len(continuations):
            raise ValueError(f"{len(contexts)} contexts for {len(continuations)} continuations")
        pairs = [self.encode_pair(c, s) for c, s in zip(contexts, continuations)]
        out: list[tuple[float, int]] = []
        for i in range(0, len(pairs), self.batch_size):
            out += self._loglik_batch(pairs[i : i + self.batch_size])
        return out

    def _loglik_batch(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, int]]:
        import torch

        engine = self.engine
        limit = engine.max_positions
        rows = []
        for ctx_ids, cont_ids in pairs:
            ids = (ctx_ids + cont_ids)[-limit:]  # keep the continuation when too long
            rows.append((ids, min(len(cont_ids), len(ids) - 1)))
        length = max(len(ids) for ids, _ in rows)
        pad = engine.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for b, (ids, _) in enumerate(rows):
            input_ids[b, : len(ids)] = torch.tensor(ids)
            mask[b, : len(ids)] = 1
        logits = self.forward(input_ids, mask)
        device = logits.device
        logp = torch.log_softmax(logits.float(), dim=-1)
        out = []
        for b, (ids, n) in enumerate(rows):
            start = len(ids) - n
            target = input_ids[b, start : len(ids)].to(device)
            picked = logp[b, start - 1 : len(ids) - 1].gather(-1, target[:, None])
            out.append((float(picked.sum()), n))
        return out

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        """Logits of one right-padded batch (tensors on any device) with the default adapter."""
        import torch

        engine = self.engine
        device = next(engine.model.parameters()).device
        runner = engine.runner
        kwargs: dict[str, Any] = {}
        # The runner's adapter routing (the same one generation goes through).
        with runner.lock, torch.no_grad(), runner._route([engine.adapter_key(None)], kwargs):
            out = engine.model(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                use_cache=False,
                **kwargs,
            )
        return out.logits
