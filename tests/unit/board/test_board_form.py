"""The board's form is the schema: every recipe survives form -> tree unchanged, and errors are
the CLI's lines placed at their fields."""

from __future__ import annotations

import pytest

from tunesmith.board import form
from tunesmith.config.load import load_config, read_yaml
from tunesmith.errors import ConfigError
from tunesmith.recipes import recipe_dir

SPECS = form.grouped(form.form_fields())
BY_PATH = {s.path: s for s in SPECS}


@pytest.mark.parametrize("recipe", sorted(p.stem for p in recipe_dir().glob("*.yaml")))
def test_every_recipe_round_trips_through_the_form(recipe: str) -> None:
    tree = read_yaml(recipe_dir() / f"{recipe}.yaml")
    values, given = form.values_from_tree(tree, SPECS)
    back, bad = form.tree_from_values(SPECS, values, given)
    assert bad == []
    assert back == tree


def test_widgets_follow_the_field_types() -> None:
    assert BY_PATH["train.scheduler"].kind == "choice"
    assert BY_PATH["train.scheduler"].choices == ("cosine", "linear", "constant")
    assert BY_PATH["model.template"].kind == "choice" and BY_PATH["model.template"].optional
    assert BY_PATH["data.packing"].kind == "bool"
    assert BY_PATH["train.report_to"].kind == "multi"
    assert BY_PATH["data.datasets"].kind == "yaml" and BY_PATH["data.datasets"].required
    assert BY_PATH["method.lora.rank"].group == "method.lora"
    assert BY_PATH["serval.serval"].kind == "yaml"  # the optional section: one box
    assert form.config_path(BY_PATH["serval.serval"]) == ["serval"]
    assert BY_PATH["train.max_steps"].help == "Overrides epochs when set."
    # Every leaf of the schema is in the form exactly once, grouped by tab.
    assert len({s.path for s in SPECS}) == len(SPECS) == len(form.form_fields())
    sections = [s.section for s in SPECS]
    assert sections == sorted(sections, key=list(dict.fromkeys(sections)).index)


def test_text_is_read_like_a_cli_override() -> None:
    lr, name, max_steps = BY_PATH["train.lr"], BY_PATH["output.name"], BY_PATH["train.max_steps"]
    assert form.parse_widget(lr, "1e-4") == 1e-4  # YAML 1.1 alone would keep "1e-4" a string
    assert form.parse_widget(lr, "2.0e-4") == 2e-4
    assert form.parse_widget(name, "123") == "123"  # a str field stays a string
    assert form.parse_widget(max_steps, "") is None
    assert form.parse_widget(BY_PATH["model.template"], form.NONE) is None
    with pytest.raises(ConfigError) as bad:
        form.parse_widget(BY_PATH["data.datasets"], "- path: a\n  bad: x: y\n")
    assert str(bad.value) == (
        "data.datasets: invalid YAML at line 2 (mapping values are not allowed here)"
    )


def _edited(recipe: str, **changes: str) -> tuple[list[str], dict]:
    tree = read_yaml(recipe_dir() / f"{recipe}.yaml")
    values, given = form.values_from_tree(tree, SPECS)
    paths = [s.path for s in SPECS]
    for path, text in changes.items():
        values[paths.index(path.replace("__", "."))] = text
    back, bad = form.tree_from_values(SPECS, values, given)
    return bad or form.check_tree(back), back


def test_errors_are_the_validate_lines_at_their_fields() -> None:
    lines, tree = _edited(
        "sft-lora",
        train__lr="-1",
        data__datasets="- path: builtin:general\n  formt: auto\n",
        method__stage="dpo",
    )
    with pytest.raises(ConfigError) as cli:
        load_config(tree=tree)
    assert lines == str(cli.value).splitlines()  # exactly what `tunesmith validate` prints
    placed, loose = form.errors_by_field(lines, SPECS)
    assert placed["train.lr"] == ["train.lr: Input should be greater than 0"]
    assert placed["data.datasets"] == [
        "data.datasets.0.formt: unknown key; did you mean data.datasets.0.format?"
    ]
    assert loose == []


def test_a_box_that_does_not_parse_is_its_own_error() -> None:
    lines, _ = _edited("sft-lora", eval__prompts="[unclosed")
    assert len(lines) == 1 and lines[0].startswith("eval.prompts: invalid YAML")
    placed, _ = form.errors_by_field(lines, SPECS)
    assert list(placed) == ["eval.prompts"]


def test_a_line_naming_no_field_stays_loose() -> None:
    placed, loose = form.errors_by_field(["(top level): bad", "data: rule between fields"], SPECS)
    assert placed == {} and loose == ["(top level): bad", "data: rule between fields"]


def test_defaults_are_left_out_unless_the_recipe_set_them() -> None:
    values, _ = form.values_from_tree({"data": {"datasets": [{"path": "x.jsonl"}]}}, SPECS)
    tree, bad = form.tree_from_values(SPECS, values)
    assert bad == [] and tree == {"data": {"datasets": [{"path": "x.jsonl"}]}}


def test_sources_are_appended_to_the_datasets_box(tmp_path: object) -> None:
    import json
    from pathlib import Path

    from tunesmith.board.sources import add_source, builtin_sources, info_entries
    from tunesmith.errors import DataError

    assert "builtin:identity" in builtin_sources() and "builtin:general" in builtin_sources()
    folder = Path(str(tmp_path))
    (folder / "dataset_info.json").write_text(json.dumps({"a": {}, "b": {}}))
    assert info_entries(str(folder)) == ["a", "b"]
    with pytest.raises(DataError, match="dataset_info file not found"):
        info_entries(str(folder / "nope.json"))
    text = add_source("- path: builtin:general\n", {"from_info": str(folder), "name": "a"})
    assert text == f"- path: builtin:general\n- from_info: {folder}\n  name: a\n"
    with pytest.raises(ConfigError, match="must be a list of sources"):
        add_source("path: x\n", {"path": "y"})
