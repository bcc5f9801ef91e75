"""``tunesmith serval`` end to end on the tiny Qwen2: warm-up, two iterations with LoRA
back-tuning mixed with general data, the report, an interrupted run resumed to the same
results, and ``tunesmith compare`` on two serval runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunesmith.api import load_config
from tunesmith.cli import main
from tunesmith.data.builtin import builtin_path
from tunesmith.runs import load_run
from tunesmith.serval import loop

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
pytest.importorskip("sklearn", reason="the vertical model is scikit-learn's (tunesmith[serval])")

TAKE = {"train": 40, "val": 0, "test": 30}


class Stop(Exception):
    """Raised from ``say`` to kill a run at a chosen point."""


def _subset(name: str, out: Path) -> Path:
    """The first ``TAKE`` rows of each split of a built-in serval file."""
    rows = [json.loads(line) for line in builtin_path(name).read_text().splitlines()]
    kept, seen = [], dict.fromkeys(TAKE, 0)
    for r in rows:
        if seen[r["split"]] < TAKE[r["split"]]:
            seen[r["split"]] += 1
            kept.append(r)
    out.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return out


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> Path:
    tmp = tmp_path_factory.mktemp("serval-cfg")
    tree = {
        "model": {"name": str(tiny_qwen2)},
        "data": {"datasets": [{"path": "builtin:general", "samples": 12}], "max_length": 160},
        "method": {"type": "lora"},
        "train": {"lr": 1e-3, "batch_size": 4, "max_steps": 3, "threads": 1, "seed": 7},
        "serval": {
            "records": str(_subset("serval_patients", tmp / "records.jsonl")),
            "table": str(_subset("serval_patients_table", tmp / "table.jsonl")),
            "iterations": 2,
            "warmup_steps": 3,
            "warmup_data": [{"path": "builtin:serval_textbook", "samples": 12}],
            "vertical": {"kind": "table", "model": "logistic"},
            "noise": {"threshold": 0.9, "min_kept": 10},
            "backtune": {"threshold": 0.51, "max_rows": 8, "general_share": 0.5, "lr": 3e-3},
        },
    }
    path = tmp / "serval.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, config_file: Path) -> Path:
    """A run through the CLI, uninterrupted."""
    run = tmp_path_factory.mktemp("serval") / "straight"
    assert main(["serval", str(config_file), f"output.dir={run}"]) == 0
    return run


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory, config_file: Path) -> tuple[Path, list[str]]:
    """The same run killed after iteration 2's annotation and fit, then run again."""
    run = tmp_path_factory.mktemp("serval") / "resumed"
    cfg = load_config(str(config_file), f"output.dir={run}")

    def kill(line: str) -> None:
        if line.startswith("iteration 2:"):
            raise Stop

    with pytest.raises(Stop):
        loop.run(cfg, say=kill)
    assert (run / "iter_2" / "annotations.json").is_file()
    assert not (run / "iter_2" / "result.json").exists()
    said: list[str] = []
    loop.run(cfg, say=said.append)
    return run, said


def _rows(run: Path) -> list[dict[str, Any]]:
    got = json.loads((run / "serval_report.json").read_text())["iterations"]
    return [{k: v for k, v in r.items() if k != "llm"} for r in got]  # llm: a path in the run


def test_the_loop_trains_and_reports(straight: Path) -> None:
    rows = _rows(straight)
    assert [r["iteration"] for r in rows] == [1, 2]
    for r in rows:
        assert r["train"] == 40 and r["test"] == 30 and r["kept"] >= 10
        assert 0 <= r["llm_acc"] <= 1 and 0 <= r["vertical_acc"] <= 1
    assert {"final_llm_acc", "final_llm_acc_cal", "final_llm_auc"} <= rows[-1].keys()
    # The warm-up trained every weight on general + textbook data; back-tunings are LoRA.
    warm = yaml.safe_load((straight / "warmup" / "run" / "config.yaml").read_text())
    assert warm["method"]["type"] == "full"
    assert [d["path"] for d in warm["data"]["datasets"]] == [
        "builtin:general",
        "builtin:serval_textbook",
    ]
    for k in (1, 2):
        it = straight / f"iter_{k}"
        convs = it.joinpath("backtune.jsonl").read_text().splitlines()
        assert len(convs) == rows[k - 1]["backtune_rows"] == 8
        answer = json.loads(convs[0])["messages"][1]["content"]
        assert answer in ("no", "yes")
        sft = yaml.safe_load((it / "run" / "config.yaml").read_text())
        assert sft["method"]["type"] == "lora" and sft["train"]["lr"] == 3e-3
        sources = [(d["path"], d["samples"]) for d in sft["data"]["datasets"]]
        assert sources == [(str(it / "backtune.jsonl"), None), ("builtin:general", 8)]
        assert (it / "run" / "adapter").is_dir() and (it / "llm" / "config.json").is_file()
    # The report files, and the run directory reads as a finished run (its final LLM).
    table = (straight / "serval_report.md").read_text()
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == 3
    assert "upper bound" in table
    assert (straight / "serval.png").is_file()
    record = load_run(straight)
    assert record.finished and record.weights == straight / "model"
    assert (straight / "model").resolve() == (straight / "iter_2" / "llm").resolve()


def test_back_tuning_changed_the_llm(straight: Path) -> None:
    from safetensors.torch import load_file

    before = load_file(str(straight / "warmup" / "llm" / "model.safetensors"))
    after = load_file(str(straight / "iter_1" / "llm" / "model.safetensors"))
    changed = [k for k in before if not before[k].equal(after[k])]
    assert any("q_proj" in k for k in changed)  # LoRA on the attention, merged in
    assert len(changed) < len(before)  # ... and not every weight (embeddings kept)


def test_resume_after_a_kill_equals_the_uninterrupted_run(
    straight: Path, resumed: tuple[Path, list[str]]
) -> None:
    run, said = resumed
    assert said[1] == "resuming after iteration 1"
    assert not any(line.startswith("warm-up:") for line in said)  # the warm-up is not redone
    assert f"annotations: cached ({run / 'iter_2' / 'annotations.json'})" in said
    assert not any(line.startswith("iteration 1:") for line in said)
    assert _rows(run) == _rows(straight)
    # A third run has nothing left to do but the report.
    again: list[str] = []
    loop.run(load_config(str(run / "config.yaml")), say=again.append)
    assert again[1] == "resuming after iteration 2" and not any(
        x.startswith("back-tune:") for x in again
    )


def test_compare_shows_both_serval_runs(
    tmp_path: Path, straight: Path, resumed: tuple[Path, list[str]]
) -> None:
    page = tmp_path / "cmp.html"
    assert main(["compare", str(straight), str(resumed[0]), "--out", str(page)]) == 0
    md = (tmp_path / "cmp.md").read_text()
    assert "serval/vertical_acc" in md and "serval/upper_acc" in md
