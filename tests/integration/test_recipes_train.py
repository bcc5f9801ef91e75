"""Every shipped recipe trains as `tunesmith new` copies it, from another directory, with nothing
run before it (its data and base model come from the recipe alone), shortened to two steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunesmith.cli import main, recipe_list

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.mark.parametrize("name", sorted(recipe_list()))
def test_shipped_recipe_trains_as_copied(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / f"{name}.yaml"
    assert main(["new", name, str(config)]) == 0
    work = tmp_path / "elsewhere"  # not the folder the config is in: relative paths must not matter
    work.mkdir()
    monkeypatch.chdir(work)
    overrides = ["train.max_steps=2", "train.batch_size=2", "train.threads=1"]
    assert main(["train", str(config), *overrides, "--no-progress"]) == 0
    run = work / "runs" / name
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 2 and summary["last_loss"] == summary["last_loss"]  # not NaN
    weights = "adapter" if (run / "adapter").is_dir() else "model"
    assert (run / weights).is_dir()
    # The run's own short model card: what, from what, on what, how it went, what next.
    card = (run / "README.md").read_text()
    cfg = yaml.safe_load(config.read_text())
    assert card.startswith(f"# {name}\n")
    assert f"`{cfg['model']['name']}`" in card and f"`{weights}/`" in card
    assert f"({cfg['method'].get('stage', 'sft')})" in card
    assert all(f"| {d['path']} |" in card for d in cfg["data"]["datasets"])
    assert f"{summary['last_loss']:.4f} over 2 steps" in card
    assert f"tunesmith chat runs/{name}" in card and f"tunesmith export runs/{name} --out" in card
