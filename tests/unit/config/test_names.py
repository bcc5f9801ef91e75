"""Names checked at validation time (issue 15): dataset formats, chat templates."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tunesmith.config.load import load_config
from tunesmith.config.names import FORMAT_NAMES, TEMPLATE_NAMES
from tunesmith.errors import ConfigError

MINIMAL = {"data": {"datasets": [{"path": "builtin:general"}]}}


def one_line(err: pytest.ExceptionInfo[ConfigError]) -> str:
    lines = str(err.value).splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# ---- issue 15: names checked at validation time, with suggestions ----------------------------
def test_unknown_dataset_format_names_its_path_and_suggests() -> None:
    tree = {"data": {"datasets": [{"path": "a.jsonl"}, {"path": "b.jsonl", "format": "alpacca"}]}}
    with pytest.raises(ConfigError) as err:
        load_config(tree=tree)
    line = one_line(err)
    assert line.startswith(
        "data.datasets.1.format: unknown format 'alpacca'; did you mean 'alpaca'?"
    )
    assert "use auto or one of alpaca, sharegpt" in line


def test_unknown_template_names_its_path_and_suggests() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tree=MINIMAL, overrides=["model.template=Llama-3"])
    line = one_line(err)
    assert line.startswith(
        "model.template: unknown chat template 'Llama-3'; did you mean 'llama3'?"
    )
    assert "tunesmith data templates" in line


def test_known_names_pass() -> None:
    cfg = load_config(
        tree=MINIMAL, overrides=["data.datasets.0.format=sharegpt", "model.template=qwen2.5"]
    )
    assert cfg.data.datasets[0].format == "sharegpt" and cfg.model.template == "qwen2.5"


def test_config_name_lists_match_the_data_registries() -> None:
    """config/names.py copies the registries' names (config imports nothing of ours)."""
    from tunesmith.data.formats import FORMATS
    from tunesmith.data.templates import builtin_template_names

    assert list(FORMAT_NAMES) == list(FORMATS), "update tunesmith/config/names.py FORMAT_NAMES"
    assert list(TEMPLATE_NAMES) == builtin_template_names(), "update config/names.py"


def test_config_does_not_import_data_or_heavy_libraries() -> None:
    code = (
        "import sys, tunesmith.config.load as l; "
        "l.load_config(tree={'data': {'datasets': [{'path': 'x', 'format': 'alpaca'}]}}); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers') "
        "or m.startswith(('tunesmith.data', 'tunesmith.model', 'tunesmith.train'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
