"""What ``tunesmith eval`` runs, from its flags or a CONFIG, and the checks before training."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tunesmith.api import check_eval_files
from tunesmith.cli import build_parser
from tunesmith.config.schema import EvalConfig
from tunesmith.errors import ConfigError
from tunesmith.evaluate.report import eval_specs


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["eval", *argv])


def test_task_flags_become_specs() -> None:
    args = parse(
        "runs/a",
        "--task",
        "generation",
        "--task",
        "perplexity",
        "--data",
        "x.jsonl",
        "--max-samples",
        "5",
        "--max-new-tokens",
        "9",
    )
    assert eval_specs(args) == [
        {"type": "generation", "data": "x.jsonl", "max_samples": 5, "max_new_tokens": 9},
        {"type": "perplexity", "datasets": [{"path": "x.jsonl"}], "max_samples": 5},
    ]
    ident = eval_specs(parse("runs/a", "--task", "identity", "--name", "Nova"))
    assert ident == [
        {"type": "identity", "identity_name": "Nova", "heldout": None, "general": None}
    ]
    assert eval_specs(parse("runs/a")) is None  # the run's own eval.tasks
    with pytest.raises(ConfigError, match="--task multiple_choice needs --data FILE"):
        eval_specs(parse("runs/a", "--task", "multiple_choice"))


def test_config_tasks(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data:\n  datasets:\n    - path: builtin:identity\neval:\n  tasks:\n"
        "    - type: multiple_choice\n      data: mc.csv\n      shots: 2\n      dev: dev.csv\n",
        encoding="utf-8",
    )
    (spec,) = eval_specs(parse("runs/a", str(cfg)))
    assert (spec["type"], spec["data"], spec["shots"], spec["name"]) == (
        "multiple_choice",
        "mc.csv",
        2,
        "multiple_choice",
    )
    empty = tmp_path / "e.yaml"
    empty.write_text("data:\n  datasets:\n    - path: builtin:identity\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"no eval\.tasks"):
        eval_specs(parse("runs/a", str(empty)))


def test_eval_identity_run_still_parses() -> None:
    args = parse("identity", "runs/identity", "--json")
    assert (args.target, args.config, args.json) == ("identity", "runs/identity", True)


def test_missing_eval_files_fail_before_training(tmp_path: Path) -> None:
    there = tmp_path / "g.jsonl"
    there.write_text("{}\n", encoding="utf-8")
    tasks = EvalConfig.model_validate(
        {
            "tasks": [
                {"type": "generation", "data": str(there)},
                {"type": "multiple_choice", "data": str(there), "dev": "nope.csv"},
            ]
        }
    ).tasks
    with pytest.raises(ConfigError, match=r"eval.tasks.1.dev: nope.csv not found"):
        check_eval_files(tasks)
    check_eval_files(tasks[:1])
