"""Field checks (issues 14, 15): output.dir that is a file, train.report_to as a string."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.config.load import load_config
from tunesmith.errors import ConfigError

DATA = "data:\n  datasets:\n    - path: builtin:general\n"
MINIMAL = {"data": {"datasets": [{"path": "builtin:general"}]}}


def one_line(err: pytest.ExceptionInfo[ConfigError]) -> str:
    lines = str(err.value).splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# ---- issue 14: output.dir that is a file -----------------------------------------------------
def test_output_dir_that_is_a_file_is_refused_at_validation(tmp_path: Path) -> None:
    taken = tmp_path / "notes.txt"
    taken.write_text("x")
    with pytest.raises(ConfigError) as err:
        load_config(tree=MINIMAL, overrides=[f"output.dir={taken}"])
    assert one_line(err) == (
        f"output.dir: {taken} is an existing file, not a directory; "
        "choose another output.dir (or move the file)"
    )
    with pytest.raises(ConfigError, match=rf"output.dir: {taken} is an existing file"):
        load_config(tree=MINIMAL, overrides=[f"output.dir={taken / 'run'}"])


def test_output_dir_that_is_a_directory_is_fine(tmp_path: Path) -> None:
    cfg = load_config(tree=MINIMAL, overrides=[f"output.dir={tmp_path}"])
    assert cfg.output.run_dir == str(tmp_path)


# ---- issue 15: train.report_to as a string or a list -----------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("tensorboard", ["tensorboard"]),
        ("tensorboard,wandb", ["tensorboard", "wandb"]),
        ("[tensorboard, mlflow]", ["tensorboard", "mlflow"]),
        ("[]", []),
    ],
)
def test_report_to_override_takes_a_string_or_a_list(value: str, expected: list[str]) -> None:
    cfg = load_config(tree=MINIMAL, overrides=[f"train.report_to={value}"])
    assert cfg.train.report_to == expected


def test_report_to_yaml_string(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(DATA + "train:\n  report_to: tensorboard\n")
    assert load_config(cfg).train.report_to == ["tensorboard"]


def test_report_to_unknown_tracker_names_its_path() -> None:
    with pytest.raises(ConfigError, match=r"train\.report_to\.0: Input should be 'tensorboard'"):
        load_config(tree=MINIMAL, overrides=["train.report_to=tensorbord"])
