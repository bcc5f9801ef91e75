"""The shared OpenAI-compatible client against a scripted local HTTP server (no network):
retries with doubling backoff on 5xx/429/refused connections, one-line errors for bad keys and
non-chat replies, the on-disk cache (a second run sends nothing), usage counts, bounded
concurrency in input order, and the API key from the environment."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tunesmith.errors import ConfigError
from tunesmith.remote import (
    ChatClient,
    RemoteError,
    ResponseCache,
    api_key_from_env,
    map_concurrent,
    request_key,
)


class Script:
    """What the stub answers: a queue of status codes first, then chat replies echoing the
    last user message; it records every request body and header it saw."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.delay = 0.0
        self.in_flight = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.raw: bytes | None = None


@pytest.fixture
def stub() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.bodies.append(body)
                script.auth.append(self.headers.get("Authorization"))
                status = script.statuses.pop(0) if script.statuses else 200
                script.in_flight += 1
                script.peak = max(script.peak, script.in_flight)
            time.sleep(script.delay)
            with script.lock:
                script.in_flight -= 1
            if status != 200:
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b'{"error": "scripted"}')
                return
            text = "echo: " + body["messages"][-1]["content"]
            reply = (
                script.raw
                or json.dumps(
                    {
                        "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 3},
                    }
                ).encode()
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", script
    server.shutdown()
    server.server_close()


def client(url: str, **kw: Any) -> tuple[ChatClient, list[float]]:
    waits: list[float] = []
    kw.setdefault("backoff", 0.5)
    return ChatClient(url, "m", sleep=waits.append, **kw), waits


def test_reply_usage_and_request_body(stub: tuple[str, Script]) -> None:
    url, script = stub
    c, _ = client(url, api_key="sekret")
    got = c.complete([{"role": "user", "content": "hi"}], temperature=0.0, max_tokens=5, seed=None)
    assert (got.text, got.prompt_tokens, got.completion_tokens) == ("echo: hi", 7, 3)
    assert got.finish_reason == "stop" and not got.cached
    # None parameters are left out of the body; the key is sent as a bearer token.
    assert script.bodies == [
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.0,
            "max_tokens": 5,
        }
    ]
    assert script.auth == ["Bearer sekret"]
    assert c.usage.to_json() == {
        "requests": 1,
        "retried": 0,
        "cached": 0,
        "prompt_tokens": 7,
        "completion_tokens": 3,
    }


def test_retries_with_doubling_backoff_then_succeeds(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.statuses = [503, 429, 500]
    c, waits = client(url, retries=3)
    assert c.ask("x") == "echo: x"
    assert waits == [0.5, 1.0, 2.0]
    assert c.usage.requests == 4 and c.usage.retried == 3


def test_gives_up_after_the_retries_in_one_line(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.statuses = [502, 502, 502]
    c, waits = client(url, retries=2, label="synth")
    with pytest.raises(RemoteError) as info:
        c.ask("x")
    text = str(info.value)
    assert len(text.splitlines()) == 1
    assert text.startswith(f"synth {url}/chat/completions: no answer after 3 tries (HTTP 502)")
    assert waits == [0.5, 1.0]


def test_a_bad_key_fails_at_once_naming_the_field(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.statuses = [401]
    c, waits = client(url, retries=5, key_hint="data.synth.api_key_env")
    with pytest.raises(RemoteError, match=r"HTTP 401 .*check data\.synth\.api_key_env"):
        c.ask("x")
    assert waits == [] and len(script.bodies) == 1  # a 4xx is not retried


def test_refused_connection_is_retried_and_named() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c, waits = client(f"http://127.0.0.1:{port}/v1", retries=1, timeout=2)
    with pytest.raises(RemoteError, match=r"no answer after 2 tries .*check that the server is up"):
        c.ask("x")
    assert waits == [0.5]


def test_a_reply_that_is_not_chat(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.raw = b'{"data": []}'
    c, _ = client(url)
    with pytest.raises(RemoteError, match=r"no choices\[0\]\.message\.content"):
        c.ask("x")
    script.raw = b"<html>"
    with pytest.raises(RemoteError, match="the reply is not JSON"):
        c.ask("x")


def test_cache_makes_a_second_run_send_nothing(stub: tuple[str, Script], tmp_path: Path) -> None:
    url, script = stub
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(4)]
    first, _ = client(url, cache=ResponseCache(tmp_path / "cache"))
    a = first.complete_many(prompts, concurrency=2, temperature=0.7)
    assert len(script.bodies) == 4 and first.usage.cached == 0
    # A new client (a rerun), even at another URL: the key is the request, not the endpoint.
    second = ChatClient(
        "http://127.0.0.1:9/v1", "m", cache=ResponseCache(tmp_path / "cache"), retries=0
    )
    b = second.complete_many(prompts, concurrency=2, temperature=0.7)
    assert len(script.bodies) == 4  # nothing more was sent
    assert [x.text for x in b] == [x.text for x in a] == [f"echo: q{i}" for i in range(4)]
    assert all(x.cached for x in b) and second.usage.to_json() == {
        "requests": 0,
        "retried": 0,
        "cached": 4,
        "prompt_tokens": 0,
        "completion_tokens": 0,
    }
    # Different sampling parameters are a different request.
    first.complete(prompts[0], temperature=0.1)
    assert len(script.bodies) == 5


def test_damaged_cache_entry_is_asked_again(stub: tuple[str, Script], tmp_path: Path) -> None:
    url, script = stub
    cache = ResponseCache(tmp_path)
    c, _ = client(url, cache=cache)
    messages = [{"role": "user", "content": "x"}]
    key = request_key(c.body(messages))
    path = tmp_path / key[:2] / f"{key}.json"
    path.parent.mkdir(parents=True)
    path.write_text("{cut off")
    assert c.complete(messages).text == "echo: x" and len(script.bodies) == 1
    assert json.loads(path.read_text())["text"] == "echo: x"  # repaired


def test_request_key_ignores_dict_order() -> None:
    assert request_key({"a": 1, "b": [1, 2]}) == request_key({"b": [1, 2], "a": 1})
    assert request_key({"a": 1}) != request_key({"a": 2})


def test_concurrency_is_bounded_and_order_kept(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.delay = 0.05
    c, _ = client(url)
    prompts = [[{"role": "user", "content": str(i)}] for i in range(8)]
    replies = c.complete_many(prompts, concurrency=3)
    assert [r.text for r in replies] == [f"echo: {i}" for i in range(8)]
    assert 2 <= script.peak <= 3


def test_map_concurrent_raises_the_first_error() -> None:
    def fn(x: int) -> int:
        if x == 2:
            raise ValueError("two")
        return x * 10

    assert map_concurrent(fn, [0, 1, 3], 2) == [0, 10, 30]
    assert map_concurrent(fn, [], 4) == []
    with pytest.raises(ValueError, match="two"):
        map_concurrent(fn, [0, 1, 2, 3], 2)


def test_key_from_env_and_url_check(monkeypatch: pytest.MonkeyPatch) -> None:
    assert api_key_from_env(None, "data.synth.api_key_env") is None
    monkeypatch.setenv("TS_TEST_KEY", "k")
    assert api_key_from_env("TS_TEST_KEY", "data.synth.api_key_env") == "k"
    monkeypatch.delenv("TS_TEST_KEY")
    with pytest.raises(ConfigError, match=r"data\.synth\.api_key_env: environment variable"):
        api_key_from_env("TS_TEST_KEY", "data.synth.api_key_env")
    with pytest.raises(ConfigError, match=r"data\.synth\.url: 'localhost:8000' is not an http"):
        ChatClient("localhost:8000", "m", url_field="data.synth.url")
