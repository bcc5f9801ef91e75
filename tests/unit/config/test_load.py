"""Config loading: YAML, dotted overrides, path-naming errors with suggestions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.cli import recipe_dir, recipe_list
from tunesmith.config.load import apply_override, load_config, parse_override
from tunesmith.errors import ConfigError

MINIMAL = {"data": {"datasets": [{"path": "builtin:general"}]}}


def test_defaults_fill_every_section() -> None:
    cfg = load_config(tree=MINIMAL)
    assert cfg.model.name == "builtin:tiny-qwen2"
    assert cfg.method.type == "lora" and cfg.method.lora.targets == "all-linear"
    assert cfg.output.run_dir == "runs/run"


def test_overrides_are_typed_and_nested() -> None:
    cfg = load_config(
        tree=MINIMAL,
        overrides=["train.lr=2e-4", "method.lora.rank=4", "data.datasets.0.samples=10"],
    )
    assert cfg.train.lr == pytest.approx(2e-4) and isinstance(cfg.train.lr, float)
    assert cfg.method.lora.rank == 4
    assert cfg.data.datasets[0].samples == 10


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", "train.lrr: unknown key; did you mean train.lr?"),
        ("method.lora.rnak=4", "method.lora.rnak: unknown key; did you mean method.lora.rank?"),
        ("modle.name=x", "modle: unknown key; did you mean model?"),
        ("data.datasets.0.sample=3", "data.datasets.0.sample: unknown key; did you mean"),
        ("train.lr=abc", "train.lr: Input should be a valid number"),
        ("train.batch_size=0", "train.batch_size: Input should be greater than or equal to 1"),
        ("method.type=lorra", "method.type: Input should be 'full', 'freeze', 'lora' or 'qlora'"),
    ],
)
def test_errors_name_the_dotted_path(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tree=MINIMAL, overrides=[override])
    assert message in str(err.value)


def test_every_problem_reported_one_line_each() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tree=MINIMAL, overrides=["train.lrr=1", "method.typo=1"])
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and all(": unknown key" in line for line in lines)


def test_dataset_needs_one_source() -> None:
    with pytest.raises(ConfigError, match=r"data\.datasets\.0: Value error, give exactly one"):
        load_config(tree={"data": {"datasets": [{"samples": 3}]}})


def test_yaml_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_override_syntax() -> None:
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("train.lr")
    tree: dict = {"x": [{"y": 1}]}
    apply_override(tree, ["x", "0", "y"], 2)
    assert tree == {"x": [{"y": 2}]}
    with pytest.raises(ConfigError, match="out of range"):
        apply_override(tree, ["x", "5", "y"], 2)


@pytest.mark.parametrize("name", sorted(recipe_list()))
def test_every_shipped_recipe_validates(name: str) -> None:
    cfg = load_config(recipe_dir() / f"{name}.yaml")
    assert cfg.data.datasets
    assert recipe_list()[name]  # a one-line description
