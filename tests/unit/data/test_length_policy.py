"""Long rows: the defaults keep them (LLaMA-Factory's cutoff 2048, truncated), a console warning
whenever more than 1 % of a source is cut or dropped, and ``train`` refusing a source that loses
most of its rows unless ``data.allow_drop`` says so."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config.schema import DataConfig
from tunesmith.data.commands import add_commands
from tunesmith.data.engine import build_renderer, load_source, prepare
from tunesmith.data.render import SkipSample
from tunesmith.errors import DataError


@pytest.fixture(scope="module")
def tok(tiny_qwen2: Path) -> Any:
    from tunesmith.model.loader import load_tokenizer

    return load_tokenizer(str(tiny_qwen2))


def rows(path: Path, short: int, long: int, *, pairs: bool = False) -> str:
    """``short`` rows of a few tokens, then ``long`` rows of several hundred."""
    out = []
    for i in range(short + long):
        reply = f"answer {i}" if i < short else "word " * 300
        row = {"instruction": f"question {i}", "output": reply}
        if pairs:
            row = {"instruction": row["instruction"], "chosen": reply, "rejected": "no " + reply}
        out.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in out), "utf-8")
    return str(path)


def run(tok: Any, path: str, stage: str = "sft", **kw: Any) -> Any:
    cfg = DataConfig(datasets=[{"path": path}], cache=False, **kw)
    return prepare(cfg, build_renderer(tok, cfg, stage=stage), stage=stage)


def cli(*argv: str) -> int:
    p = argparse.ArgumentParser(prog="tunesmith")
    add_commands(p.add_subparsers(dest="command"))
    args = p.parse_args(list(argv))
    return int(args.func(args))


def test_defaults_follow_llamafactory() -> None:
    cfg = DataConfig(datasets=[{"path": "x.jsonl"}])
    assert (cfg.max_length, cfg.truncation, cfg.allow_drop) == (2048, "truncate_right", False)


def test_a_warning_line_names_counts_and_the_key(tok: Any, tmp_path: Path) -> None:
    path = rows(tmp_path / "d.jsonl", 19, 1)
    data = run(tok, path, max_length=64, truncation="drop")
    assert data.report.warnings() == [
        f"warning: {path}: 1 of 20 rows (5.0%) not trained whole: 1 dropped (longer than "
        "max_length: 1); set data.truncation: truncate_right to keep them cut to fit, or raise "
        "data.max_length (now 64)"
    ]
    data = run(tok, path, max_length=64)
    assert data.report.warnings() == [
        f"warning: {path}: 1 of 20 rows (5.0%) not trained whole: 1 truncated to data.max_length "
        "64; raise data.max_length (now 64) to keep them whole"
    ]
    assert data.report.samples == 20
    assert "warning: " in data.report.markdown() and data.report.as_dict()["warnings"]
    quiet = run(tok, rows(tmp_path / "e.jsonl", 99, 1), max_length=64, truncation="drop")
    assert quiet.report.warnings() == []  # 1 % is not more than 1 %


def test_train_refuses_a_source_that_loses_most_rows(tok: Any, tmp_path: Path) -> None:
    path = rows(tmp_path / "d.jsonl", 4, 6)
    with pytest.raises(DataError) as err:
        run(tok, path, max_length=64, truncation="drop")
    assert str(err.value) == (
        f"data.datasets.0 ({path}): 6 of 10 rows (60.0%) would not train (longer than "
        "max_length: 6); set data.truncation: truncate_right or raise data.max_length (now 64), "
        "or set data.allow_drop: true to train on the 4 left"
    )
    data = run(tok, path, max_length=64, truncation="drop", allow_drop=True)
    assert data.report.samples == 4 and len(data.report.warnings()) == 1
    assert run(tok, path, max_length=64).report.samples == 10  # the default truncates instead


def test_preference_stages_warn_and_refuse_too(tok: Any, tmp_path: Path) -> None:
    path = rows(tmp_path / "p.jsonl", 4, 6, pairs=True)
    for stage in ("dpo", "kto"):
        with pytest.raises(DataError, match=r"would not train .*data\.allow_drop: true"):
            run(tok, path, stage, max_length=64, truncation="drop")
        data = run(tok, path, stage, max_length=64)
        assert data.report.warnings()[0].startswith(f"warning: {path}: ")
        assert "truncated to data.max_length 64" in data.report.warnings()[0]


def test_stats_shows_warnings_and_what_train_would_refuse(
    tmp_path: Path, tiny_qwen2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = rows(tmp_path / "d.jsonl", 4, 6)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"model:\n  name: {tiny_qwen2}\ndata:\n  datasets:\n    - path: {path}\n"
        "  max_length: 64\n  truncation: drop\n  cache: false\n"
    )
    assert cli("data", "stats", str(cfg)) == 0
    out = capsys.readouterr().out
    assert f"warning: {path}: 6 of 10 rows (60.0%) not trained whole" in out
    assert f"`tunesmith train` refuses to start: data.datasets.0 ({path}): 6 of 10" in out
    assert cli("data", "stats", str(cfg), "--json") == 0
    got = json.loads(capsys.readouterr().out)
    assert len(got["warnings"]) == 1 and "data.allow_drop: true" in got["refusal"]
    assert cli("data", "preview", str(cfg), "--plain", "-n", "1") == 0
    assert "refuses to start" in capsys.readouterr().out


def test_train_prints_the_warning_and_refuses(
    tmp_path: Path, tiny_qwen2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunesmith.cli import main

    path = rows(tmp_path / "d.jsonl", 18, 2)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"model:\n  name: {tiny_qwen2}\ndata:\n  datasets:\n    - path: {path}\n"
        f"  max_length: 64\n  cache: false\ntrain:\n  max_steps: 1\n  precision: fp32\n"
        f"output:\n  dir: {tmp_path / 'run'}\n"
    )
    assert main(["train", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr()
    said = " ".join((out.out + out.err).split())  # the console wraps long lines
    assert "warning: " in said and "2 of 20 rows (10.0%) not trained whole: 2 truncated" in said
    mostly_long = rows(tmp_path / "e.jsonl", 4, 16)
    again = [f"data.datasets.0.path={mostly_long}", "data.truncation=drop"]
    again.append(f"output.dir={tmp_path / 'run2'}")
    code = main(["train", str(cfg), "--no-progress", *again])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(err) == 1 and "data.allow_drop: true" in err[0]


def test_llamafactory_demos_keep_their_rows_with_the_defaults(
    tmp_path: Path, tiny_qwen2: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = shared_data / "llamafactory" / "dataset_info.json"
    got = {}
    for name in ("alpaca_en_demo", "glaive_toolcall_en_demo"):
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(
            f"model:\n  name: {tiny_qwen2}\ndata:\n  datasets:\n    - from_info: {info}\n"
            f"      name: {name}\n  cache: false\n"
        )
        assert cli("data", "stats", str(cfg), "--json") == 0
        got[name] = json.loads(capsys.readouterr().out)
    (alpaca,) = got["alpaca_en_demo"]["datasets"]
    assert (alpaca["rows_read"], alpaca["rows_kept"], alpaca["truncated"]) == (999, 999, 0)
    (glaive,) = got["glaive_toolcall_en_demo"]["datasets"]  # was 92 of 300 kept at 512 + drop
    assert glaive["rows_read"] == 300 and glaive["rows_kept"] >= 297 and glaive["truncated"] > 3
    assert any(
        "truncated to data.max_length 2048" in w for w in got["glaive_toolcall_en_demo"]["warnings"]
    )


def test_truncated_tool_conversations_keep_whole_exchanges(tok: Any, shared_data: Path) -> None:
    """Every glaive row the defaults truncate is exactly the rendering of its first exchanges:
    whole turns, labels as verified for that shorter conversation."""
    info = shared_data / "llamafactory" / "dataset_info.json"
    cfg = DataConfig(datasets=[{"from_info": str(info), "name": "glaive_toolcall_en_demo"}])
    examples, _, wheres = load_source(cfg.datasets[0], cfg, 0)
    renderer = build_renderer(tok, cfg)
    whole = build_renderer(tok, cfg.model_copy(update={"max_length": 1 << 20}))
    checked = 0
    for conv, where, out in zip(examples, wheres, renderer.render_many(examples, wheres)):
        if isinstance(out, SkipSample) or not out.truncated:
            continue
        users = [i for i, m in enumerate(conv.messages) if m.role == "user"]
        prefixes = [conv.messages[:i] for i in users[1:]]
        shorter = [whole.render(dataclasses.replace(conv, messages=p)) for p in prefixes]
        assert any((s.input_ids, s.labels) == (out.input_ids, out.labels) for s in shorter), (
            f"{where}: not a whole-exchange prefix"
        )
        checked += 1
    assert checked > 3
