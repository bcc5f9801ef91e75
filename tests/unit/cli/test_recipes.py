"""`tunesmith recipes` says which recipes learn something on the random-weight tiny model."""

from __future__ import annotations

import pytest

from tunesmith.cli import TINY_RESULT, main, recipe_list


def table(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        parts = line.split(maxsplit=2)
        if parts and parts[0] in recipe_list():
            rows[parts[0]] = parts[1]
    assert "on the built-in tiny model" in out  # the legend
    return rows


def test_recipes_mark_what_learns_on_the_tiny_model(capsys: pytest.CaptureFixture[str]) -> None:
    rows = table(capsys)
    assert set(rows) == set(recipe_list())
    assert rows["identity"] == "learns" and rows["vlm-sft"] == "learns"
    for name in ("sft-lora", "dpo-lora", "orpo-lora", "simpo-lora", "kto-lora"):
        assert rows[name] == "demo", name
    assert rows["identity-lora"] == "partly"


def test_every_shipped_recipe_is_marked() -> None:
    assert set(TINY_RESULT) == set(recipe_list())
    assert set(TINY_RESULT.values()) <= {"learns", "partly", "demo"}
