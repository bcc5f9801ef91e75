"""Iteration bookkeeping, the run directory check, back-tuning conversations and config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.api import load_config
from tunesmith.errors import ConfigError
from tunesmith.serval.backtune import conversations, sft_tree
from tunesmith.serval.loop import finished_iterations, prepare_dir
from tunesmith.serval.records import load_records


def test_finished_iterations_stop_at_the_first_unfinished(tmp_path: Path) -> None:
    for k in (1, 2, 4):
        (tmp_path / f"iter_{k}").mkdir()
        (tmp_path / f"iter_{k}" / "result.json").write_text(json.dumps({"iteration": k}))
    (tmp_path / "iter_3").mkdir()  # started (annotations, say), never finished
    assert [r["iteration"] for r in finished_iterations(tmp_path, 5)] == [1, 2]
    assert [r["iteration"] for r in finished_iterations(tmp_path, 1)] == [1]


def test_prepare_dir_resumes_the_same_config_only(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = load_config("serval-demo", f"output.dir={run}")
    prepare_dir(run, cfg, overwrite=False)
    (run / "iter_1").mkdir()
    prepare_dir(run, cfg, overwrite=False)  # the same config: kept, to resume
    assert (run / "iter_1").is_dir()
    other = load_config("serval-demo", f"output.dir={run}", "serval.iterations=5")
    with pytest.raises(ConfigError, match=r"another config; give another output\.dir"):
        prepare_dir(run, other, overwrite=False)
    prepare_dir(run, other, overwrite=True)
    assert not (run / "iter_1").exists()
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="no serval run"):
        prepare_dir(plain, cfg, overwrite=True)
    assert (plain / "notes.txt").is_file()


def test_conversations_keep_the_most_confident_predictions() -> None:
    rows = conversations(
        ["a", "b", "c", "d"],
        [0.95, 0.55, 0.1, 0.7],
        prompt="Q {text}",
        label_words=("no", "yes"),
        threshold=0.65,
        max_rows=2,
        seed=0,
    )
    got = sorted((r["messages"][0]["content"], r["messages"][1]["content"]) for r in rows)
    assert got == [("Q a", "yes"), ("Q c", "no")]


def test_sft_tree_mixes_general_data_and_validates(tmp_path: Path) -> None:
    cfg = load_config("serval-demo")
    task = tmp_path / "backtune.jsonl"
    tree = sft_tree(
        cfg.model_dump(mode="json"),
        model="/models/llm",
        task_file=task,
        task_rows=70,
        general_share=0.3,
        out_dir=tmp_path / "run",
        max_steps=7,
        lr=3e-3,
    )
    sft = load_config(tree)
    assert sft.serval is None and sft.model.name == "/models/llm"
    assert [d.path for d in sft.data.datasets] == [str(task), "builtin:general"]
    assert sft.data.datasets[1].samples == 30  # 70 * 0.3 / 0.7
    assert sft.train.max_steps == 7 and sft.output.dir == str(tmp_path / "run")
    assert sft.method.type == "lora" and sft.train.lr == 3e-3  # the run's method, lr given


def test_sft_tree_of_the_warm_up_adds_warmup_data_and_trains_everything(tmp_path: Path) -> None:
    cfg = load_config("serval-demo")
    sv = cfg.serval
    assert sv is not None and sv.warmup_data and cfg.method.type == "lora"
    tree = sft_tree(
        cfg.model_dump(mode="json"),
        model="builtin:tiny-qwen2",
        task_file=None,
        task_rows=0,
        general_share=0,
        out_dir=tmp_path / "warmup",
        max_steps=sv.warmup_steps,
        lr=0.01,
        method_type="full",
        extra_sources=[d.model_dump(mode="json") for d in sv.warmup_data],
    )
    warm = load_config(tree)
    assert [(d.path, d.samples) for d in warm.data.datasets] == [
        ("builtin:general", 600),
        ("builtin:serval_textbook", 400),
    ]
    assert warm.method.type == "full" and warm.train.lr == 0.01
    assert warm.train.max_steps == sv.warmup_steps


def test_serval_config_rules() -> None:
    with pytest.raises(ConfigError, match="warmup_data needs warmup_steps > 0"):
        load_config("serval-demo", "serval.warmup_steps=0")
    with pytest.raises(ConfigError, match=r"prompt must contain \{text\}"):
        load_config("serval-demo", "serval.prompt=no record here")
    with pytest.raises(ConfigError, match="serval back-tunes with stage sft"):
        load_config("serval-demo", "method.stage=dpo")


def test_builtin_records_join_text_and_table() -> None:
    splits = load_records("builtin:serval_patients", "builtin:serval_patients_table")
    assert {k: len(v) for k, v in splits.items()} == {"train": 600, "val": 100, "test": 300}
    first = splits["train"]
    assert first.ids[0] == "P0001" and len(first.features[0]) == 8
    assert f"glucose {int(first.features[0][3])} mg/dL" in first.texts[0]


def test_bad_records_name_the_line(tmp_path: Path) -> None:
    from tunesmith.errors import DataError

    bad = tmp_path / "r.jsonl"
    bad.write_text(
        '{"id": 1, "split": "train", "text": "x", "label": 0}\n'
        '{"id": 2, "split": "train", "text": "y", "label": 3}\n'
    )
    with pytest.raises(DataError, match=r"r.jsonl:2: label 3 must be 0 or 1"):
        load_records(str(bad), None)
