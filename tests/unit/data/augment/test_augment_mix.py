"""data.augment: generated samples join the mix as a source, cached, by weight like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("networkx", reason="the fact graph is a networkx graph ([graph] extra)")

from tunesmith.config.schema import DataConfig
from tunesmith.data.augment.mix import expand, materialise
from tunesmith.data.sources import load_examples
from tunesmith.errors import DataError


def triples(tmp_path: Path) -> Path:
    rows = [
        {"subject": "Ann", "relation": "mentor", "object": "Bo"},
        {"subject": "Bo", "relation": "hometown", "object": "Cy"},
        {"subject": "Ann", "relation": "mentor", "object": "Bo"},
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_expand_appends_a_source_of_tagged_conversations(tmp_path: Path) -> None:
    cfg = DataConfig(
        datasets=[{"path": "builtin:facts_forward"}],
        augment=[{"triples": str(triples(tmp_path)), "kinds": ["reverse", "hop"], "weight": 2}],
    )
    out = expand(cfg, "sft")
    assert out.augment == [] and len(out.datasets) == 2
    ds = out.datasets[1]
    assert ds.weight == 2 and ds.samples is None
    assert ds.name == (
        f"augment 0: {tmp_path / 't.jsonl'} (reverse, hop; 4 samples from 2 facts, "
        "1 duplicate facts and 0 duplicate questions removed)"
    )
    rows = [json.loads(line) for line in Path(ds.path).read_text(encoding="utf-8").splitlines()]
    assert [
        (r["meta"]["kind"], r["messages"][0]["content"], r["messages"][1]["content"]) for r in rows
    ] == [
        ("reverse", "Who is the student of Bo?", "Ann."),
        ("reverse", "Who is the native of Cy?", "Bo."),
        ("hop", "What is the hometown of the mentor of Ann?", "Cy."),
        ("hop", "Who is the student of the native of Cy?", "Ann."),
    ]
    # The file reads as ordinary conversations (the canonical form), meta carried through.
    loaded = load_examples(ds.path)
    assert len(loaded.examples) == 4
    assert loaded.examples[0].messages[1].content == "Ann."


def test_materialise_is_cached_and_follows_the_input(tmp_path: Path) -> None:
    from tunesmith.config.schema import AugmentConfig

    path = triples(tmp_path)
    aug = AugmentConfig(triples=str(path), kinds=["forward"])
    first, _ = materialise(aug, 0)
    stamp = first.stat().st_mtime_ns
    again, _ = materialise(aug, 0)
    assert again == first and again.stat().st_mtime_ns == stamp  # not rewritten
    path.write_text(path.read_text() + '{"subject": "Eve", "relation": "mentor", "object": "Bo"}\n')
    changed, summary = materialise(aug, 0)
    assert changed != first
    assert "3 samples from 3 facts" in summary


def test_augment_refused_for_preference_stages_and_empty_output(tmp_path: Path) -> None:
    cfg = DataConfig(
        datasets=[{"path": "builtin:facts_forward"}],
        augment=[{"triples": str(triples(tmp_path))}],
    )
    with pytest.raises(DataError, match=r"method\.stage 'dpo' does not train"):
        expand(cfg, "dpo")
    only_hops = tmp_path / "one.jsonl"
    only_hops.write_text('{"subject": "A", "relation": "mentor", "object": "B"}\n')
    cfg = DataConfig(
        datasets=[{"path": "builtin:facts_forward"}],
        augment=[{"triples": str(only_hops), "kinds": ["hop"]}],
    )
    with pytest.raises(DataError, match=r"^data.augment.0 \(.*\): no samples of kinds hop"):
        expand(cfg, "sft")


def test_bad_triple_file_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"subject": "A", "relation": "mentor", "object": "B"}\n{"subject": "A"}\n')
    cfg = DataConfig(datasets=[{"path": "builtin:facts_forward"}], augment=[{"triples": str(bad)}])
    with pytest.raises(DataError, match=rf"^{bad}:2: missing column\(s\) relation, object"):
        expand(cfg, "sft")
