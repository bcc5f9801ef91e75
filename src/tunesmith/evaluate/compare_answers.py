"""Answers side by side for ``tunesmith compare``: the same prompts answered by every run, and
the predictions of every evaluation task that generated text, matched by example id."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.runs import RunRecord, read_jsonl

#: Most rows of one answers table (an evaluation set can be large; the page must stay readable).
MAX_ANSWER_ROWS = 100


@dataclass(frozen=True)
class AnswerRow:
    """One prompt and every run's answer to it.

    Attributes:
        id: The example's id (the prompt's number for plain prompts).
        prompt: The prompt.
        reference: The expected answer, when known.
        answers: One answer per run (``None``: that run has none).
        correct: Per run, the task's verdict when it gives one (``exact_match``), else ``None``.
    """

    id: str
    prompt: str
    reference: str | None
    answers: tuple[str | None, ...]
    correct: tuple[bool | None, ...]


@dataclass(frozen=True)
class AnswerTable:
    """Answers side by side for one set of prompts."""

    title: str
    note: str
    rows: tuple[AnswerRow, ...]
    total: int  # rows before the MAX_ANSWER_ROWS cut


Answerer = Callable[[RunRecord, list[str], int], list[str]]
"""``(run, prompts, max_new_tokens) -> answers``: how a run answers (default: the engine)."""


def read_prompt_file(path: str) -> list[dict[str, Any]]:
    """``{"prompt", "reference"}`` items of a prompts file (see :func:`collect`).

    Raises:
        ConfigError: missing file, no prompts, a row without a prompt column (``file:line``).
    """
    from tunesmith.errors import DataError
    from tunesmith.evaluate.datafile import pick, read_rows, resolve
    from tunesmith.evaluate.generation import PROMPT_COLUMNS, REFERENCE_COLUMNS

    file = resolve(path)
    if file.suffix.lower() == ".txt" or not file.suffix:
        if not file.is_file():
            raise ConfigError(f"--prompts {path}: file not found; give a text file, one a line")
        lines = file.read_text(encoding="utf-8").splitlines()
        items = [{"prompt": line.strip(), "reference": None} for line in lines if line.strip()]
        if not items:
            raise ConfigError(f"--prompts {path}: no prompts; write one prompt a line")
        return items
    try:
        items = []
        for n, row in read_rows(path):
            prompt = pick(str(file), n, row, PROMPT_COLUMNS, None, "prompt")
            ref = next((row[c] for c in REFERENCE_COLUMNS if row.get(c) is not None), None)
            items.append({"prompt": prompt, "reference": None if ref is None else str(ref)})
    except DataError as exc:
        raise ConfigError(f"--prompts: {exc}") from None
    return items


def engine_answer(run: RunRecord, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy answers of ``run`` through the inference engine, with its system prompt."""
    from tunesmith.evaluate.base import EvalContext
    from tunesmith.infer.engine import Engine

    engine = Engine.load(str(run.dir))
    try:
        return EvalContext(engine, run=run).generate(prompts, max_new_tokens=max_new_tokens)
    finally:
        engine.close()


def prompt_answers(
    runs: Sequence[RunRecord],
    labels: Sequence[str],
    items: Sequence[dict[str, Any]],
    max_new_tokens: int,
    answer: Answerer,
    say: Callable[[str], None],
) -> tuple[AnswerTable, list[str]]:
    """Every run's greedy answers to ``items``; unfinished runs (no weights) answer nothing."""
    prompts = [it["prompt"] for it in items]
    per_run: list[list[str] | None] = []
    notes = []
    for run, label in zip(runs, labels):
        if not run.finished:
            per_run.append(None)
            notes.append(f"{label}: training has not finished (no model/ or adapter/), no answers")
            continue
        say(f"compare: {label} answers {len(prompts)} prompt(s)")
        got = answer(run, prompts, max_new_tokens)
        per_run.append(list(got))
    rows = tuple(
        AnswerRow(
            id=str(i + 1),
            prompt=it["prompt"],
            reference=it.get("reference"),
            answers=tuple(a[i] if a is not None else None for a in per_run),
            correct=tuple(None for _ in per_run),
        )
        for i, it in enumerate(items)
    )
    note = f"greedy, at most {max_new_tokens} new tokens, each run's own chat template and system"
    return AnswerTable("Prompts", note, rows[:MAX_ANSWER_ROWS], len(rows)), notes


def prediction_tables(runs: Sequence[RunRecord]) -> list[AnswerTable]:
    """One table per evaluation task whose predictions are text, rows matched by ``id``."""
    names = sorted({n for r in runs for n in r.evals()})
    tables = []
    for name in names:
        by_run: list[dict[str, dict[str, Any]]] = []
        for r in runs:
            path = r.dir / "eval" / f"{name}.predictions.jsonl"
            rows = read_jsonl(path) if path.is_file() else []
            by_run.append({str(row.get("id")): row for row in rows if "id" in row})
        ids = list(dict.fromkeys(i for rows in by_run for i in rows))
        text = [
            i
            for i in ids
            if any(isinstance(rows.get(i, {}).get("prediction"), str) for rows in by_run)
        ]
        if not text:
            continue  # log-likelihood tasks (perplexity): no answers to show
        out = []
        for i in text:
            first = next(rows[i] for rows in by_run if i in rows)
            ref = first.get("reference")
            out.append(
                AnswerRow(
                    id=i,
                    prompt=_text(first.get("prompt")),
                    reference=None if ref is None else _text(ref),
                    answers=tuple(
                        _text(rows[i].get("prediction")) if i in rows else None for rows in by_run
                    ),
                    correct=tuple(_verdict(rows.get(i)) for rows in by_run),
                )
            )
        task = next((r.evals()[name].get("task") for r in runs if name in r.evals()), name)
        note = f"eval/{name}.predictions.jsonl ({task}), matched by id"
        tables.append(AnswerTable(f"eval: {name}", note, tuple(out[:MAX_ANSWER_ROWS]), len(out)))
    return tables


def _text(value: Any) -> str:
    """A prompt or answer as text (messages as ``role: content`` lines)."""
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return "\n".join(f"{m.get('role', '?')}: {_text(m.get('content'))}" for m in value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _verdict(row: dict[str, Any] | None) -> bool | None:
    if row is None:
        return None
    for key in ("exact_match", "correct"):
        if isinstance(row.get(key), bool):
            return bool(row[key])
    return None
