"""``tunesmith data synth`` end to end against a local ``tunesmith serve`` of the tiny model (no
network): the served model answers and rephrases, the API key travels from the environment, the
output is canonical conversation data the data engine loads, and a rerun sends nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tunesmith.data.synth.config import load_synth_config
from tunesmith.data.synth.run import synthesise
from tunesmith.infer.engine import Engine
from tunesmith.infer.server import BackgroundServer, Limits, create_app

KEY = "synth-test-key"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def server(qwen2_engine: Engine) -> Iterator[BackgroundServer]:
    srv = BackgroundServer(
        create_app(qwen2_engine, api_key=KEY, limits=Limits(max_tokens=16, default_max_tokens=8))
    )
    yield srv
    srv.stop()


def test_synth_against_tunesmith_serve(
    server: BackgroundServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from tunesmith.data.sources import load_examples

    monkeypatch.setenv("TS_SYNTH_KEY", KEY)
    headers = {"Authorization": f"Bearer {KEY}"}
    model = httpx.get(f"{server.url}/v1/models", headers=headers).json()["data"][0]["id"]
    rows = [{"question": "What is the capital of France?"}, {"question": "中国的首都是哪里？"}]
    (tmp_path / "q.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8"
    )
    sample = {
        "messages": [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
        ]
    }
    (tmp_path / "s.jsonl").write_text(json.dumps(sample) + "\n", "utf-8")
    config = tmp_path / "synth.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "endpoint": {
                    "url": f"{server.url}/v1",
                    "model": model,
                    "api_key_env": "TS_SYNTH_KEY",
                    "max_tokens": 8,
                    "temperature": 0.0,
                    "concurrency": 2,
                    "backoff": 0,
                },
                "jobs": [
                    {"type": "answer", "data": "q.jsonl"},
                    {"type": "rephrase", "data": "s.jsonl", "n": 2},
                ],
                "filters": {"dedupe": False, "min_chars": 0},
                "out": "out/synth.jsonl",
                "cache_dir": "cache",
            }
        ),
        "utf-8",
    )
    cfg = load_synth_config(config)
    first, report = synthesise(cfg)
    teacher = report.usage["teacher"]
    assert teacher["requests"] == 4 and teacher["cached"] == 0
    assert teacher["completion_tokens"] > 0 and teacher["prompt_tokens"] > 0
    # Greedy replies of the random tiny model are gibberish but not empty: nothing is dropped.
    assert report.dropped == {} and report.written == 4
    assert [r["meta"]["kind"] for r in first] == ["answer", "answer", "rephrase", "rephrase"]
    assert [r["messages"][0]["content"] for r in first[:2]] == [r["question"] for r in rows]
    assert [r["messages"][1]["content"] for r in first[2:]] == ["Blue.", "Blue."]
    assert [r["meta"]["k"] for r in first[2:]] == [0, 1]
    assert all(r["meta"]["model"] == model and r["messages"][-1]["content"] for r in first)
    # The output is training data: the data engine reads it as conversations.
    loaded = load_examples(cfg.out)
    assert len(loaded.examples) == 4 and not loaded.skipped
    # A rerun costs nothing and gives the same rows.
    again, report = synthesise(load_synth_config(config))
    assert again == first
    assert report.usage["teacher"]["requests"] == 0 and report.usage["teacher"]["cached"] == 4
