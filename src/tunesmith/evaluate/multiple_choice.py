"""Multiple choice by log-likelihood (MMLU / C-Eval / CMMLU style): no generation.

Each question becomes one user turn (few-shot examples first, then the question and its options
A-D, then ``Answer:``); the model's chat template renders it, and the option whose letter (or,
with ``score: text``, whose text, mean log-probability per token) is most likely is its answer.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from typing import Any

from tunesmith.errors import DataError
from tunesmith.evaluate.base import EvalContext, Task, TaskResult
from tunesmith.evaluate.datafile import pick, read_rows, resolve
from tunesmith.evaluate.registry import register

LETTERS = ("A", "B", "C", "D")


def read_questions(path: str) -> list[dict[str, Any]]:
    """``{"id", "question", "options", "answer", "subject"}`` rows of an MC file.

    Raises:
        DataError: ``file:line`` with the missing column, or an answer that is no letter A-D.
    """
    file = str(resolve(path))
    out = []
    for n, row in read_rows(path):
        question = pick(file, n, row, ("question",), None, "question")
        options = [pick(file, n, row, (k,), None, f"option {k}") for k in LETTERS]
        answer = pick(file, n, row, ("answer",), None, "answer").strip().upper()
        if answer not in LETTERS:
            raise DataError(f"{file}:{n}: answer {answer!r} is not one of A, B, C, D")
        subject = str(row.get("subject") or "all")
        out.append(
            {
                "id": row.get("id", n),
                "question": question,
                "options": options,
                "answer": answer,
                "subject": subject,
            }
        )
    return out


def metric_key(subject: str) -> str:
    """``subject`` as a metric name part: lower case, runs of non-word characters as ``_``."""
    return re.sub(r"\W+", "_", subject.strip().casefold()).strip("_") or "none"


def format_question(q: dict[str, Any], *, with_answer: bool) -> str:
    """The question, its lettered options and ``Answer:`` (with the letter for shots)."""
    lines = [q["question"], *(f"{k}. {o}" for k, o in zip(LETTERS, q["options"]))]
    lines.append(f"Answer: {q['answer']}" if with_answer else "Answer:")
    return "\n".join(lines)


def build_prompt(q: dict[str, Any], shots: list[dict[str, Any]]) -> str:
    """The user turn: the shots with their answers, then the question."""
    return "\n\n".join(
        [
            *(format_question(s, with_answer=True) for s in shots),
            format_question(q, with_answer=False),
        ]
    )


def pick_shots(dev: list[dict[str, Any]], subject: str, k: int) -> list[dict[str, Any]]:
    """The first ``k`` dev examples of ``subject`` (others fill up when it has too few)."""
    same = [d for d in dev if d["subject"] == subject]
    rest = [d for d in dev if d["subject"] != subject]
    return (same + rest)[:k]


@register
class MultipleChoice(Task):
    """Accuracy, overall and per subject, from option log-likelihoods."""

    kind = "multiple_choice"

    def run(self, ctx: EvalContext) -> TaskResult:
        """Score every option of every question in one batched log-likelihood pass."""
        t0 = time.perf_counter()
        spec = self.spec
        questions = read_questions(spec.data)
        questions = questions[: spec.max_samples] if spec.max_samples else questions
        dev = read_questions(spec.dev) if spec.dev else []
        if spec.shots and not dev:
            raise DataError(f"eval.tasks {self.name}: shots={spec.shots} needs a dev file (dev:)")
        contexts, continuations = [], []
        prompts = []
        for q in questions:
            prompt = build_prompt(q, pick_shots(dev, q["subject"], spec.shots))
            prompts.append(prompt)
            for k, option in zip(LETTERS, q["options"]):
                contexts.append(prompt)
                continuations.append(k if spec.score == "letter" else option)
        scores = ctx.loglik([[{"role": "user", "content": p}] for p in contexts], continuations)
        rows, by_subject = [], defaultdict(list)
        for i, q in enumerate(questions):
            options = scores[i * 4 : i * 4 + 4]
            # Option texts differ in length: compare their mean log-probability per token.
            values = [lp if spec.score == "letter" else lp / max(n, 1) for lp, n in options]
            predicted = LETTERS[max(range(4), key=values.__getitem__)]
            correct = predicted == q["answer"]
            by_subject[q["subject"]].append(correct)
            rows.append(
                {
                    "id": q["id"],
                    "prompt": prompts[i],
                    "reference": q["answer"],
                    "prediction": predicted,
                    "correct": correct,
                    "subject": q["subject"],
                    "logliks": [round(v, 4) for v in values],
                }
            )
        n = len(rows)
        result = {"accuracy": sum(r["correct"] for r in rows) / max(n, 1)}
        if len(by_subject) > 1 or "all" not in by_subject:
            for subject, hits in sorted(by_subject.items()):
                result[f"accuracy/{metric_key(subject)}"] = sum(hits) / len(hits)
        details = {
            "score": spec.score,
            "shots": spec.shots,
            "subjects": {s: len(h) for s, h in sorted(by_subject.items())},
        }
        return TaskResult(self.kind, self.name, result, rows, details, n, time.perf_counter() - t0)
