"""Judge task against a local fake OpenAI-compatible server: scores, retries, cache, key."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tunesmith.config.schema import EvalConfig, JudgeSpec
from tunesmith.errors import ConfigError
from tunesmith.evaluate.judge import Judge, JudgeClient, JudgeError, fill, parse_score
from tunesmith.evaluate.registry import run_tasks


class FakeJudge:
    """A chat-completions endpoint whose replies and failures the test chooses."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail: list[int] = []  # status codes returned (in order) before answering
        self.reply = lambda prompt: "Fine. Score: 7"
        self.delay = 0.0
        self.inflight = self.most_inflight = 0
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                if owner.fail:
                    self.send_response(owner.fail.pop(0))
                    self.end_headers()
                    self.wfile.write(b'{"error": "nope"}')
                    return
                with lock:
                    owner.inflight += 1
                    owner.most_inflight = max(owner.most_inflight, owner.inflight)
                time.sleep(owner.delay)
                with lock:
                    owner.inflight -= 1
                text = owner.reply(body["messages"][-1]["content"])
                out = {"choices": [{"message": {"role": "assistant", "content": text}}]}
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def judge() -> Iterator[FakeJudge]:
    fake = FakeJudge()
    yield fake
    fake.close()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("Good answer.\nScore: 8", 8.0),
        ("score=3, later Score: 9", 9.0),  # the last one
        ("**Rating:** 6.5", 6.5),
        ("I give it 7/10.", 7.0),
        ("7 out of 10", 7.0),
        ("  4 ", 4.0),
        ("评分：9", 9.0),
        ("Score: 11", None),  # out of range
        ("the the the 0 banana", None),
        ("", None),
    ],
)
def test_parse_score(reply: str, score: float | None) -> None:
    assert parse_score(reply, 1, 10) == score


def spec_for(judge: FakeJudge, tmp_path: Path, **kw: Any) -> JudgeSpec:
    data = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"question": "Capital of France?", "reference": "Paris"},
            {"question": "2+2?"},
        ],
    )
    fields = {"data": str(data), "url": judge.url, "model": "big", "backoff": 0.0}
    return JudgeSpec(**{**fields, "cache_dir": str(tmp_path / "cache"), **kw})


def test_scores_cache_and_key(
    judge: FakeJudge, tmp_path: Path, fake_ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUDGE_KEY", "sk-secret")
    judge.reply = lambda prompt: "Score: 9" if "Paris" in prompt else "no idea"
    spec = spec_for(judge, tmp_path, api_key_env="JUDGE_KEY")
    ctx = fake_ctx(lambda p: "Paris" if "France" in p else "5")
    result = Judge(spec).run(ctx)
    assert result.metrics == {"judge_score": 9.0, "unparsed_rate": 0.5}
    assert [r["score"] for r in result.rows] == [9.0, None]
    assert [r["cached"] for r in result.rows] == [False, False]
    assert len(judge.requests) == 2
    # Requests go out concurrently: find the first item's by its question.
    (first,) = [r for r in judge.requests if "France" in r["body"]["messages"][0]["content"]]
    assert first["path"] == "/v1/chat/completions"
    assert first["auth"] == "Bearer sk-secret"
    assert first["body"]["model"] == "big" and first["body"]["temperature"] == 0
    prompt = first["body"]["messages"][0]["content"]
    assert "Capital of France?" in prompt and "Paris" in prompt and "from 1 " in prompt
    # The same run again: every reply from the cache, no request.
    again = Judge(spec).run(ctx)
    assert len(judge.requests) == 2
    assert [r["cached"] for r in again.rows] == [True, True]
    assert again.metrics == result.metrics and again.details["requests"] == 0
    # A different answer is a different key.
    Judge(spec).run(fake_ctx(lambda p: "Lyon"))
    assert len(judge.requests) == 4
    # The key is never written into results.
    run_tasks([spec], ctx, tmp_path / "eval")
    written = (tmp_path / "eval" / "judge.json").read_text()
    written += (tmp_path / "eval" / "judge.predictions.jsonl").read_text()
    assert "sk-secret" not in written and "JUDGE_KEY" in written


def test_retries_on_5xx_then_succeeds(judge: FakeJudge) -> None:
    judge.fail = [503, 500]
    slept: list[float] = []
    client = JudgeClient(judge.url, "big", retries=3, backoff=0.5, sleep=slept.append)
    assert client.ask("hi") == "Fine. Score: 7"
    assert slept == [0.5, 1.0]  # doubling backoff
    assert client.requests == 3 and client.retried == 2


def test_gives_up_after_retries_and_refuses_4xx(judge: FakeJudge) -> None:
    judge.fail = [502] * 3
    client = JudgeClient(judge.url, "big", retries=2, backoff=0, sleep=lambda s: None)
    with pytest.raises(JudgeError, match=r"no answer after 3 tries \(HTTP 502\)"):
        client.ask("hi")
    judge.fail = [401]
    with pytest.raises(JudgeError, match=r"HTTP 401 .*api_key_env"):
        client.ask("hi")
    assert len(judge.requests) == 4  # a 401 is not retried


def test_unreachable_endpoint_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"judge\.url: 'localhost:8000' is not an http"):
        JudgeClient("localhost:8000", "big")
    client = JudgeClient("http://127.0.0.1:9/v1", "big", retries=1, sleep=lambda s: None)
    with pytest.raises(JudgeError, match=r"127.0.0.1:9/v1/chat/completions: no answer after 2"):
        client.ask("hi")


def test_missing_key_env_and_bad_rubric(
    judge: FakeJudge, tmp_path: Path, fake_ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    spec = spec_for(judge, tmp_path, api_key_env="NO_SUCH_KEY")
    with pytest.raises(ConfigError, match="environment variable NO_SUCH_KEY is not set"):
        Judge(spec).run(fake_ctx(lambda p: "x"))
    rubric = tmp_path / "rubric.txt"
    rubric.write_text("Rate {question}")
    with pytest.raises(ConfigError, match=r"rubric.txt: the rubric has no \{answer\}"):
        Judge(spec_for(judge, tmp_path, rubric=str(rubric))).run(fake_ctx(lambda p: "x"))
    assert judge.requests == []


def test_user_rubric_and_scale(judge: FakeJudge, tmp_path: Path, fake_ctx: Any) -> None:
    rubric = tmp_path / "rubric.txt"
    rubric.write_text("Q: {question}\nA: {answer}\nRef: {reference}\nGrade {min_score}-{max_score}")
    judge.reply = lambda prompt: "Score: 4"
    spec = spec_for(judge, tmp_path, rubric=str(rubric), min_score=0, max_score=5)
    result = Judge(spec).run(fake_ctx(lambda p: "ans"))
    sent = sorted(r["body"]["messages"][0]["content"] for r in judge.requests)  # any order
    assert sent[0] == "Q: 2+2?\nA: ans\nRef: \nGrade 0-5"
    assert result.metrics["judge_score"] == 4.0
    assert fill("{x} {y}", x=1) == "1 {y}"


def test_judge_spec_in_eval_config() -> None:
    cfg = EvalConfig(
        tasks=[{"type": "judge", "data": "q.jsonl", "url": "http://h/v1", "model": "m"}]
    )
    assert isinstance(cfg.tasks[0], JudgeSpec) and cfg.tasks[0].cache
    with pytest.raises(ValueError, match="min_score must be below max_score"):
        JudgeSpec(data="q", url="u", model="m", min_score=5, max_score=5)


def test_concurrent_requests_keep_order(judge: FakeJudge, tmp_path: Path, fake_ctx: Any) -> None:
    data = write_jsonl(tmp_path / "many.jsonl", [{"question": f"q{i}?"} for i in range(6)])
    judge.delay = 0.2
    number = re.compile(r"q(\d)\?")
    judge.reply = lambda prompt: "Score: " + str(int(number.findall(prompt)[-1]) + 1)
    spec = JudgeSpec(
        data=str(data), url=judge.url, model="big", concurrency=3, cache=False, backoff=0
    )
    result = Judge(spec).run(fake_ctx(lambda p: "a"))
    assert [r["score"] for r in result.rows] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert 2 <= judge.most_inflight <= 3  # overlapping, never above concurrency
    assert result.details["requests"] == 6
