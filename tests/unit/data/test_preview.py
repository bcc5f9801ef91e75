"""``tunesmith data preview / stats / templates``: trained-token markers, histogram, JSON keys."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from tunesmith.data.commands import add_commands
from tunesmith.data.preview import coloured, histogram, plain, segments
from tunesmith.data.render import Renderer, RenderOptions
from tunesmith.data.templates import builtin_template_names, resolve_chat_template
from tunesmith.data.types import Conversation, Message
from tunesmith.errors import TunesmithError


@pytest.fixture(scope="module")
def tok(tiny_qwen2: Path) -> Any:
    from tunesmith.model.loader import load_tokenizer

    return load_tokenizer(str(tiny_qwen2))


def sample(tok: Any, **opts: Any) -> dict[str, Any]:
    jinja, stop = resolve_chat_template(tok, None)
    r = Renderer(tok, jinja, stop, RenderOptions(**opts))
    c = Conversation([Message("user", "hi"), Message("assistant", "Action: go\nDone")])
    return r.render(c).as_dict()


def test_plain_markers_wrap_exactly_the_trained_tokens(tok: Any) -> None:
    assert plain(sample(tok), tok) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n[[Action: go\nDone<|im_end|>]]\n"
    )
    weighted = sample(tok, loss_weights={"Action:": 2, "Done": 1})
    assert plain(weighted, tok) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        "[[x2:Action: go\n]][[Done<|im_end|>]]\n"
    )
    runs = segments(weighted)
    assert [state for _, state in runs] == [None, 2.0, 1.0, None]


def test_colour_mode_styles(tok: Any) -> None:
    text = coloured(sample(tok), tok)
    styles = {str(span.style) for span in text.spans}
    assert styles == {"dim", "bold green"}
    green = [text.plain[s.start : s.end] for s in text.spans if str(s.style) == "bold green"]
    assert green == ["Action: go\nDone<|im_end|>"]


def test_histogram_bins() -> None:
    lines = histogram([1, 2, 3, 16, 16, 9], max_length=16, bins=4)
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["3", "0", "1", "2"]
    assert lines[0].startswith(" 1-4  | ##############################")
    assert histogram([], 8) == ["(no samples)"]


@pytest.fixture
def config(tmp_path: Path, tiny_qwen2: Path) -> str:
    rows = [{"instruction": f"question {i}", "output": f"answer {i}"} for i in range(12)]
    rows.append({"instruction": "long " * 300, "output": "x"})
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"model:\n  name: {tiny_qwen2}\ndata:\n  datasets:\n    - path: {data}\n"
        "  max_length: 64\n  truncation: drop\n  cache: false\n",
        "utf-8",
    )
    return str(cfg)


def cli(*argv: str) -> int:
    p = argparse.ArgumentParser(prog="tunesmith")
    add_commands(p.add_subparsers(dest="command"))
    args = p.parse_args(list(argv))
    return int(args.func(args))


def test_stats_json_has_the_documented_keys(config: str, capsys: pytest.CaptureFixture) -> None:
    assert cli("data", "stats", config, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert {"datasets", "samples", "trained_tokens", "packing_efficiency"} <= set(out)
    (ds,) = out["datasets"]
    assert {
        "name",
        "rows_read",
        "rows_kept",
        "rows_skipped",
        "skipped_by_reason",
        "samples_in_mix",
        "trained_tokens",
    } <= set(ds)
    assert (ds["rows_read"], ds["rows_kept"], ds["rows_skipped"]) == (13, 12, 1)
    assert ds["skipped_by_reason"] == {"longer than max_length": 1}
    assert out["samples"] == 12 and out["trained_tokens"] == ds["trained_tokens"] > 0
    assert 0 < out["packing_efficiency"] <= 1
    assert cli("data", "stats", config, "data.packing=false", "--json") == 0
    assert json.loads(capsys.readouterr().out)["packing_efficiency"] is None


def test_preview_plain_and_colour(config: str, capsys: pytest.CaptureFixture) -> None:
    assert cli("data", "preview", config, "-n", "2", "--plain") == 0
    out = capsys.readouterr().out
    assert out.count("--- sample ") == 2 and out.count("[[answer ") == 2
    assert "| source | rows read |" in out and "Token lengths:" in out
    assert "Truncated: 0; dropped for length: 1." in out
    assert cli("data", "preview", config, "-n", "1") == 0
    out = capsys.readouterr().out
    assert "sample 1:" in out and "answer" in out and "[[" not in out


def test_templates_list_and_config_errors(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert cli("data", "templates") == 0
    out = capsys.readouterr().out
    for name in builtin_template_names():
        assert f"\n{name} " in "\n" + out
    with pytest.raises(TunesmithError, match=r"model\.template: unknown chat template 'llama4'"):
        cli("data", "stats", config, "model.template=llama4")


@pytest.mark.parametrize(
    ("recipe", "unit"), [("dpo-lora", "pair"), ("orpo-lora", "pair"), ("kto-lora", "example")]
)
def test_stats_and_preview_on_preference_recipes(
    recipe: str, unit: str, tiny_qwen2: Path, capsys: pytest.CaptureFixture
) -> None:
    assert cli("data", "stats", recipe, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    (ds,) = out["datasets"]
    assert ds["rows_read"] > 0 and ds["rows_kept"] > 0 and out["trained_tokens"] > 0
    assert out["samples"] == ds["samples_in_mix"] and ds["val_samples"] > 0
    assert cli("data", "preview", recipe, "-n", "2", "--plain") == 0
    text = capsys.readouterr().out
    assert text.count(f"--- {unit} ") == 2 and "| source | rows read |" in text
    if unit == "pair":
        assert text.count("[chosen]\n[[") == 2 and text.count("[rejected]\n[[") == 2
    else:
        assert (
            text.count("[completion: desirable]\n[[") + text.count("[completion: undesirable]\n[[")
            == 2
        )
    assert cli("data", "preview", recipe, "-n", "1") == 0  # colour
    text = capsys.readouterr().out
    assert f"{unit} 1" in text and "[[" not in text


def test_stats_and_preview_on_shared_dpo_and_kto_demos(
    tmp_path: Path, tiny_qwen2: Path, shared_data: Path, capsys: pytest.CaptureFixture
) -> None:
    info = shared_data / "llamafactory" / "dataset_info.json"
    for name, stage in (("dpo_en_demo", "dpo"), ("kto_en_demo", "kto")):
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(
            f"model:\n  name: {tiny_qwen2}\ndata:\n  datasets:\n    - from_info: {info}\n"
            f"      name: {name}\n      max_samples: 40\n  max_length: 2048\n  cache: false\n"
            f"method:\n  stage: {stage}\n",
            "utf-8",
        )
        assert cli("data", "stats", str(cfg), "--json") == 0
        (ds,) = json.loads(capsys.readouterr().out)["datasets"]
        assert ds["rows_read"] == 40
        assert ds["rows_kept"] + ds["rows_skipped"] == 40 and ds["rows_kept"] >= 20
        assert cli("data", "preview", str(cfg), "-n", "3", "--plain") == 0
        text = capsys.readouterr().out
        if stage == "dpo":
            assert text.count("--- pair ") == 3 and text.count("[rejected]\n[[") == 3
        else:  # kto_en_demo's labels: both kinds among the first rows shown
            assert text.count("--- example ") == 3
            shown = [line for line in text.splitlines() if line.startswith("[completion: ")]
            assert len(shown) == 3 and {
                "[completion: desirable]",
                "[completion: undesirable]",
            } >= set(shown)
