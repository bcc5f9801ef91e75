"""Judge and consistency tasks on real engines: a local ``tunesmith serve`` is the judge.

The served judge is the tiny random Qwen2, so its replies are garbage: the task must count them
as unparsed (never crash), cache them, and send the key the server asks for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunesmith.config.schema import ConsistencySpec, JudgeSpec
from tunesmith.evaluate.base import EvalContext
from tunesmith.evaluate.judge import Judge, JudgeError
from tunesmith.evaluate.registry import run_tasks
from tunesmith.infer.engine import Engine
from tunesmith.infer.server import BackgroundServer, Limits, create_app

KEY = "judge-test-key"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def engine(qwen2_engine: Engine) -> Engine:
    return qwen2_engine


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[BackgroundServer]:
    limits = Limits(max_tokens=32, default_max_tokens=16)
    srv = BackgroundServer(create_app(engine, api_key=KEY, limits=limits))
    yield srv
    srv.stop()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def served_id(server: BackgroundServer) -> str:
    import httpx

    reply = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    return reply.json()["data"][0]["id"]


def test_judge_against_tunesmith_serve(
    engine: Engine, server: BackgroundServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TS_JUDGE_KEY", KEY)
    data = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"question": "What is the capital of France?", "reference": "Paris"},
            {"question": "中国的首都是哪里？", "reference": "北京"},
            {"question": "Name a colour."},
        ],
    )
    spec = JudgeSpec(
        data=str(data),
        url=f"{server.url}/v1",
        model=served_id(server),
        api_key_env="TS_JUDGE_KEY",
        max_new_tokens=8,
        judge_max_tokens=16,
        cache_dir=str(tmp_path / "cache"),
        backoff=0,
    )
    ctx = EvalContext(engine, batch_size=3, model="tiny")
    (first,) = run_tasks([spec], ctx, tmp_path / "eval")
    assert first.n == 3 and first.details["requests"] == 3 and first.details["cached"] == 0
    parsed = [r["score"] for r in first.rows if r["score"] is not None]
    assert first.details["parsed"] + first.details["unparsed"] == 3
    assert first.metrics["unparsed_rate"] == pytest.approx(first.details["unparsed"] / 3)
    assert all(1 <= s <= 10 for s in parsed)
    assert all(isinstance(r["judge_reply"], str) for r in first.rows)
    saved = json.loads((tmp_path / "eval" / "judge.json").read_text())
    assert saved["task"] == "judge" and KEY not in json.dumps(saved)
    # Again: every reply from the cache, nothing sent.
    again = Judge(spec).run(ctx)
    assert again.details["requests"] == 0 and again.details["cached"] == 3
    assert [r["judge_reply"] for r in again.rows] == [r["judge_reply"] for r in first.rows]
    # The wrong key is refused at once, with the fix named.
    monkeypatch.setenv("TS_JUDGE_KEY", "wrong")
    nocache = spec.model_copy(update={"cache": False})
    with pytest.raises(JudgeError, match=r"HTTP 401 .*api_key_env"):
        Judge(nocache).run(ctx)


def test_consistency_on_the_engine(engine: Engine, tmp_path: Path) -> None:
    data = write_jsonl(
        tmp_path / "q.jsonl",
        [{"question": "If it rains, what should I buy?", "reference": "an umbrella"}],
    )
    pairs = write_jsonl(
        tmp_path / "p.jsonl", [{"statement": "Ice is cold.", "negation": "Ice is not cold."}]
    )
    spec = ConsistencySpec(data=str(data), contradictions=str(pairs), variants=3, max_new_tokens=6)
    ctx = EvalContext(engine, batch_size=4, model="tiny")
    (result,) = run_tasks([spec], ctx, tmp_path / "eval")
    (again,) = run_tasks([spec], ctx, None)
    assert result.rows == again.rows  # greedy answers and seeded variants: deterministic
    assert len(result.rows[0]["variants"]) == 3
    assert 0 <= result.metrics["agreement"] <= 1
    assert result.metrics["contradiction_rate"] in (0.0, 1.0)
    assert result.rows[1]["parsed"][0] in ("yes", "no", "unclear")
