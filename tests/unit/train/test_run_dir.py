"""The run directory is created with one-line errors (issue 14: output.dir that is a file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.config.load import load_config
from tunesmith.errors import ConfigError
from tunesmith.train.recipes.sft import prepare_run_dir


@pytest.mark.parametrize("inside", [False, True])
def test_output_dir_that_became_a_file(tmp_path: Path, inside: bool) -> None:
    """A file that appears after validation (or under a later run) is named, not a traceback."""
    taken = tmp_path / "run"
    target = taken / "sub" if inside else taken
    cfg = load_config(
        tree={"data": {"datasets": [{"path": "x.jsonl"}]}}, overrides=[f"output.dir={target}"]
    )
    taken.write_text("")
    with pytest.raises(ConfigError) as err:
        prepare_run_dir(cfg)
    assert str(err.value) == (
        f"output.dir: {taken} is an existing file, not a directory; "
        "choose another output.dir (or move the file)"
    )


def test_run_dir_is_created_with_its_config(tmp_path: Path) -> None:
    cfg = load_config(
        tree={"data": {"datasets": [{"path": "x.jsonl"}]}},
        overrides=[f"output.dir={tmp_path / 'a' / 'b'}"],
    )
    assert (prepare_run_dir(cfg) / "config.yaml").is_file()
