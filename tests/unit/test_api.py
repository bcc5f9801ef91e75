"""The Python API (issue 15): ``import tunesmith`` stays light, and offers the CLI's own objects."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

import tunesmith
from tunesmith import api
from tunesmith.errors import ConfigError


def test_import_stays_light_and_names_load_lazily() -> None:
    code = (
        "import sys, tunesmith\n"
        "names = [tunesmith.load_config, tunesmith.train, tunesmith.chat, tunesmith.export]\n"
        "heavy = [m for m in ('torch', 'transformers', 'accelerate', 'peft') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names() -> None:
    from tunesmith.infer.engine import Engine, GenParams

    for name in ("load_config", "train", "chat", "export", "Engine", "GenParams", "RunConfig"):
        assert name in tunesmith.__all__ and name in dir(tunesmith)
    assert tunesmith.Engine is Engine and tunesmith.GenParams is GenParams
    assert tunesmith.load_config is api.load_config and tunesmith.chat is api.chat
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = tunesmith.nope  # type: ignore[attr-defined]


def test_train_and_export_stay_callable_beside_their_packages() -> None:
    import tunesmith.export.merge
    import tunesmith.train.recipes.sft  # the import system sets tunesmith.train to the package

    assert callable(tunesmith.train) and callable(tunesmith.export)
    assert tunesmith.train.recipes.sft.run is not None  # the package is still the package
    assert tunesmith.export.merge.export is not None


def test_load_config_takes_a_recipe_and_both_kinds_of_overrides(tmp_path: Path) -> None:
    cfg = tunesmith.load_config(
        "sft-lora",
        "train.lr=1e-4",
        train={"max_steps": 3, "batch_size": 2},
        output__dir=str(tmp_path / "run"),
        eval__prompts=["Hi: {x}?"],
    )
    assert (cfg.train.lr, cfg.train.max_steps, cfg.train.batch_size) == (1e-4, 3, 2)
    assert cfg.output.dir == str(tmp_path / "run") and cfg.eval.prompts == ["Hi: {x}?"]
    assert cfg.method.type == "lora"  # the rest comes from the recipe
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"data": {"datasets": [{"path": "builtin:general"}]}}))
    assert tunesmith.load_config(path, ["train.lr=3e-4"]).train.lr == 3e-4
    tree = {"data": {"datasets": [{"path": "builtin:general"}]}}
    assert tunesmith.load_config(tree, train__epochs=2).train.epochs == 2


def test_load_config_errors_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"trian: unknown key; did you mean train\?"):
        tunesmith.load_config("sft-lora", trian={"lr": 1})
    with pytest.raises(ConfigError, match=r"train\.lrr: unknown key"):
        tunesmith.load_config("sft-lora", train__lrr=1)


@pytest.mark.parametrize(
    ("stage", "module"),
    [
        ("sft", "sft"),
        ("pt", "sft"),
        ("dpo", "preference"),
        ("orpo", "preference"),
        ("simpo", "preference"),
        ("kto", "preference"),
        ("vlm_pretrain", "vlm"),
        ("vlm_sft", "vlm"),
    ],
)
def test_one_dispatch_per_stage(stage: str, module: str) -> None:
    assert api.recipe_for(stage).__name__ == f"tunesmith.train.recipes.{module}"


def test_every_stage_has_a_recipe() -> None:
    from typing import get_args

    from tunesmith.config.schema import MethodConfig

    stages = get_args(MethodConfig.model_fields["stage"].annotation)
    assert set(stages) == set(api.RECIPES)
    with pytest.raises(ConfigError, match=r"method\.stage 'rlhf'"):
        api.recipe_for("rlhf")


def test_cli_train_goes_through_the_same_dispatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunesmith.cli import main

    calls: list[tuple[str, bool]] = []

    def fake_run(cfg: Any, *, console: Any = None, show_progress: bool = True) -> None:
        calls.append((cfg.method.stage, show_progress))

    monkeypatch.setattr(api, "recipe_for", lambda stage: types.SimpleNamespace(run=fake_run))
    path = tmp_path / "cfg.yaml"
    tree = {
        "data": {"datasets": [{"path": "builtin:prefs_arith"}]},
        "method": {"stage": "dpo", "type": "lora"},
        "output": {"dir": str(tmp_path / "run")},
    }
    path.write_text(yaml.safe_dump(tree))
    assert main(["train", str(path), "--no-progress"]) == 0
    assert calls == [("dpo", False)]


def test_train_checks_model_names_before_anything_else(tmp_path: Path) -> None:
    cfg = tunesmith.load_config(
        "sft-lora", model__tokenizer=str(tmp_path / "tok"), output__dir=str(tmp_path / "run")
    )
    with pytest.raises(ConfigError, match=r"^model\.tokenizer .*not found"):
        tunesmith.train(cfg)
    assert not (tmp_path / "run").exists()
