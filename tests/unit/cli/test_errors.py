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


# ---- issues 14, 15: config mistakes, reported by `validate` and `train` alike ------------------
def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["validate", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.splitlines()


@pytest.mark.parametrize("command", ["validate", "train"])
def test_config_not_utf8(tmp_path: Path, capsys, command: str) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_bytes(b"data:\n  datasets:\n    - path: caf\xe9.jsonl\n")
    code = main([command, str(path)])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {path}:3: not UTF-8")


def test_config_duplicate_section(tmp_path: Path, capsys) -> None:
    path = config(tmp_path, tmp_path / "x.jsonl")
    path.write_text(path.read_text() + "output:\n  name: again\n")
    code, err = validate(capsys, str(path))
    assert code == 2 and len(err) == 1
    assert "duplicate key 'output' (first at line" in err[0] and err[0].startswith(
        f"error: {path}:"
    )


def test_output_dir_is_a_file(tmp_path: Path, capsys) -> None:
    taken = tmp_path / "taken"
    taken.write_text("")
    path = config(tmp_path, tmp_path / "x.jsonl")
    code, err = run(capsys, str(path), f"output.dir={taken}")
    assert code == 2 and err == [
        f"error: {path}: output.dir: {taken} is an existing file, not a directory; "
        "choose another output.dir (or move the file)"
    ]


def test_dataset_format_typo_fails_validate(tmp_path: Path, capsys) -> None:
    path = config(tmp_path, tmp_path / "x.jsonl")
    code, err = validate(capsys, str(path), "data.datasets.0.format=alpacca")
    assert code == 2 and len(err) == 1
    assert err[0].startswith(
        f"error: {path}: data.datasets.0.format: unknown format 'alpacca'; did you mean 'alpaca'?"
    )


def test_template_typo_fails_validate(tmp_path: Path, capsys) -> None:
    path = config(tmp_path, tmp_path / "x.jsonl")
    code, err = validate(capsys, str(path), "model.template=ChatML")
    assert code == 2 and len(err) == 1 and "model.template: unknown chat template" in err[0]
    assert "did you mean 'chatml'?" in err[0]


@pytest.mark.parametrize("command", ["validate", "train"])
def test_recipe_name_typo(capsys, command: str) -> None:
    code = main([command, "sft-lroa"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and err == [
        "error: sft-lroa: no such config file or shipped recipe; did you mean sft-lora? "
        "(`tunesmith recipes` lists them)"
    ]


def test_report_to_string_override(tmp_path: Path, capsys) -> None:
    path = config(tmp_path, tmp_path / "x.jsonl")
    assert main(["validate", str(path), "train.report_to=tensorboard"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["train"]["report_to"] == ["tensorboard"]
