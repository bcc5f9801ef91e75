"""`tunesmith train` on bad input: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunesmith.cli import main


def config(tmp_path: Path, data_path: Path, **extra: object) -> Path:
    tree = {
        "data": {"datasets": [{"path": str(data_path)}]},
        "output": {"dir": str(tmp_path / "run")},
        **extra,
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["train", *args, "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    return code, err


def test_missing_data_file(tmp_path: Path, capsys, tiny_qwen2: Path) -> None:
    code, err = run(capsys, str(config(tmp_path, tmp_path / "nope.jsonl")))
    assert code == 2 and len(err) == 1 and "nope.jsonl" in err[0]


def test_unknown_config_key(tmp_path: Path, capsys) -> None:
    code, err = run(capsys, str(config(tmp_path, tmp_path / "x.jsonl")), "train.lrr=1")
    assert code == 2 and err == [
        f"error: {tmp_path / 'cfg.yaml'}: train.lrr: unknown key; did you mean train.lr?"
    ]


def test_malformed_json_line(tmp_path: Path, capsys, tiny_qwen2: Path) -> None:
    data = tmp_path / "d.jsonl"
    good = '{"instruction": "hi", "output": "hello"}'
    data.write_text(f"{good}\n{good}\n{{broken\n")
    code, err = run(capsys, str(config(tmp_path, data)))
    assert code == 2 and len(err) == 1 and "d.jsonl:3" in err[0]


def test_empty_dataset(tmp_path: Path, capsys, tiny_qwen2: Path) -> None:
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    code, err = run(capsys, str(config(tmp_path, data)))
    assert code == 2 and len(err) == 1 and "empty.jsonl" in err[0]
