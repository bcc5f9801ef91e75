"""Identity check: does the model say who it is on unseen questions, and only there?

``identity_score`` is the share of held-out identity questions whose answer contains the
configured name (the per-language name for that question's language); ``false_claim_rate`` is the
share of general prompts whose answer contains any of the name's forms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunesmith.config.schema import EvalConfig
from tunesmith.errors import ConfigError, DataError
from tunesmith.evaluate.base import EvalContext, Task, TaskResult
from tunesmith.evaluate.registry import register

if TYPE_CHECKING:
    from tunesmith.runs import RunRecord


@dataclass
class IdentityResult:
    """Scores plus every question and answer, for inspection."""

    identity_score: float
    false_claim_rate: float
    n: int
    n_general: int
    name: str | dict[str, str]
    identity_answers: list[dict[str, Any]] = field(default_factory=list)
    general_answers: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {
            "identity_score": round(self.identity_score, 4),
            "false_claim_rate": round(self.false_claim_rate, 4),
            "n": self.n,
            "n_general": self.n_general,
            "name": self.name,
        }


def read_questions(path: str) -> list[dict[str, str]]:
    """``{"question": ..., "lang": ...}`` rows of an evaluation file (``builtin:NAME`` allowed)."""
    from tunesmith.evaluate.datafile import read_rows, resolve

    out = []
    for n, row in read_rows(path):
        if not isinstance(row.get("question"), str):
            raise DataError(f'{resolve(path)}:{n}: expected {{"question": "...", "lang": "en"}}')
        out.append({"question": row["question"], "lang": row.get("lang") or "en"})
    return out


def name_for(name: str | dict[str, str], lang: str) -> str:
    """The name expected in an answer in ``lang``."""
    if isinstance(name, str):
        return name
    return name.get(lang) or name.get("en") or next(iter(name.values()))


def all_names(name: str | dict[str, str]) -> list[str]:
    """Every form of the name (any of them in a general answer is a false claim)."""
    return [name] if isinstance(name, str) else sorted(set(name.values()))


def contains(answer: str, name: str) -> bool:
    """Case-insensitive containment."""
    return name.casefold() in answer.casefold()


def run_identity_eval(
    engine: Any,
    name: str | dict[str, str],
    heldout: list[dict[str, str]],
    general: list[dict[str, str]],
    *,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    system: str | None = None,
) -> IdentityResult:
    """Ask every question greedily and score the answers."""
    from tunesmith.infer.engine import GenParams

    params = GenParams(max_new_tokens=max_new_tokens, temperature=0.0)

    def ask(rows: list[dict[str, str]]) -> list[str]:
        answers: list[str] = []
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            convs = [
                ([{"role": "system", "content": system}] if system else [])
                + [{"role": "user", "content": r["question"]}]
                for r in chunk
            ]
            answers += engine.generate(convs, params)
        return answers

    id_answers = ask(heldout)
    gen_answers = ask(general)
    id_rows = [
        {**q, "answer": a, "ok": contains(a, name_for(name, q["lang"]))}
        for q, a in zip(heldout, id_answers)
    ]
    names = all_names(name)
    gen_rows = [
        {**q, "answer": a, "claims": any(contains(a, n) for n in names)}
        for q, a in zip(general, gen_answers)
    ]
    return IdentityResult(
        identity_score=sum(r["ok"] for r in id_rows) / len(id_rows),
        false_claim_rate=sum(r["claims"] for r in gen_rows) / max(len(gen_rows), 1),
        n=len(id_rows),
        n_general=len(gen_rows),
        name=name,
        identity_answers=id_rows,
        general_answers=gen_rows,
    )


def identity_of(run: RunRecord | None) -> tuple[str | dict[str, str], str | None]:
    """The configured name (and system prompt) of a run."""
    ident = run.config.data.identity if run is not None else None
    if ident is None:
        raise ConfigError("this run has no data.identity; pass --name NAME to evaluate")
    return ident.name, run.system


class _ContextEngine:
    """``run_identity_eval``'s engine calls, answered through an ``EvalContext``."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def generate(self, convs: list[list[dict[str, str]]], params: Any) -> list[str]:
        # The conversations carry their own system prompt (or none, as before this task API).
        return self.ctx.generate(
            convs, max_new_tokens=params.max_new_tokens, temperature=0.0, add_system=False
        )


@register
class Identity(Task):
    """The identity check as an evaluation task (same scores as ``eval identity``)."""

    kind = "identity"

    def run(self, ctx: EvalContext) -> TaskResult:
        """Ask the held-out identity questions and the general prompts, greedily."""
        import time

        t0 = time.perf_counter()
        spec = self.spec
        run = ctx.engine.run
        if spec.identity_name is None:
            name, system = identity_of(run)
        else:
            name, system = spec.identity_name, None
        ev = run.config.eval if run is not None else EvalConfig()
        heldout = read_questions(spec.heldout or ev.identity_heldout)
        general = read_questions(spec.general or ev.general_prompts)
        result = run_identity_eval(
            _ContextEngine(ctx),
            name,
            heldout,
            general,
            max_new_tokens=spec.max_new_tokens,
            batch_size=ctx.batch_size,
            system=system,
        )
        rows = [
            {
                "id": i,
                "prompt": r["question"],
                "reference": name_for(name, r["lang"]),
                "prediction": r["answer"],
                "kind": "identity",
                "lang": r["lang"],
                "ok": r["ok"],
            }
            for i, r in enumerate(result.identity_answers)
        ] + [
            {
                "id": len(result.identity_answers) + i,
                "prompt": r["question"],
                "reference": None,
                "prediction": r["answer"],
                "kind": "general",
                "lang": r["lang"],
                "claims": r["claims"],
            }
            for i, r in enumerate(result.general_answers)
        ]
        scores = {
            "identity_score": result.identity_score,
            "false_claim_rate": result.false_claim_rate,
        }
        details = {"name": name, "n_general": result.n_general}
        return TaskResult(
            self.kind, self.name, scores, rows, details, result.n, time.perf_counter() - t0
        )
