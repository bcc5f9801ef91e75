"""GRPO rewards: rules, user functions, the endpoint grader, and their weighted combination."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tunesmith.errors import ConfigError
from tunesmith.train.rl.endpoint import EndpointReward, endpoint_reward, parse_grade
from tunesmith.train.rl.rewards import (
    build_rewards,
    exact_reward,
    length_reward,
    numeric_reward,
    regex_reward,
    score,
)

PROMPT = [{"role": "user", "content": "What is 2 + 3?"}]


def spec(kind: str, **kw: Any) -> Any:
    from tunesmith.config.schema import RewardSpec

    return RewardSpec(kind=kind, **kw)


def test_exact_strips_and_casefolds_and_needs_an_answer() -> None:
    samples = [{"answer": "5"}, {"answer": "Odd"}, {"answer": "5"}]
    assert exact_reward(None, [" 5 ", "odd", "55"], samples, None) == [1.0, 1.0, 0.0]
    with pytest.raises(ConfigError, match=r"kind .exact. needs an answer; data\.jsonl:3"):
        exact_reward(None, ["5"], [{"answer": None, "where": "data.jsonl:3"}], None)


def test_numeric_partial_credit_by_hand() -> None:
    fn = numeric_reward()
    samples = [{"answer": "18"}] * 6 + [{"answer": "odd"}, {"answer": "odd"}, {"answer": "-2.5"}]
    texts = ["18", " 17", "21", "is 14.", "none", "", "Odd", "7", "-2"]
    # 1 / (1 + |pred - 18|): the first number counts; no number, 0; a non-numeric answer: exact
    assert fn(None, texts, samples, None) == [1.0, 0.5, 0.25, 0.2, 0.0, 0.0, 1.0, 0.0, 1 / 1.5]
    # scale 4: off by 4 halves the score
    assert numeric_reward(4.0)(None, ["22", "10"], [{"answer": "18"}] * 2, None) == [0.5, 1 / 3]
    with pytest.raises(ConfigError, match=r"needs an answer; data\.jsonl:2"):
        fn(None, ["5"], [{"answer": None, "where": "data.jsonl:2"}], None)
    (r,) = build_rewards([spec("numeric", scale=2.0)], max_new_tokens=4)
    assert r.name == "numeric" and r.fn(None, ["20"], [{"answer": "18"}], None) == [0.5]


def test_numeric_scale_rules() -> None:
    from pydantic import ValidationError

    import tunesmith

    def tree(**reward: Any) -> dict[str, Any]:
        return {
            "model": {"name": "builtin:tiny-qwen2"},
            "data": {"datasets": [{"path": "builtin:prefs_arith"}]},
            "method": {"stage": "grpo", "type": "lora", "grpo": {"rewards": [reward]}},
        }

    cfg = tunesmith.load_config(tree(kind="numeric", scale=3.0))
    assert cfg.method.grpo.rewards[0].scale == 3.0
    with pytest.raises(ConfigError, match=r"method.grpo.rewards.0.scale: only kind 'numeric'"):
        tunesmith.load_config(tree(kind="exact", scale=3.0))
    with pytest.raises(ValidationError, match="greater than 0"):
        spec("numeric", scale=0.0)


def test_regex_matches_from_the_start_and_bad_patterns_name_the_key() -> None:
    fn = regex_reward(r"\d+$", "method.grpo.rewards.1")
    assert fn(None, ["12", "x12", " 7 ", "7a"], None, None) == [1.0, 0.0, 1.0, 0.0]
    with pytest.raises(ConfigError, match=r"method.grpo.rewards.1.pattern '\(': "):
        regex_reward("(", "method.grpo.rewards.1")


def test_length_penalty_by_hand() -> None:
    # target 4, max 12: 0 up to 4 tokens, then -(n - 4) / 8
    fn = length_reward(4, 12)
    assert fn(None, None, None, [0, 4, 5, 8, 12]) == [0.0, 0.0, -0.125, -0.5, -1.0]


def test_function_reward_and_weighted_sum(tmp_path: Path) -> None:
    (tmp_path / "ts_reward_mod.py").write_text(
        "def digits(prompt, completion, sample):\n"
        "    assert prompt[-1]['role'] == 'user'\n"
        "    return sum(ch.isdigit() for ch in completion)\n"
        "def bad(prompt, completion, sample):\n"
        "    return 'high'\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        rewards = build_rewards(
            [
                spec("exact", weight=2.0),
                spec("function", function="ts_reward_mod:digits", weight=0.5),
                spec("length", target=1, weight=1.0),
            ],
            max_new_tokens=5,
        )
        assert [r.name for r in rewards] == ["exact", "function", "length"]
        total, each = score(
            rewards, [PROMPT] * 3, ["5", "123", "no"], [{"answer": "5"}] * 3, [1, 3, 5]
        )
        assert each == {
            "exact": [1.0, 0.0, 0.0],
            "function": [1.0, 3.0, 0.0],
            "length": [0.0, -0.5, -1.0],
        }
        assert total == pytest.approx([2.5, 1.0, -1.0])
        (bad,) = build_rewards([spec("function", function="ts_reward_mod:bad")], max_new_tokens=5)
        with pytest.raises(ConfigError, match="returned 'high', not a number"):
            score([bad], [PROMPT], ["x"], [{}], [1])
    finally:
        sys.path.remove(str(tmp_path))
    with pytest.raises(
        ConfigError, match=r"rewards.0.function: 'json' has no function 'ts_no_such'"
    ):
        build_rewards([spec("function", function="json:ts_no_such")], max_new_tokens=5)


def test_parse_grade() -> None:
    assert parse_grade("7") == pytest.approx(0.7)
    assert parse_grade("Grade: 10/10") == pytest.approx(1.0)
    assert parse_grade("12") == pytest.approx(1.0)  # clamped
    assert parse_grade("-3") == 0.0
    assert parse_grade("no idea") is None


@pytest.fixture
def grader() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local OpenAI-compatible server grading 9 when the answer equals the reference."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            user = body["messages"][-1]["content"]
            ref = user.split("Reference answer: ")[1].split("\n")[0]
            answer = user.split("Answer to grade: ")[1].split("\n")[0]
            text = "9" if answer == ref else ("3" if answer.isdigit() else "unsure")
            reply = {"choices": [{"message": {"content": text}, "finish_reason": "stop"}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()
    server.server_close()


def test_endpoint_reward_grades_through_the_client(
    grader: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = grader
    monkeypatch.setenv("TS_GRADER_KEY", "k")
    s = spec("endpoint", url=url, model="judge", api_key_env="TS_GRADER_KEY", weight=1.0)
    (reward,) = build_rewards([s], max_new_tokens=4)
    assert isinstance(reward.fn, EndpointReward)
    values = reward.fn([PROMPT] * 3, ["5", "4", "five"], [{"answer": "5"}] * 3, [1, 1, 1])
    assert values == pytest.approx([0.9, 0.3, 0.0])
    assert reward.fn.take_unparsed() == 1 and reward.fn.take_unparsed() == 0
    assert {b["model"] for b in seen} == {"judge"} and all(b["temperature"] == 0 for b in seen)
    assert "Question: What is 2 + 3?" in seen[0]["messages"][-1]["content"]


def test_endpoint_reward_needs_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TS_MISSING_KEY", raising=False)
    s = SimpleNamespace(url="http://127.0.0.1:9/v1", model="m", api_key_env="TS_MISSING_KEY")
    with pytest.raises(ConfigError, match=r"rewards\.2\.api_key_env: environment variable"):
        endpoint_reward(s, "method.grpo.rewards.2")
