"""Prompt datasets for GRPO: the usual formats, read by the data engine's source reader.

Each example becomes ``{"messages", "answer", "where"}``:

* a conversation whose last turn is the user's: that conversation; ``answer`` from the record's
  ``answer`` field when the format carried it (``meta``);
* a conversation ending with an assistant reply: the turns before it, the reply as ``answer``;
* a preference pair: its prompt, the chosen reply as ``answer``.

Other examples (plain text, KTO) are counted and reported as skipped, never silently dropped.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tunesmith.errors import DataError


@dataclass
class Prompts:
    """Training and held-out prompts, and what was skipped (by reason)."""

    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    skipped: Counter[str] = field(default_factory=Counter)


def _messages(msgs: list[Any]) -> list[dict[str, Any]]:
    return [{"role": m.role, "content": m.content} for m in msgs]


def to_prompt(example: Any, where: str) -> dict[str, Any] | str:
    """The prompt sample of one example, or the reason it cannot be one."""
    from tunesmith.data.types import Conversation, PreferencePair

    if isinstance(example, PreferencePair):
        msgs, answer = _messages(example.prompt.messages), example.chosen.content
        meta = example.prompt.meta
    elif isinstance(example, Conversation):
        msgs = _messages(example.messages)
        meta = example.meta
        answer = meta.get("answer")
        if msgs and msgs[-1]["role"] == "assistant":
            msgs, answer = msgs[:-1], msgs[-1]["content"]
        if example.images:
            return "images (stage grpo is text-only)"
    else:
        return f"{type(example).__name__} (not a prompt)"
    if not msgs or msgs[-1]["role"] != "user":
        return "no user turn to answer"
    answer = None if answer is None else str(answer)
    return {"messages": msgs, "answer": answer, "where": where, "task": _task(meta)}


def _task(meta: dict[str, Any]) -> str | None:
    """A record's ``task`` label (top level or under ``meta``): held-out rewards are also
    reported per task, so a gain on one kind of prompt is not averaged away by another."""
    task = meta.get("task")
    nested = meta.get("meta")
    if task is None and isinstance(nested, dict):
        task = nested.get("task")
    return None if task is None else str(task)


def load_prompts(cfg: Any) -> Prompts:
    """Every source of ``data`` (a ``DataConfig``) as prompts, split by ``data.val_size``."""
    from tunesmith.data.examples import load_source

    out: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for index, ds in enumerate(cfg.datasets):
        examples, report, wheres = load_source(ds, cfg, index)
        skipped.update(report.skipped)
        for ex, where in zip(examples, wheres):
            p = to_prompt(ex, where)
            if isinstance(p, str):
                skipped[p] += 1
                continue
            if cfg.system and p["messages"][0]["role"] != "system":
                p["messages"].insert(0, {"role": "system", "content": cfg.system})
            out.append(p)
    if not out:
        why = ", ".join(f"{n} {r}" for r, n in skipped.items()) or "no rows"
        raise DataError(f"data.datasets: no prompts for stage grpo ({why})")
    order = list(range(len(out)))
    random.Random(cfg.seed).shuffle(order)
    n_val = int(cfg.val_size) if cfg.val_size >= 1 else round(cfg.val_size * len(out))
    val = [out[i] for i in order[:n_val]]
    train = [out[i] for i in order[n_val:]]
    if not train:
        raise DataError(f"data.val_size {cfg.val_size}: leaves no training prompts")
    return Prompts(train, val, skipped)
