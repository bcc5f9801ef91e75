"""Consistency task on a fake model: agreement, reference agreement, contradictions, yes/no."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config.schema import ConsistencySpec, EvalConfig
from tunesmith.errors import DataError
from tunesmith.evaluate.consistency import (
    Consistency,
    agrees_with,
    pairwise_agreement,
    parse_yes_no,
    read_questions,
)
from tunesmith.evaluate.registry import run_tasks


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("Yes.", "yes"),
        ("yes, it is", "yes"),
        ("No, it is not.", "no"),
        ("Nope", "no"),
        ("It is not true.", "no"),
        ("That is correct", "yes"),
        ("The answer is yes", "yes"),
        ("Paris is lovely", "unclear"),
        ("", "unclear"),
        ("是的，没错。", "yes"),
        ("对", "yes"),
        ("不是。", "no"),
        ("否", "no"),
        ("不对，应该是柏林", "no"),
        ("我不知道", "unclear"),
    ],
)
def test_parse_yes_no(text: str, parsed: str) -> None:
    assert parse_yes_no(text) == parsed


def test_agreement_hand_computed() -> None:
    # Normalised: "paris", "paris", "paris", "lyon": 3 of 6 pairs equal.
    assert pairwise_agreement(["Paris.", "paris", "PARIS!", "Lyon"]) == 0.5
    assert pairwise_agreement(["巴黎。", "巴黎"]) == 1.0
    assert pairwise_agreement(["only one"]) == 1.0
    assert agrees_with("Paris.", "paris", "exact")
    assert not agrees_with("It is Paris.", "paris", "exact")
    assert agrees_with("It is Paris.", "paris", "contains")
    assert not agrees_with("Parisian food", "paris", "contains")  # whole words
    assert agrees_with("是巴黎。", "巴黎", "contains")


def test_consistency_task_metrics_and_rows(tmp_path: Path, fake_ctx: Any) -> None:
    data = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {
                "id": "a",
                "variants": ["Capital of France?", "France's capital?"],
                "reference": "Paris",
            },
            {"id": "b", "variants": ["2+2?", "two plus two?", "2 + 2 ="], "reference": "4"},
        ],
    )
    pairs = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"statement": "Paris is in France.", "negation": "Paris is not in France."},
            {"statement": "Ice is hot.", "negation": "Ice is not hot."},
            {"statement": "巴黎在法国。", "negation": "巴黎不在法国。"},
        ],
    )
    answers = {
        "Capital of France?": "Paris.",
        "France's capital?": "paris",
        "2+2?": "4",
        "two plus two?": "four",
        "2 + 2 =": "4!",
    }

    def answer(prompt: str) -> str:
        if prompt in answers:
            return answers[prompt]
        if "not in France" in prompt or "Ice is hot" in prompt:
            return "No."
        if "Ice is not hot" in prompt:
            return "No, ice is cold."  # no to both: a contradiction
        if "巴黎不在法国" in prompt:
            return "嗯……"  # unclear
        return "Yes" if "Statement" in prompt else "是的"

    ctx = fake_ctx(answer)
    spec = ConsistencySpec(data=str(data), contradictions=str(pairs))
    result = Consistency(spec).run(ctx)
    # a: 1 pair, equal -> 1.0; b: "4","four","4" -> 1 of 3 pairs -> 1/3. Mean 2/3.
    assert result.metrics["agreement"] == pytest.approx((1 + 1 / 3) / 2)
    assert result.metrics["all_agree"] == 0.5
    # Reference: a 2/2, b 2/3 -> 4 of 5 answers.
    assert result.metrics["reference_agreement"] == pytest.approx(4 / 5)
    # Pairs: yes/no fine; no/no flagged; 是的/unclear not flagged.
    assert result.metrics["contradiction_rate"] == pytest.approx(1 / 3)
    assert result.metrics["unclear_rate"] == pytest.approx(1 / 6)
    assert result.n == 5
    assert all(c["temperature"] == 0.0 for c in ctx.calls)
    first = result.rows[0]
    assert first["prompt"] == "Capital of France?"
    assert first["prediction"] == "Paris."
    assert first["variants"] == [
        {"text": "France's capital?", "perturbation": "given", "prediction": "paris"}
    ]
    flagged = [r for r in result.rows if r.get("contradiction")]
    assert [r["parsed"] for r in flagged] == [["no", "no"]]
    assert result.rows[4]["prompt"].startswith("下面的说法正确吗")
    assert result.details["contradictions"] == 1
    assert result.details["decided_pairs"] == 2
    # Variants answered as their original: a 1 of 1, b 1 of 2 ("four" differs).
    assert result.details["same_as_original"] == {"given": {"share": 2 / 3, "variants": 3}}


def test_built_in_perturbations_are_seeded(tmp_path: Path, fake_ctx: Any) -> None:
    data = write_jsonl(tmp_path / "q.jsonl", [{"question": "If it rains, what should I buy?"}])
    ctx = fake_ctx(lambda p: "An umbrella" if p.startswith("If") else "a coat")
    spec = ConsistencySpec(data=str(data), variants=2, seed=3)
    one = Consistency(spec).run(ctx)
    two = Consistency(spec).run(ctx)
    assert one.rows == two.rows
    texts = [v["text"] for v in one.rows[0]["variants"]]
    assert len(texts) == 2 and "If it rains, what should I buy?" not in texts
    assert "reference_agreement" not in one.metrics  # no reference given
    assert "contradiction_rate" not in one.metrics


def test_results_written_per_contract(tmp_path: Path, fake_ctx: Any) -> None:
    data = write_jsonl(tmp_path / "q.jsonl", [{"variants": ["a?", "b?"], "reference": "x"}])
    cfg = EvalConfig(tasks=[{"type": "consistency", "data": str(data), "name": "cons"}])
    run_tasks(cfg.tasks, fake_ctx(lambda p: "x"), tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "cons.json").read_text())
    assert saved["task"] == "consistency" and saved["name"] == "cons"
    assert saved["metrics"] == {"agreement": 1.0, "all_agree": 1.0, "reference_agreement": 1.0}
    row = json.loads((tmp_path / "eval" / "cons.predictions.jsonl").read_text())
    assert {"id", "prompt", "reference", "prediction"} <= set(row)


def test_bad_variants_named_by_line(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "q.jsonl", [{"variants": ["a"]}, {"variants": []}])
    with pytest.raises(DataError, match=r"q.jsonl:2: variants must be a non-empty list"):
        read_questions(str(data))
    with pytest.raises(ValueError, match="give data"):
        ConsistencySpec()


def test_eval_flags_give_consistency_its_data() -> None:
    from argparse import Namespace

    from tunesmith.evaluate.report import eval_specs

    args = Namespace(
        task=["consistency"], data="q.jsonl", config=None, max_samples=5, max_new_tokens=None
    )
    assert eval_specs(args) == [{"type": "consistency", "data": "q.jsonl", "max_samples": 5}]
