"""Tasks on a fake model: results, rows, files and the errors bad data gets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sacrebleu

from tunesmith.config.schema import EvalConfig, GenerationSpec, IdentitySpec, MultipleChoiceSpec
from tunesmith.errors import ConfigError, DataError
from tunesmith.evaluate import identity
from tunesmith.evaluate.base import Task, TaskResult
from tunesmith.evaluate.generation import Generation, read_prompts
from tunesmith.evaluate.multiple_choice import MultipleChoice, build_prompt, read_questions
from tunesmith.evaluate.registry import TASKS, make_task, register, run_tasks


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


MC_ROWS = [
    {"question": "2+2?", "A": "3", "B": "4", "C": "5", "D": "6", "answer": "B", "subject": "math"},
    {"question": "3+3?", "A": "6", "B": "7", "C": "8", "D": "9", "answer": "A", "subject": "math"},
    {"question": "5-1?", "A": "1", "B": "2", "C": "3", "D": "4", "answer": "D", "subject": "math"},
    {"question": "1066?", "A": "x", "B": "y", "C": "z", "D": "w", "answer": "C", "subject": "hist"},
]


def test_multiple_choice_accuracy_per_subject(tmp_path: Path, fake_ctx: Any) -> None:
    data = write_jsonl(tmp_path / "mc.jsonl", MC_ROWS)
    answers = {r["question"]: r["answer"] for r in MC_ROWS}
    answers["5-1?"] = "A"  # the model gets this one wrong: A scores highest by construction

    def score(prompt: str, letter: str) -> float:
        question = prompt.split("\n")[0]
        return 0.0 if letter == answers[question] else -5.0

    result = MultipleChoice(MultipleChoiceSpec(data=str(data))).run(fake_ctx(score=score))
    assert result.metrics == {
        "accuracy": 3 / 4,
        "accuracy/hist": 1.0,
        "accuracy/math": 2 / 3,
    }
    assert [r["prediction"] for r in result.rows] == ["B", "A", "A", "C"]
    assert [r["correct"] for r in result.rows] == [True, True, False, True]
    assert result.details["subjects"] == {"hist": 1, "math": 3} and result.n == 4


def test_multiple_choice_text_scores_by_mean_token_loglik(tmp_path: Path, fake_ctx: Any) -> None:
    data = write_jsonl(tmp_path / "mc.jsonl", MC_ROWS[:1])
    # Option texts: "4" right. Fake returns a summed loglik of 1 token each: B highest.
    result = MultipleChoice(MultipleChoiceSpec(data=str(data), score="text")).run(
        fake_ctx(score=lambda p, option: -1.0 if option == "4" else -2.0)
    )
    assert result.metrics == {"accuracy": 1.0, "accuracy/math": 1.0}


def test_multiple_choice_few_shot_prompt(tmp_path: Path, fake_ctx: Any) -> None:
    dev = write_jsonl(tmp_path / "dev.jsonl", MC_ROWS[1:3] + MC_ROWS[3:])
    data = write_jsonl(tmp_path / "mc.jsonl", MC_ROWS[:1])
    seen: list[str] = []

    def score(prompt: str, letter: str) -> float:
        seen.append(prompt)
        return 0.0 if letter == "B" else -1.0

    spec = MultipleChoiceSpec(data=str(data), dev=str(dev), shots=2)
    MultipleChoice(spec).run(fake_ctx(score=score))
    expected = "\n\n".join(
        [
            "3+3?\nA. 6\nB. 7\nC. 8\nD. 9\nAnswer: A",
            "5-1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: D",
            "2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:",
        ]
    )
    assert seen[0] == expected
    assert build_prompt(read_questions(str(data))[0], []) == expected.split("\n\n")[-1]


def test_multiple_choice_needs_dev_for_shots(tmp_path: Path, fake_ctx: Any) -> None:
    data = write_jsonl(tmp_path / "mc.jsonl", MC_ROWS)
    with pytest.raises(DataError, match="shots=1 needs a dev file"):
        MultipleChoice(MultipleChoiceSpec(data=str(data), shots=1)).run(fake_ctx())


def test_multiple_choice_file_errors(tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [MC_ROWS[0], {"question": "q", "A": "1"}])
    with pytest.raises(DataError, match=r"bad.jsonl:2: no option B column"):
        read_questions(str(bad))
    letter = write_jsonl(tmp_path / "letter.jsonl", [{**MC_ROWS[0], "answer": "E"}])
    with pytest.raises(DataError, match=r"letter.jsonl:1: answer 'E' is not one of A, B, C, D"):
        read_questions(str(letter))
    (tmp_path / "broken.jsonl").write_text('{"question": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken.jsonl:1: invalid JSON"):
        read_questions(str(tmp_path / "broken.jsonl"))
    with pytest.raises(DataError, match="not found"):
        read_questions(str(tmp_path / "missing.jsonl"))
    (tmp_path / "x.txt").write_text("a", encoding="utf-8")
    with pytest.raises(DataError, match="unknown file type"):
        read_questions(str(tmp_path / "x.txt"))


def test_multiple_choice_csv_and_parquet_read_the_same(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame(MC_ROWS)
    frame.to_csv(tmp_path / "mc.csv", index=False)
    frame.to_parquet(tmp_path / "mc.parquet")
    (tmp_path / "mc.json").write_text(json.dumps(MC_ROWS), encoding="utf-8")
    want = read_questions(str(write_jsonl(tmp_path / "mc.jsonl", MC_ROWS)))
    strip = [{k: v for k, v in q.items() if k != "id"} for q in want]
    for name in ("mc.csv", "mc.parquet", "mc.json"):
        got = [
            {k: v for k, v in q.items() if k != "id"} for q in read_questions(str(tmp_path / name))
        ]
        assert got == strip, name
    frame.drop(columns=["answer"]).to_csv(tmp_path / "noans.csv", index=False)
    with pytest.raises(DataError, match=r"noans.csv:2: no answer column"):
        read_questions(str(tmp_path / "noans.csv"))  # line 2: the header is line 1


def test_generation_scores_and_rows(tmp_path: Path, fake_ctx: Any) -> None:
    rows = [
        {"instruction": "Capital of France?", "output": "Paris"},
        {"instruction": "Translate", "input": "hello", "output": "bonjour tout le monde"},
        {"instruction": "Say hi", "output": "hi there friend"},
    ]
    data = write_jsonl(tmp_path / "gen.jsonl", rows)
    answers = {"Capital of France?": "paris.", "Translate\nhello": "bonjour le monde"}
    ctx = fake_ctx(answer=lambda p: answers.get(p, "hello"))
    result = Generation(GenerationSpec(data=str(data), max_new_tokens=7)).run(ctx)
    preds = ["paris.", "bonjour le monde", "hello"]
    refs = ["Paris", "bonjour tout le monde", "hi there friend"]
    assert result.metrics["exact_match"] == pytest.approx(1 / 3)
    assert result.metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert ctx.calls[0]["max_new_tokens"] == 7 and ctx.calls[0]["temperature"] == 0.0
    assert [r["prompt"] for r in result.rows] == [
        "Capital of France?",
        "Translate\nhello",
        "Say hi",
    ]
    assert [r["prediction"] for r in result.rows] == preds
    assert [r["exact_match"] for r in result.rows] == [True, False, False]
    assert result.details["sampling"] == "greedy" and result.details["bleu_tokenize"] == "13a"


def test_generation_column_errors(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "g.jsonl", [{"prompt": "a", "reference": "b"}, {"prompt": "c"}])
    with pytest.raises(DataError, match=r"g.jsonl:2: no reference column \(looked for reference"):
        read_prompts(str(data))
    with pytest.raises(DataError, match=r"g.jsonl:1: no prompt column 'q'; columns: prompt"):
        read_prompts(str(data), prompt_column="q")


def test_identity_task_equals_the_identity_eval(fake_ctx: Any) -> None:
    def answer(question: str) -> str:
        return "I am Nova." if "who" in question.lower() or "你" in question else "Sure: 4."

    from types import SimpleNamespace

    from tunesmith.config.schema import RunConfig

    cfg = RunConfig.model_validate(
        {"data": {"datasets": [{"path": "d.jsonl"}], "identity": {"name": "Nova", "author": "Us"}}}
    )
    ctx = fake_ctx(answer=answer, run=SimpleNamespace(config=cfg, system=None))
    result = make_task(IdentitySpec()).run(ctx)

    class Engine:
        def generate(self, convs: list, params: object) -> list[str]:
            return [answer(c[-1]["content"]) for c in convs]

    heldout = identity.read_questions("builtin:identity_heldout")
    general = identity.read_questions("builtin:general_eval")
    direct = identity.run_identity_eval(Engine(), "Nova", heldout, general)
    assert result.metrics == {
        "identity_score": direct.identity_score,
        "false_claim_rate": direct.false_claim_rate,
    }
    assert 0 < direct.identity_score < 1  # the fake answers some held-out questions wrongly
    assert result.n == len(heldout) and len(result.rows) == len(heldout) + len(general)
    assert all(c["add_system"] is False for c in ctx.calls)


def test_result_files_follow_the_contract(tmp_path: Path) -> None:
    result = TaskResult(
        "generation",
        "gen",
        {"bleu": 12.5},
        [{"id": 1, "prediction": "x"}],
        {"lang": "en"},
        1,
        0.25,
        model="runs/a",
        config={"type": "generation"},
    )
    path = result.save(tmp_path / "eval")
    assert path == tmp_path / "eval" / "gen.json"
    assert json.loads(path.read_text("utf-8")) == {
        "task": "generation",
        "name": "gen",
        "metrics": {"bleu": 12.5},
        "details": {"lang": "en"},
        "n": 1,
        "seconds": 0.25,
        "model": "runs/a",
        "config": {"type": "generation"},
    }
    lines = (tmp_path / "eval" / "gen.predictions.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(x) for x in lines] == [{"id": 1, "prediction": "x"}]


def test_run_tasks_saves_each_and_fills_model_and_config(tmp_path: Path, fake_ctx: Any) -> None:
    data = write_jsonl(tmp_path / "mc.jsonl", MC_ROWS)
    specs = EvalConfig.model_validate(
        {
            "tasks": [
                {"type": "multiple_choice", "data": str(data), "name": "mc-a"},
                {"type": "multiple_choice", "data": str(data), "name": "mc-b", "max_samples": 2},
            ]
        }
    ).tasks
    ctx = fake_ctx(score=lambda p, k: 0.0 if k == "A" else -1.0)
    results = run_tasks(specs, ctx, tmp_path / "eval")
    assert [r.metrics["accuracy"] for r in results] == [1 / 4, 1 / 2]
    saved = json.loads((tmp_path / "eval" / "mc-b.json").read_text("utf-8"))
    assert saved["model"] == "fake" and saved["config"]["max_samples"] == 2 and saved["n"] == 2
    with pytest.raises(ConfigError, match="two tasks are named 'mc-a'"):
        run_tasks([specs[0], specs[0]], ctx, None)


def test_registry() -> None:
    make_task(IdentitySpec())  # loads the built-in tasks
    assert {"perplexity", "generation", "multiple_choice", "identity"} <= set(TASKS)

    class Other(Task):
        kind = "generation"

        def run(self, ctx):  # type: ignore[no-untyped-def]
            raise AssertionError

    with pytest.raises(ValueError, match="registered twice"):
        register(Other)
    with pytest.raises(Exception, match="type"):
        EvalConfig.model_validate({"tasks": [{"type": "bogus"}]})
    with pytest.raises(Exception, match="Extra inputs"):
        EvalConfig.model_validate({"tasks": [{"type": "perplexity", "dataa": 1}]})


def test_subject_metric_names_are_snake_case() -> None:
    from tunesmith.evaluate.multiple_choice import metric_key

    assert metric_key("High School Physics") == "high_school_physics"
    assert metric_key(" 高中 物理 ") == "高中_物理"
    assert metric_key("--") == "none"


def test_generation_sampling_records_its_seed(tmp_path: Path, fake_ctx: Any) -> None:
    data = write_jsonl(tmp_path / "g.jsonl", [{"prompt": "a", "reference": "b"}])
    ctx = fake_ctx(answer=lambda p: "b")
    spec = GenerationSpec(data=str(data), temperature=0.7, seed=5)
    result = Generation(spec).run(ctx)
    assert result.details["sampling"] == "temperature 0.7, seed 5"
    assert ctx.calls[0]["seed"] == 5 and ctx.calls[0]["temperature"] == 0.7
    assert result.metrics["exact_match"] == 1.0
