"""A mistyped run directory or model path (issues 14, 15): "not found" at once, no hub attempt.

Before, ``chat``/``export``/``serve``/``eval`` spent ~49 s retrying the Hugging Face Hub for a
path that simply did not exist, then printed a network error.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from tunesmith.cli import main


@pytest.fixture
def no_network(online: Path, no_network: list[object]) -> list[object]:
    """Hub downloads allowed (``online``), but every socket lookup or connection fails."""
    return no_network


COMMANDS = {
    "chat": lambda target, tmp: ["chat", target, "--prompt", "hi"],
    "chat --model": lambda target, tmp: ["chat", "--model", target, "--prompt", "hi"],
    "export": lambda target, tmp: ["export", target, "--out", str(tmp / "out")],
    "serve": lambda target, tmp: ["serve", target, "--port", "8765"],
    "eval": lambda target, tmp: ["eval", "identity", target],
}


def errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_missing_run_directory_is_not_found_at_once(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_network: list[object],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for target in ("runs/idnetity", "./runs/identity", str(tmp_path / "gone" / "model")):
        t = time.perf_counter()
        code = main(COMMANDS[command](target, tmp_path))
        took = time.perf_counter() - t
        err = errors(capsys)
        assert code == 2 and len(err) == 1, (target, err)
        assert target in err[0] and "not found" in err[0], err[0]
        assert took < 2.0 and not no_network, (target, took, no_network)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["chat", "export", "serve", "eval"])
def test_unreachable_hub_fails_fast_and_suggests_offline_mode(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_network: list[object]
) -> None:
    t = time.perf_counter()
    code = main(COMMANDS[command]("someorg/some-model", tmp_path))
    err = errors(capsys)
    assert code == 2 and len(err) == 1 and time.perf_counter() - t < 3.0
    assert "cannot be reached" in err[0] and "HF_HUB_OFFLINE=1" in err[0]


def test_missing_adapter_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_network: list[object], tiny_qwen2: Path
) -> None:
    gone = str(tmp_path / "adapter")
    for args in (
        ["chat", "--model", str(tiny_qwen2), "--adapter", gone, "--prompt", "hi"],
        ["export", str(tiny_qwen2), "--adapter", gone, "--out", str(tmp_path / "out")],
    ):
        code = main(args)
        err = errors(capsys)
        assert code == 2 and len(err) == 1 and gone in err[0] and "not found" in err[0]
    assert not no_network


# ---- issue 14 -----------------------------------------------------------------------------------
def train_config(tmp_path: Path, **model: str) -> Path:
    tree = {
        "model": model,
        "data": {"datasets": [{"path": "builtin:general", "samples": 8}], "max_length": 64},
        "train": {"max_steps": 1, "precision": "fp32"},
        "output": {"dir": str(tmp_path / "run")},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_train_with_missing_tokenizer_names_model_tokenizer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tok = str(tmp_path / "tok")
    code = main(["train", str(train_config(tmp_path, tokenizer=tok)), "--no-progress"])
    err = errors(capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: model.tokenizer {tok!r}: ")


def test_truncated_weights_in_chat_and_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_qwen2: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_qwen2, folder)
    weights = folder / "model.safetensors"
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size // 3)
    code = main(["chat", str(folder), "--prompt", "hi"])
    err = errors(capsys)
    assert code == 2 and len(err) == 1 and f"{weights} is damaged" in err[0]
    assert "download" in err[0]
    cfg = train_config(tmp_path, name=str(folder))
    code = main(["train", str(cfg), "--no-progress"])
    err = errors(capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: model.name {str(folder)!r}: {weights} is damaged")


def test_train_with_damaged_tokenizer_names_model_tokenizer_and_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_qwen2: Path
) -> None:
    tok = tmp_path / "tok"
    shutil.copytree(tiny_qwen2, tok)
    data = tok / "tokenizer.json"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    code = main(["train", str(train_config(tmp_path, tokenizer=str(tok))), "--no-progress"])
    err = errors(capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: model.tokenizer {str(tok)!r}: {data} is damaged")
