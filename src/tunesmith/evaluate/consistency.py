"""Consistency task: the same question rephrased should get the same answer, and a statement
and its negation should not both be affirmed.

``agreement`` is the mean over questions of the share of answer pairs (original and variants)
equal after ``metrics.normalise``; ``all_agree`` the share of questions whose answers are all
equal; ``reference_agreement`` the share of answers (every variant counted) agreeing with the
reference. ``contradiction_rate`` is the share of statement/negation pairs answered yes to both
or no to both; ``unclear_rate`` the share of those yes/no answers that were neither.
"""

from __future__ import annotations

import re
import time
from itertools import combinations
from typing import Any, Literal

from tunesmith.errors import DataError
from tunesmith.evaluate.base import EvalContext, Task, TaskResult
from tunesmith.evaluate.datafile import pick, read_rows, resolve
from tunesmith.evaluate.metrics import is_cjk, normalise
from tunesmith.evaluate.perturb import variants
from tunesmith.evaluate.registry import register

YesNo = Literal["yes", "no", "unclear"]

YES_EN = ("yes", "yeah", "yep", "true", "correct", "right", "indeed", "affirmative")
NO_EN = ("no", "nope", "false", "incorrect", "wrong", "not")
# Chinese answers are judged by how they start ("我是..." holds a 是 that is no answer).
# Negative openers first: "不是" starts with 不 and holds 是.
NO_ZH = ("不是", "不对", "不正确", "不", "否", "错", "没有", "并不", "并非")
YES_ZH = ("是", "对", "正确", "没错", "确实", "当然", "真的", "有")

QUESTION_EN = "Is the following statement true? Answer yes or no.\nStatement: {statement}"
QUESTION_ZH = "下面的说法正确吗？请回答“是”或“否”。\n说法：{statement}"


def parse_yes_no(text: str) -> YesNo:
    """``yes``, ``no`` or ``unclear`` for an answer in English or Chinese.

    English: the first word decides when it is a yes or no word; otherwise the answer is yes
    (no) when it holds yes words and no no words (or the reverse). Chinese: the opening words.
    """
    flat = normalise(text)
    if not flat:
        return "unclear"
    if is_cjk([flat]):
        head = flat.replace(" ", "")
        if head.startswith(NO_ZH):
            return "no"
        if head.startswith(YES_ZH):
            return "yes"
        # "Yes，..." written in Latin letters inside a Chinese reply falls through to English.
    words = re.findall(r"[a-z]+", flat)
    if not words:
        return "unclear"
    if words[0] in YES_EN[:5]:
        return "yes"
    if words[0] in NO_EN[:5]:
        return "no"
    # "not true" / "not correct" deny; otherwise the words present decide, if only one side is.
    text = " ".join(words)
    text = re.sub(r"\bnot (true|correct|right)\b", "false", text)
    words = text.split()
    yes = any(w in YES_EN for w in words)
    no = any(w in NO_EN for w in words)
    if yes != no:
        return "yes" if yes else "no"
    return "unclear"


def pairwise_agreement(answers: list[str]) -> float:
    """Share of answer pairs equal after normalisation (1.0 for a single answer)."""
    flat = [normalise(a) for a in answers]
    pairs = list(combinations(flat, 2))
    if not pairs:
        return 1.0
    return sum(a == b for a, b in pairs) / len(pairs)


def agrees_with(answer: str, reference: str, how: str) -> bool:
    """``answer`` equal to (``exact``) or containing (``contains``) ``reference``, normalised."""
    a, r = normalise(answer), normalise(reference)
    if how == "exact":
        return a == r
    if not r:
        return False
    # Chinese has no spaces: a substring; otherwise whole words ("paris" not in "parisian").
    return r in a if is_cjk([r]) else f" {r} " in f" {a} "


def read_questions(path: str) -> list[dict[str, Any]]:
    """``{"id", "prompt", "reference", "variants"}``: variants given by the user or ``None``."""
    file = str(resolve(path))
    out = []
    for n, row in read_rows(path):
        given = row.get("variants")
        if given is not None:
            if (
                not isinstance(given, list)
                or not given
                or not all(isinstance(v, str) and v.strip() for v in given)
            ):
                raise DataError(f"{file}:{n}: variants must be a non-empty list of strings")
            prompt = row.get("question") or row.get("prompt") or given[0]
            rest = [v for v in given if v != prompt]
        else:
            prompt = pick(file, n, row, ("question", "prompt"), None, "question")
            rest = None
        reference = row.get("reference", row.get("answer"))
        out.append(
            {
                "id": row.get("id", n),
                "prompt": str(prompt),
                "reference": None if reference is None else str(reference),
                "variants": rest,
            }
        )
    return out


def read_pairs(path: str) -> list[dict[str, Any]]:
    """``{"id", "statement", "negation"}`` rows."""
    file = str(resolve(path))
    out = []
    for n, row in read_rows(path):
        statement = pick(file, n, row, ("statement",), None, "statement")
        negation = pick(file, n, row, ("negation", "negated"), None, "negation")
        out.append({"id": row.get("id", n), "statement": statement, "negation": negation})
    return out


def yes_no_question(statement: str) -> str:
    """The yes/no question asked about ``statement`` (in its language)."""
    template = QUESTION_ZH if is_cjk([statement]) else QUESTION_EN
    return template.format(statement=statement)


@register
class Consistency(Task):
    """Answers to perturbed questions compared; statement/negation pairs checked."""

    kind = "consistency"

    def run(self, ctx: EvalContext) -> TaskResult:
        """Generate greedily for every variant and pair, then score."""
        t0 = time.perf_counter()
        spec = self.spec
        seed = ctx.seed if spec.seed is None else spec.seed
        metrics: dict[str, float] = {}
        details: dict[str, Any] = {"seed": seed, "normalisation": "metrics.normalise"}
        rows: list[dict[str, Any]] = []
        if spec.data:
            q_rows, q_metrics, q_details = self._questions(ctx, seed)
            rows += q_rows
            metrics.update(q_metrics)
            details.update(q_details)
        if spec.contradictions:
            c_rows, c_metrics, c_details = self._contradictions(ctx)
            rows += c_rows
            metrics.update(c_metrics)
            details.update(c_details)
        return TaskResult(
            self.kind, self.name, metrics, rows, details, len(rows), time.perf_counter() - t0
        )

    def _questions(self, ctx: EvalContext, seed: int) -> tuple[list, dict, dict]:
        spec = self.spec
        items = read_questions(spec.data)
        items = items[: spec.max_samples] if spec.max_samples else items
        texts: list[str] = []
        for it in items:
            if it["variants"] is None:
                made = variants(
                    it["prompt"], spec.variants, spec.perturbations, f"{seed}:{it['id']}"
                )
                it["variants"] = [v for _, v in made]
                it["perturbations"] = [k for k, _ in made]
            else:
                it["perturbations"] = ["given"] * len(it["variants"])
            texts += [it["prompt"], *it["variants"]]
        answers = ctx.generate(texts, max_new_tokens=spec.max_new_tokens, temperature=0.0)
        rows, pairwise, all_same, ref_hits, ref_total = [], [], 0, 0, 0
        # Per perturbation (the first one of a stack): variants answered as the original was.
        same_as_original: dict[str, list[bool]] = {}
        i = 0
        for it in items:
            group = answers[i : i + 1 + len(it["variants"])]
            i += len(group)
            score = pairwise_agreement(group)
            for kind, answer in zip(it["perturbations"], group[1:]):
                same = normalise(answer) == normalise(group[0])
                same_as_original.setdefault(kind.split("+")[0], []).append(same)
            pairwise.append(score)
            all_same += score == 1.0
            row: dict[str, Any] = {
                "id": it["id"],
                "kind": "variants",
                "prompt": it["prompt"],
                "reference": it["reference"],
                "prediction": group[0],
                "variants": [
                    {"text": t, "perturbation": k, "prediction": a}
                    for t, k, a in zip(it["variants"], it["perturbations"], group[1:])
                ],
                "agreement": score,
            }
            if it["reference"] is not None:
                hits = [agrees_with(a, it["reference"], spec.reference_match) for a in group]
                ref_hits += sum(hits)
                ref_total += len(hits)
                row["reference_agreement"] = sum(hits) / len(hits)
            rows.append(row)
        n = len(items)
        metrics = {"agreement": sum(pairwise) / n, "all_agree": all_same / n}
        if ref_total:
            metrics["reference_agreement"] = ref_hits / ref_total
        details = {
            "questions": n,
            "answers": len(answers),
            "with_reference": sum(it["reference"] is not None for it in items),
            "reference_match": spec.reference_match,
            "same_as_original": {
                k: {"share": sum(v) / len(v), "variants": len(v)}
                for k, v in sorted(same_as_original.items())
            },
        }
        return rows, metrics, details

    def _contradictions(self, ctx: EvalContext) -> tuple[list, dict, dict]:
        spec = self.spec
        pairs = read_pairs(spec.contradictions)
        pairs = pairs[: spec.max_samples] if spec.max_samples else pairs
        prompts = [yes_no_question(s) for p in pairs for s in (p["statement"], p["negation"])]
        answers = ctx.generate(prompts, max_new_tokens=spec.max_new_tokens, temperature=0.0)
        rows, flagged, unclear, decided = [], 0, 0, 0
        for k, p in enumerate(pairs):
            a, b = answers[2 * k], answers[2 * k + 1]
            pa, pb = parse_yes_no(a), parse_yes_no(b)
            bad = pa == pb and pa != "unclear"
            flagged += bad
            unclear += (pa == "unclear") + (pb == "unclear")
            decided += pa != "unclear" and pb != "unclear"
            rows.append(
                {
                    "id": p["id"],
                    "kind": "contradiction",
                    "prompt": prompts[2 * k],
                    "reference": None,
                    "prediction": a,
                    "negation_prompt": prompts[2 * k + 1],
                    "negation_prediction": b,
                    "parsed": [pa, pb],
                    "contradiction": bad,
                }
            )
        n = len(pairs)
        metrics = {"contradiction_rate": flagged / n, "unclear_rate": unclear / (2 * n)}
        # The rate counts every pair; decided_pairs says how many were answered yes/no twice
        # (a model that never says yes or no contradicts nothing, and unclear_rate shows it).
        details = {
            "pairs": n,
            "contradictions": flagged,
            "decided_pairs": decided,
            "unclear_answers": unclear,
        }
        return rows, metrics, details
