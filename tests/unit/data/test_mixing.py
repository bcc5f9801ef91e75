"""Mixing: ratios within one sample of the exact share, counts with seeded resampling."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config.schema import DataConfig
from tunesmith.data.mixing import draw, interleave, plan_mix

LF = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "llamafactory"


@pytest.mark.parametrize("total", [620, 1000, 777, 31, 3])
def test_ratio_1_2_0_1_within_one_sample(total: int) -> None:
    weights = [1.0, 2.0, 0.1]
    plan = plan_mix([300, 1000, 91], [None, None, None], weights, total)
    assert sum(plan.counts) == total
    for count, w in zip(plan.counts, weights):
        assert abs(count - total * w / 3.1) < 1
    if total == 620:
        assert plan.counts == [200, 400, 20]


def test_counts_ratios_and_whole_sources_combine() -> None:
    plan = plan_mix([10, 40, 7], [25, None, None], [None, 1.0, None])
    # counted: 25; weighted alone share the default total (its own size); neither: all rows
    assert plan.counts == [25, 40, 7]
    assert [plan.resampled(i) for i in range(3)] == [15, 0, 0]
    plan = plan_mix([10, 40], [None, None], [1.0, 3.0], total=100)
    assert plan.counts == [25, 75] and plan.resampled(0) == 15 and plan.resampled(1) == 35


def test_resampling_full_copies_then_a_seeded_draw_without_replacement() -> None:
    picked = draw(91, 200, random.Random(0), shuffle=False)
    # 2 full copies in order, then 18 distinct rows (no replacement) in index order
    assert picked[:182] == list(range(91)) * 2
    rest = picked[182:]
    assert len(rest) == 18 == len(set(rest)) and rest == sorted(rest)
    counts = Counter(picked)
    assert set(counts.values()) == {2, 3} and sum(v == 3 for v in counts.values()) == 18
    # seeded: same seed, same draw; another seed, another remainder
    assert draw(91, 200, random.Random(0), shuffle=False) == picked
    assert draw(91, 200, random.Random(1), shuffle=False)[182:] != rest
    # shuffled: the same multiset in another order
    mixed = draw(91, 200, random.Random(0))
    assert Counter(mixed) == counts and mixed != picked
    # fewer than the source: a subset without repeats
    sub = draw(50, 20, random.Random(3))
    assert len(sub) == 20 == len(set(sub)) and all(0 <= i < 50 for i in sub)
    assert draw(0, 5, random.Random(0)) == [] and draw(5, 0, random.Random(0)) == []


def test_interleave_keeps_every_pair_once() -> None:
    groups = [[0, 1, 1], [2], [0, 0]]
    pairs = interleave(groups, random.Random(0))
    assert Counter(pairs) == Counter([(0, 0), (0, 1), (0, 1), (1, 2), (2, 0), (2, 0)])


def test_engine_mix_1_2_0_1_and_report(tiny_qwen2: Path) -> None:
    """agent : general : self-cognition = 1 : 2 : 0.1 through the whole engine, with the report."""
    from tunesmith.data.engine import build_renderer, prepare
    from tunesmith.model.loader import load_tokenizer

    info = str(LF / "dataset_info.json")
    cfg = DataConfig(
        datasets=[
            {"from_info": info, "name": "glaive_toolcall_en_demo", "weight": 1},
            {"from_info": info, "name": "alpaca_en_demo", "weight": 2},
            {"from_info": info, "name": "identity", "weight": 0.1},
        ],
        identity={"name": "Nova", "author": "Acme"},
        max_length=1024,
        truncation="drop",
        total_samples=620,
    )
    tok = load_tokenizer(str(tiny_qwen2))
    data = prepare(cfg, build_renderer(tok, cfg))
    rows: dict[str, Any] = {d["name"]: d for d in data.report.as_dict()["datasets"]}
    assert [rows[n]["samples_in_mix"] for n in rows] == [200, 400, 20]
    assert len(data.train) == 620
    glaive = rows["glaive_toolcall_en_demo"]
    assert glaive["rows_read"] == 300
    assert glaive["rows_kept"] + glaive["rows_skipped"] == 300
    assert glaive["skipped_by_reason"] == {"longer than max_length": glaive["rows_skipped"]}
    assert glaive["resampled"] == max(0, 200 - glaive["rows_kept"])
    assert rows["identity"]["resampled"] == 0 and rows["identity"]["rows_kept"] == 91
    assert sum(r["trained_tokens"] for r in rows.values()) == data.report.trained_tokens
    assert data.report.trained_tokens == sum(
        sum(1 for lab in s["labels"][1:] if lab != -100) for s in data.train
    )
    md = data.report.markdown()
    assert "| identity | 91 | 91 | 0 | 0 | 20 | 0 | 0 | 3.2% |" in md
    assert "| alpaca_en_demo | 999 |" in md and "64.5%" in md
