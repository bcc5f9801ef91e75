"""Generation task: answer prompts, score against references (exact match, BLEU, ROUGE)."""

from __future__ import annotations

import time
from typing import Any

from tunesmith.evaluate import metrics
from tunesmith.evaluate.base import EvalContext, Task, TaskResult
from tunesmith.evaluate.datafile import pick, read_rows, resolve
from tunesmith.evaluate.registry import register

PROMPT_COLUMNS = ("prompt", "question", "instruction", "query", "input")
REFERENCE_COLUMNS = ("reference", "answer", "output", "response", "target")


def read_prompts(
    path: str, prompt_column: str | None = None, reference_column: str | None = None
) -> list[dict[str, Any]]:
    """``{"id", "prompt", "reference"}`` rows; alpaca's ``instruction`` + ``input`` are joined."""
    file = str(resolve(path))
    out = []
    for n, row in read_rows(path):
        prompt = pick(file, n, row, PROMPT_COLUMNS, prompt_column, "prompt")
        if prompt_column is None and "instruction" in row and row.get("input"):
            prompt = f"{row['instruction']}\n{row['input']}"  # alpaca: the input follows
        reference = pick(file, n, row, REFERENCE_COLUMNS, reference_column, "reference")
        out.append({"id": row.get("id", n), "prompt": prompt, "reference": reference})
    return out


def score(predictions: list[str], references: list[str], lang: str) -> tuple[dict, dict]:
    """``(metrics, details)`` of predictions against references; ``lang`` auto/en/zh."""
    zh = metrics.is_cjk(references) if lang == "auto" else lang == "zh"
    scores = {
        "exact_match": metrics.exact_match(predictions, references),
        "bleu": metrics.bleu(predictions, references, zh=zh),
        **metrics.rouge(predictions, references, zh=zh),
    }
    details = {
        "lang": "zh" if zh else "en",
        "exact_match_normalisation": metrics.EXACT_MATCH_RULE,
        "bleu_tokenize": "zh" if zh else "13a",
        "rouge_tokens": "characters (CJK), words otherwise" if zh else "words (rouge-score)",
    }
    return scores, details


@register
class Generation(Task):
    """Answers to a file's prompts against its references."""

    kind = "generation"

    def run(self, ctx: EvalContext) -> TaskResult:
        """Generate (greedy, or seeded sampling) in batches and score."""
        t0 = time.perf_counter()
        spec = self.spec
        items = read_prompts(spec.data, spec.prompt_column, spec.reference_column)
        items = items[: spec.max_samples] if spec.max_samples else items
        predictions = ctx.generate(
            [it["prompt"] for it in items],
            max_new_tokens=spec.max_new_tokens,
            temperature=spec.temperature,
            seed=spec.seed,
        )
        references = [it["reference"] for it in items]
        scores, details = score(predictions, references, spec.lang)
        rows = [
            {
                **it,
                "prediction": p,
                "exact_match": metrics.normalise(p) == metrics.normalise(it["reference"]),
            }
            for it, p in zip(items, predictions)
        ]
        seed = ctx.seed if spec.seed is None else spec.seed
        sampled = f"temperature {spec.temperature}, seed {seed}"
        details["sampling"] = "greedy" if spec.temperature == 0 else sampled
        return TaskResult(
            self.kind, self.name, scores, rows, details, len(rows), time.perf_counter() - t0
        )
