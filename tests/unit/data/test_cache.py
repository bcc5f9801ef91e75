"""The on-disk cache of tokenised sources: hits, misses on every input that matters, none on
mixing-only changes, and the time saved in the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config.schema import DataConfig
from tunesmith.data import cache
from tunesmith.data.engine import build_renderer, prepare
from tunesmith.data.render import Rendered


@pytest.fixture(scope="module")
def tok(tiny_qwen2: Path) -> Any:
    from tunesmith.model.loader import load_tokenizer

    return load_tokenizer(str(tiny_qwen2))


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "data"


def write(path: Path, n: int, answer: str = "answer") -> str:
    rows = [{"instruction": f"question {i}", "output": f"{answer} {i}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return str(path)


def run(tok: Any, template: str | None = None, **data: Any) -> Any:
    cfg = DataConfig(**data)
    return prepare(cfg, build_renderer(tok, cfg, template))


def states(data: Any) -> list[str]:
    return [s.cache for s in data.report.sources]


def test_second_run_is_served_from_the_cache(tok: Any, tmp_path: Path, cache_dir: Path) -> None:
    p = write(tmp_path / "a.jsonl", 40)
    first = run(tok, datasets=[{"path": p}], max_length=64)
    assert states(first) == ["miss"]
    assert len(list(cache_dir.rglob("*.npz"))) == 1
    second = run(tok, datasets=[{"path": p}], max_length=64)
    assert states(second) == ["hit"]
    assert second.train == first.train and second.val == first.val
    assert second.report.as_dict()["datasets"][0]["rows_read"] == 40
    assert second.report.time_saved >= 0
    assert second.report.sources[0].time_saved == pytest.approx(
        max(0.0, first.report.sources[0].seconds - second.report.sources[0].seconds), abs=1e-6
    )
    assert "1 of 1 source(s) from the cache, saving" in second.report.markdown()


def test_every_input_that_matters_is_in_the_key(tok: Any, tmp_path: Path, cache_dir: Path) -> None:
    p = write(tmp_path / "a.jsonl", 10)
    base = {"datasets": [{"path": p}], "max_length": 256}
    assert states(run(tok, **base)) == ["miss"]
    assert states(run(tok, **base)) == ["hit"]
    # mixing is redone from cached samples: not part of the key
    mix = {**base, "datasets": [{"path": p, "samples": 25, "shuffle": False}], "seed": 7}
    assert states(run(tok, **mix)) == ["hit"]
    assert states(run(tok, **{**base, "max_length": 512})) == ["miss"]
    assert states(run(tok, "llama3", **base)) == ["miss"]
    assert states(run(tok, **{**base, "loss_weights": {"answer": 2}})) == ["miss"]
    assert states(run(tok, **{**base, "train_on_prompt": True})) == ["miss"]
    write(tmp_path / "a.jsonl", 10, answer="reply")  # same name, new contents
    data = run(tok, **base)
    assert states(data) == ["miss"]
    assert "reply" in tok.decode(data.train[0]["input_ids"])
    off = run(tok, **{**base, "cache": False})
    assert states(off) == ["off"]


def test_damaged_entry_is_a_miss_and_rewritten(tok: Any, tmp_path: Path, cache_dir: Path) -> None:
    p = write(tmp_path / "a.jsonl", 5)
    run(tok, datasets=[{"path": p}])
    (entry,) = cache_dir.rglob("*.npz")
    entry.write_bytes(b"not a zip")
    assert states(run(tok, datasets=[{"path": p}])) == ["miss"]
    assert states(run(tok, datasets=[{"path": p}])) == ["hit"]


def test_pack_round_trip_and_digests(tmp_path: Path) -> None:
    samples = [
        Rendered([1, 2, 3], [-100, 2, 3]),
        Rendered([4, 5], [4, -100], [2.0, 0.0], truncated=True),
        Rendered([], []),
    ]
    assert cache.unpack(cache.pack(samples)) == samples
    entry = cache.CachedSource(samples, rows_read=4, skipped={"too long": 1}, truncated=1)
    cache.save("ab" + "0" * 62, entry)
    assert cache.load("ab" + "0" * 62) == entry
    assert cache.load("cd" + "0" * 62) is None
    a = tmp_path / "d"
    a.mkdir()
    (a / "x.json").write_text("[]")
    d1 = cache.path_digest(a)
    (a / "y.json").write_text("[]")
    assert d1 != cache.path_digest(a) and cache.path_digest(tmp_path / "nope") is None
