"""Field checks (issue 14): output.dir that is a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.config.load import load_config
from tunesmith.errors import ConfigError

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
