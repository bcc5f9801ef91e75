"""The engine end to end on small files: counts by reason, val split, stages, options reaching the
renderer, packing efficiency, and config-level problems as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config.schema import DataConfig
from tunesmith.data.engine import build_renderer, prepare, write_report
from tunesmith.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def tok(tiny_qwen2: Path) -> Any:
    from tunesmith.model.loader import load_tokenizer

    return load_tokenizer(str(tiny_qwen2))


def write(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return str(path)


def qa(i: int, words: int = 3) -> dict[str, str]:
    return {"instruction": f"question {i} " + "x " * words, "output": f"answer {i}"}


def cfg_for(*datasets: dict[str, Any], **kw: Any) -> DataConfig:
    kw.setdefault("cache", False)
    return DataConfig(datasets=list(datasets), **kw)


def run(tok: Any, cfg: DataConfig, template: str | None = None, stage: str = "sft") -> Any:
    return prepare(cfg, build_renderer(tok, cfg, template, stage=stage), stage=stage)


def test_counts_skips_val_and_report(tok: Any, tmp_path: Path) -> None:
    rows = [qa(i) for i in range(20)] + [qa(99, words=200)]
    path = write(tmp_path / "a.jsonl", rows)
    cfg = cfg_for({"path": path}, max_length=64, val_size=0.1, truncation="drop")
    data = run(tok, cfg)
    (src,) = data.report.as_dict()["datasets"]
    assert (src["rows_read"], src["rows_kept"], src["rows_skipped"]) == (21, 20, 1)
    assert src["skipped_by_reason"] == {"longer than max_length": 1}
    assert (src["val_samples"], src["samples_in_mix"], len(data.val), len(data.train)) == (
        2,
        18,
        2,
        18,
    )
    assert all(set(s) == {"input_ids", "labels", "weights"} for s in data.train + data.val)
    assert data.report.packing_efficiency is not None and 0 < data.report.packing_efficiency <= 1
    path = write_report(data.report, tmp_path)
    text = path.read_text("utf-8")
    assert "longer than max_length — 1" in text and "Packing:" in text
    assert data.report.length_stats()["max"] <= 64


def test_loss_weights_from_config_and_per_dataset(tok: Any, tmp_path: Path) -> None:
    react = [{"instruction": "go", "output": "Thought: t\nAction: a[1]\nObservation: o"}]
    p = write(tmp_path / "r.jsonl", react)
    data = run(tok, cfg_for({"path": p}, loss_weights={"Action:": 2, "Observation:": 0}))
    (w,) = [s["weights"] for s in data.train]
    assert w is not None and max(w) == 2.0
    data = run(tok, cfg_for({"path": p, "loss_weights": {"Thought:": 3}}, loss_weights={"A:": 2}))
    assert max(data.train[0]["weights"]) == 3.0
    with pytest.raises(ValueError, match="weights >= 0"):
        cfg_for({"path": p}, loss_weights={"Action:": -1})


def test_stages_text_and_preference(tok: Any, tmp_path: Path) -> None:
    docs = [{"text": "lorem ipsum " * 30}, {"text": "dolor"}]
    text = write(tmp_path / "t.jsonl", docs)
    data = run(tok, cfg_for({"path": text}, max_length=32), stage="pt")
    sizes = [len(tok(d["text"], add_special_tokens=False)["input_ids"]) + 1 for d in docs]
    assert len(data.train) == sum(-(-n // 32) for n in sizes)  # 32-token chunks, eos appended
    assert all(s["labels"] == s["input_ids"] for s in data.train)
    assert sorted(len(s["input_ids"]) for s in data.train)[-1] == 32
    mixed = write(tmp_path / "m.jsonl", [docs[0], qa(1)])  # formats detected per record
    data = run(tok, cfg_for({"path": mixed}))
    (src,) = data.report.as_dict()["datasets"]
    assert src["skipped_by_reason"] == {"plain text in an SFT mix (use method.stage: pt)": 1}
    assert src["samples_in_mix"] == 1
    pref = write(tmp_path / "p.jsonl", [{"instruction": "q", "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError) as err:
        run(tok, cfg_for({"path": pref}))
    assert str(err.value) == (
        f"{pref}:1 (data.datasets.0, {pref}): the source holds preference pairs, which "
        "method.stage 'sft' cannot train; set method.stage to dpo, orpo, simpo or kto, or use "
        "chat/instruction data for this stage"
    )
    pairs = run(tok, cfg_for({"path": pref}), stage="dpo")  # the same entry point serves dpo
    assert pairs.train[0]["chosen"] and pairs.report.samples == 1


def test_config_level_problems_are_one_line_errors(tok: Any, tmp_path: Path) -> None:
    good = write(tmp_path / "g.jsonl", [qa(1)])
    with pytest.raises(ConfigError) as cerr:
        build_renderer(tok, cfg_for({"path": good}), "qwen25")
    assert str(cerr.value).startswith("model.template: unknown chat template 'qwen25'; did you")
    ident = write(tmp_path / "i.jsonl", [{"instruction": "who?", "output": "I am {{name}}."}])
    with pytest.raises(DataError) as err:
        run(tok, cfg_for({"path": good}, {"path": ident}))
    assert str(err.value) == (
        f"data.datasets.1 ({ident}): samples contain {{{{name}}}}/{{{{author}}}} placeholders; "
        "set data.identity.name and data.identity.author"
    )
    empty = tmp_path / "empty.json"
    empty.write_text("[]", "utf-8")
    with pytest.raises(DataError, match=r"empty\.json: no records found"):
        run(tok, cfg_for({"path": str(empty)}))
    long = write(tmp_path / "long.jsonl", [qa(1, words=300)])
    with pytest.raises(DataError) as err:
        run(tok, cfg_for({"path": good}, {"path": long}, max_length=32, truncation="drop"))
    assert str(err.value) == (
        f"data.datasets.1 ({long}): no usable samples (1 rows read; skipped longer than "
        "max_length: 1); check max_length and the data"
    )
    tools = write(
        tmp_path / "tools.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "yo"},
                ],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            }
        ],
    )
    with pytest.raises(DataError) as err:
        run(tok, cfg_for({"path": tools}), "llama3")
    assert str(err.value) == (
        f"{tools}:1: template 'llama3' does not render tool definitions; use a tool-capable "
        "template (see `tunesmith data templates`)"
    )
    for e in (cerr.value, err.value):
        assert "\n" not in str(e)


def test_identity_values_are_substituted(tok: Any, tmp_path: Path) -> None:
    ident = write(
        tmp_path / "i.jsonl",
        [
            {"instruction": "who?", "output": "I am {{name}} by {{author}}."},
            {"instruction": "你是谁？", "output": "我是{{NAME}}。"},
        ],
    )
    cfg = cfg_for(
        {"path": ident, "shuffle": False},
        identity={"name": {"en": "Nova", "zh": "诺瓦"}, "author": "Acme"},
    )
    data = run(tok, cfg)
    texts = [tok.decode(s["input_ids"]) for s in data.train]
    assert any("I am Nova by Acme." in t for t in texts)
    assert any("我是诺瓦。" in t for t in texts)
