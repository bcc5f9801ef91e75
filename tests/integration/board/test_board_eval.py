"""The Run tab's Eval button without a browser: it queues the CLI's ``tunesmith eval RUN``, whose
``eval/<task>.json`` the Run tab then shows; a run without ``eval.tasks`` shows the CLI's line."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunesmith.board import runview
from tunesmith.board.jobs import read_state
from tunesmith.board.state import Board


def _tiny_run(root: Path, name: str, model: Path, tasks: list[dict[str, Any]]) -> Path:
    """A finished full-weight run directory: ``model/`` (the tiny Qwen2) and its config."""
    run = root / "runs" / name
    shutil.copytree(model, run / "model")
    cfg = {
        "model": {"name": str(model)},
        "data": {"datasets": [{"path": "builtin:identity"}]},
        "eval": {"tasks": tasks},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return run


def _finished(run: Path, timeout: float = 180) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = read_state(run)
        if state and state["state"] in ("done", "failed", "lost"):
            return state
        time.sleep(0.2)
    raise AssertionError(f"{run}: eval not finished in {timeout} s: {read_state(run)}")


def test_eval_button_runs_the_cli_and_the_run_tab_shows_the_result(
    tmp_path: Path, tiny_qwen2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job's torch: one thread, as in CI
    task = {
        "type": "perplexity",
        "name": "ppl",
        "datasets": [{"path": "builtin:general"}],
        "max_samples": 4,
    }
    good = _tiny_run(tmp_path, "with-eval", tiny_qwen2, [task])
    bare = _tiny_run(tmp_path, "no-eval", tiny_qwen2, [])
    board = Board(tmp_path, "runs", threads=1)
    try:
        assert board.action("eval", "runs/with-eval") == (
            "queued `tunesmith eval` (log: board-eval.log)"
        )
        assert board.action("eval", "runs/no-eval") == (
            "queued `tunesmith eval` (log: board-eval.log)"
        )
        assert board.action("eval", "runs/no-eval") == (
            "a job of this run is already queued or running"
        )
        done, failed = _finished(good), _finished(bare)
    finally:
        board.close()

    assert (done["kind"], done["state"], done["returncode"]) == ("eval", "done", 0), done
    saved = json.loads((good / "eval" / "ppl.json").read_text(encoding="utf-8"))
    assert saved["task"] == "perplexity" and saved["n"] == 4
    assert (good / "eval" / "ppl.predictions.jsonl").read_text().count("\n") == 4
    log = (good / "board-eval.log").read_text(encoding="utf-8")
    assert log.splitlines()[0] == f"$ tunesmith eval {good}"
    status = runview.run_status(good)
    assert status.evals == (("ppl", saved["metrics"]),)
    assert status.error is None
    lines = status.headline().split("\n\n")
    assert lines[0] == "**eval done**"
    assert lines[1] == "eval ppl: " + ", ".join(f"{k} {v:.4g}" for k, v in saved["metrics"].items())
    assert saved["metrics"]["perplexity"] > 1  # a random tiny model is not a perfect predictor

    assert (failed["state"], failed["returncode"]) == ("failed", 2), failed
    assert not (bare / "eval").exists()
    expected = (
        f"error: {bare}: no eval.tasks in the run's config; give a CONFIG with eval.tasks "
        "or --task NAME (with --data FILE)"
    )
    status = runview.run_status(bare)
    assert status.error == expected
    assert status.headline() == f"**eval failed** (exit code 2)\n\n`{expected}`"
