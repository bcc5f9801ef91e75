"""Stage/setting rules live on the schema: what `train` refuses, `validate` (load_config) refuses.

Each case is a config the recipes would reject (or silently ignore) for stage reasons; the error
names the dotted path of the setting, as the other schema errors do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tunesmith.config.load import RECIPE_DIR, load_config
from tunesmith.errors import ConfigError


def tree(tmp_path: Path, stage: str) -> dict[str, Any]:
    return {
        "data": {"datasets": [{"path": "data.jsonl"}]},
        "method": {"stage": stage},
        "output": {"dir": str(tmp_path / "run")},
    }


REFUSED = [
    # preference: settings of another preference stage (were preference.check_settings)
    ("simpo", ["method.pref.loss_type=ipo"], "method.pref.loss_type", "DPO variant"),
    ("kto", ["method.pref.loss_type=hinge"], "method.pref.loss_type", "DPO variant"),
    ("kto", ["method.pref.label_smoothing=0.1"], "method.pref.label_smoothing", "DPO"),
    ("orpo", ["method.pref.label_smoothing=0.1"], "method.pref.label_smoothing", "SimPO"),
    (
        "dpo",
        ["method.pref.loss_type=ipo", "method.pref.label_smoothing=0.1"],
        "method.pref.label_smoothing",
        "sigmoid",
    ),
    ("orpo", ["method.pref.pref_ftx=0.5"], "method.pref.pref_ftx", "ORPO already trains"),
    ("dpo", ["method.pref.gamma=1.0"], "method.pref.gamma", "SimPO margin"),
    ("dpo", ["method.pref.desirable_weight=2"], "method.pref.desirable_weight", "KTO"),
    ("simpo", ["method.pref.undesirable_weight=2"], "method.pref.undesirable_weight", "KTO"),
    ("orpo", ["method.pref.precompute_ref=true"], "method.pref.precompute_ref", "no reference"),
    ("simpo", ["method.pref.precompute_ref=true"], "method.pref.precompute_ref", "no reference"),
    # preference: what the recipe does not honour
    ("dpo", ["train.compile=true"], "train.compile", "does not compile"),
    ("kto", ["train.pass_tokens=512"], "train.pass_tokens", "never split"),
    ("dpo", ["train.ce_impl=chunked"], "train.ce_impl", "full logits"),
    ("orpo", ["data.train_on_prompt=true"], "data.train_on_prompt", "replies only"),
    ("dpo", ["data.mask_history=true"], "data.mask_history", "never trained"),
    ("dpo", ["data.packing=true"], "data.packing", "never packed"),
    ("kto", ["data.group_by_length=true"], "data.group_by_length", "data order"),
    ("simpo", ["data.loss_weights={'Step:': 2}"], "data.loss_weights", "not used"),
    (
        "dpo",
        ["data.datasets.0.loss_weights={'Step:': 2}"],
        "data.datasets.0.loss_weights",
        "not used",
    ),
    # preference settings on a stage that has none
    ("sft", ["method.pref.beta=0.5"], "method.pref.beta", "preference stages"),
    ("vlm_sft", ["method.pref.pref_ftx=0.1"], "method.pref.pref_ftx", "preference stages"),
    # vlm (were vlm.check_stage and, for vlm_sft, apply_vlm_method at model-loading time)
    (
        "vlm_pretrain",
        ["train.gradient_checkpointing=true"],
        "train.gradient_checkpointing",
        "no LLM layer",
    ),
    ("vlm_pretrain", ["method.type=full"], "method.type", "projector only"),
    (
        "vlm_pretrain",
        ["model.vision.train_vision=lora"],
        "model.vision.train_vision",
        "projector only",
    ),
    (
        "vlm_pretrain",
        ["model.vision.train_projector=false"],
        "model.vision.train_projector",
        "projector",
    ),
    ("vlm_sft", ["method.type=qlora"], "method.type", "'full' or 'lora'"),
    ("vlm_sft", ["method.type=freeze"], "method.type", "'full' or 'lora'"),
    (
        "vlm_sft",
        ["method.type=full", "model.vision.train_vision=lora"],
        "model.vision.train_vision",
        "needs method.type 'lora'",
    ),
    ("vlm_sft", ["method.type=lora", "method.lora.init=pissa"], "method.lora.init", "vlm"),
    (
        "vlm_sft",
        ["method.type=lora", "model.vision.train_vision=lora", "method.lora.init=pissa"],
        "method.lora.init",
        "vlm",
    ),
    ("vlm_sft", ["train.compile=true"], "train.compile", "does not compile"),
    ("vlm_pretrain", ["train.pass_tokens=256"], "train.pass_tokens", "never split"),
    # vision settings on a text stage
    ("sft", ["model.vision.train_vision=full"], "model.vision", "vlm stages"),
    # eval.val_split is another name for data.val_size
    ("sft", ["eval.val_split=0.1", "data.val_size=0.2"], "eval.val_split", "data.val_size"),
    ("sft", ["eval.val_split=0.1", "data.val_size=0"], "eval.val_split", "data.val_size"),
    ("sft", ["eval.early_stopping_patience=2"], "eval.early_stopping_patience", "val_size"),
    # distillation (issue 20)
    ("distill", [], "method.distill.teacher", "needs a teacher"),
    (
        "distill",
        ["method.distill.teacher=t", "method.distill.beta=0.3"],
        "method.distill.beta",
        "jsd",
    ),
    ("distill", ["method.distill.teacher=t", "train.ce_impl=chunked"], "train.ce_impl", "logits"),
    ("distill", ["method.distill.teacher=t", "train.compile=true"], "train.compile", "compile"),
    ("sft", ["method.distill.teacher=t"], "method.distill.teacher", "stage distill"),
    ("dpo", ["method.distill.temperature=2"], "method.distill.temperature", "stage distill"),
]


@pytest.mark.parametrize(("stage", "overrides", "path", "message"), REFUSED)
def test_validate_refuses_what_train_would(
    tmp_path: Path, stage: str, overrides: list[str], path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tree=tree(tmp_path, stage), overrides=overrides)
    lines = str(info.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: "), lines
    assert message in lines[0]


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            tree=tree(tmp_path, "orpo"), overrides=["train.compile=true", "method.pref.pref_ftx=1"]
        )
    paths = sorted(line.split(":")[0] for line in str(info.value).splitlines())
    assert paths == ["method.pref.pref_ftx", "train.compile"]


ACCEPTED = [
    # defaults a stage ignores are never refused, nor values the stage does what they say
    ("dpo", []),
    ("dpo", ["data.packing=false", "data.group_by_length=false", "train.pass_tokens=null"]),
    ("kto", ["data.packing=false", "train.pass_tokens=auto", "train.ce_impl=auto"]),
    ("dpo", ["method.pref.loss_type=ipo", "method.pref.precompute_ref=true"]),
    ("simpo", ["method.pref.gamma=1.0", "method.pref.label_smoothing=0.1"]),
    ("kto", ["method.pref.desirable_weight=1.3", "method.pref.pref_ftx=0.1"]),
    ("sft", ["train.compile=true", "train.pass_tokens=512", "data.mask_history=true"]),
    ("pt", ["data.loss_weights={'A:': 0}"]),
    ("vlm_pretrain", ["model.vision.train_vision=frozen", "method.type=lora"]),
    ("vlm_sft", ["method.type=full", "model.vision.train_vision=full"]),
    ("vlm_sft", ["method.type=lora", "model.vision.train_vision=lora"]),
    ("vlm_sft", ["method.type=full", "method.lora.init=pissa"]),  # no adapter: init unused
    ("vlm_sft", ["train.gradient_checkpointing=true", "data.loss_weights={'A:': 2}"]),
    # vlm batches group by length as text batches do (data/shard.py)
    ("vlm_sft", ["data.packing=false", "data.group_by_length=true"]),
    # distillation: every setting of its own, and the SFT baseline of the distill-tiny recipe
    (
        "distill",
        [
            "method.distill.teacher=t",
            "method.distill.kind=jsd",
            "method.distill.beta=0.3",
            "method.distill.teacher_4bit=true",
            "train.ce_impl=logits",
            "train.pass_tokens=512",
        ],
    ),
    ("sft", ["method.distill.teacher=null"]),
]


@pytest.mark.parametrize(("stage", "overrides"), ACCEPTED)
def test_settings_a_stage_honours_or_defaults_pass(
    tmp_path: Path, stage: str, overrides: list[str]
) -> None:
    load_config(tree=tree(tmp_path, stage), overrides=overrides)


def test_preference_config_records_padding_and_reloads(tmp_path: Path) -> None:
    cfg = load_config(tree=tree(tmp_path, "dpo"))
    assert (cfg.data.packing, cfg.data.group_by_length) == (False, False)  # what the stage does
    again = load_config(tree=cfg.model_dump(mode="json"))  # the saved config.yaml reloads
    assert (again.data.packing, again.data.group_by_length) == (False, False)
    sft = load_config(tree=tree(tmp_path, "sft"))
    assert (sft.data.packing, sft.data.group_by_length) == (True, True)


def test_val_split_is_another_name_for_val_size(tmp_path: Path) -> None:
    cfg = load_config(tree=tree(tmp_path, "sft"), overrides=["eval.val_split=8"])
    assert cfg.data.val_size == 8 and cfg.eval.val_split is None  # one value, in one place
    same = load_config(
        tree=tree(tmp_path, "sft"), overrides=["eval.val_split=8", "data.val_size=8"]
    )
    assert same.data.val_size == 8
    again = load_config(tree=cfg.model_dump(mode="json"))  # the saved config.yaml reloads
    assert again.data.val_size == 8


@pytest.mark.parametrize("recipe", sorted(f.stem for f in RECIPE_DIR.glob("*.yaml")))
def test_shipped_recipes_validate(tmp_path: Path, recipe: str) -> None:
    load_config(RECIPE_DIR / f"{recipe}.yaml", overrides=[f"output.dir={tmp_path / 'run'}"])


def test_loss_weights_rule_is_shared(tmp_path: Path) -> None:
    for key in ("data.loss_weights", "data.datasets.0.loss_weights"):
        with pytest.raises(ConfigError, match=rf"^{key}: Value error, markers must be non-empty"):
            load_config(tree=tree(tmp_path, "sft"), overrides=[f"{key}={{'A:': -1}}"])


def test_recipes_recheck_a_config_changed_after_loading(tmp_path: Path) -> None:
    from tunesmith.config.load import check_stage_settings
    from tunesmith.config.schema import PreferenceConfig

    cfg = load_config(tree=tree(tmp_path, "orpo"))
    check_stage_settings(cfg)
    cfg.method.pref = PreferenceConfig(pref_ftx=0.5)  # validated as a section only
    with pytest.raises(ConfigError, match=r"^method\.pref\.pref_ftx: ORPO already trains"):
        check_stage_settings(cfg)
