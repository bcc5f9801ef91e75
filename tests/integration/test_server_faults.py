"""Bad requests against a busy server: each fails alone with a 400, every slot comes back.

Requests arrive while the model is busy (its lock held), so good and bad ones reach the server
in the same burst, as they would under load. The good ones must get the answers they get alone,
the bad ones a one-line 400 naming the field, and the count of requests in flight must return
to 0 whatever happened (errors, client disconnects, streams left early).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tunesmith.infer.engine import Engine
from tunesmith.infer.server import BackgroundServer, Limits, create_app

WHO = [{"role": "user", "content": "Who are you?"}]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def engine(qwen2_engine: Engine) -> Engine:
    return qwen2_engine


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[BackgroundServer]:
    srv = BackgroundServer(create_app(engine, limits=Limits(max_tokens=64)))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def model(server: BackgroundServer) -> str:
    return httpx.get(f"{server.url}/v1/models").json()["data"][0]["id"]


def active(srv: BackgroundServer) -> int:
    return srv.app.state.gate.active


def wait_idle(srv: BackgroundServer, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while active(srv) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert active(srv) == 0, "a concurrency slot was never given back"


def post(srv: BackgroundServer, path: str, body: Any, timeout: float = 30) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    return httpx.post(f"{srv.url}{path}", content=content, headers=headers, timeout=timeout)


def answer(r: httpx.Response) -> str:
    """The text of a (possibly streamed) chat or text completion."""
    assert r.status_code == 200, r.text
    if not r.text.startswith("data:"):
        choice = r.json()["choices"][0]
        return choice["message"]["content"] if "message" in choice else choice["text"]
    out = ""
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            ev = json.loads(line[6:])
            assert "error" not in ev, ev
            for c in ev["choices"]:
                out += (c.get("delta") or {}).get("content") or c.get("text") or ""
    return out


def chat(model: str, **kw: Any) -> tuple[str, dict[str, Any]]:
    return "/v1/chat/completions", {"model": model, "messages": WHO, "max_tokens": 8, **kw}


def text(model: str, **kw: Any) -> tuple[str, dict[str, Any]]:
    return "/v1/completions", {"model": model, "prompt": "Hello there", "max_tokens": 8, **kw}


def test_bad_requests_in_a_burst_fail_alone_and_free_every_slot(
    server: BackgroundServer, engine: Engine, model: str
) -> None:
    good = [
        chat(model, temperature=0),
        chat(model, temperature=0.9, seed=11, stream=True),
        text(model, temperature=0, prompt=["Hello there", "Once upon"]),
        text(model, temperature=0.7, seed=2**63 - 1, stream=True),
    ]
    bad = [
        (chat(model, temperature=1.0, seed=2**64), "seed"),
        (chat(model, temperature=1.0, seed=-(2**63) - 1, stream=True), "seed"),
        (text(model, prompt=""), "prompt"),
        (text(model, prompt=["Hello", ""], stream=True), "prompt"),
    ]
    alone = [answer(post(server, *g)) for g in good]
    results: dict[int, httpx.Response | BaseException] = {}

    def send(i: int, path: str, body: Any) -> None:
        try:
            results[i] = post(server, path, body, timeout=20)
        except BaseException as exc:  # the old server never answered these
            results[i] = exc

    calls = [*good, *(b for b, _ in bad)]
    threads = [threading.Thread(target=send, args=(i, *c)) for i, c in enumerate(calls)]
    with engine.runner.lock:  # the model is busy: the whole burst waits for one admission
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while active(server) < len(good):
            assert time.monotonic() < deadline, "the good requests never arrived"
            time.sleep(0.01)
        time.sleep(0.2)
    for t in threads:
        t.join(60)
    got = [results[i] for i in range(len(calls))]
    assert [answer(r) for r in got[: len(good)]] == alone  # type: ignore[arg-type]
    for r, (_, param) in zip(got[len(good) :], bad):
        assert isinstance(r, httpx.Response), r
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["param"] == param and err["type"] == "invalid_request_error"
        assert "\n" not in err["message"]
    wait_idle(server)
    assert answer(post(server, *good[0])) == alone[0]  # still serving


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda m: chat(m, seed=2**64), "seed"),
        (lambda m: chat(m, seed=-(2**63) - 1), "seed"),
        (lambda m: chat(m, seed=1.5), "seed"),
        (lambda m: chat(m, max_tokens=10**30), "max_tokens"),
        (lambda m: chat(m, max_completion_tokens=10**30), "max_tokens"),
        (lambda m: chat(m, max_tokens=0), "max_tokens"),
        (lambda m: chat(m, max_tokens=-1), "max_tokens"),
        (lambda m: chat(m, n=10**6), "n"),
        (lambda m: chat(m, n=-1), "n"),
        (lambda m: chat(m, temperature=-0.5), "temperature"),
        (lambda m: chat(m, top_p=0), "top_p"),
        (lambda m: chat(m, top_k=-1), "top_k"),
        (lambda m: chat(m, repetition_penalty=0), "repetition_penalty"),
        (lambda m: chat(m, repetition_penalty=1e-300), "repetition_penalty"),
        (lambda m: chat(m, presence_penalty=-3), "presence_penalty"),
        (lambda m: chat(m, frequency_penalty=1e308), "frequency_penalty"),
        (lambda m: chat(m, stop=[""]), "stop"),
        (lambda m: chat(m, stop=["a"] * 5), "stop"),
        (lambda m: chat(m, stop="x" * 257), "stop"),  # held-back checks cost its length squared
        (lambda m: chat(m, messages=[]), "messages"),
        (lambda m: text(m, prompt=""), "prompt"),
        (lambda m: text(m, prompt=[""]), "prompt"),
        (lambda m: text(m, prompt=[]), "prompt"),
        (lambda m: text(m, prompt=[1, 2, 3]), "prompt"),
        (lambda m: text(m, n=0), "n"),
        (lambda m: text(m, max_tokens=10**30), "max_tokens"),
        (lambda m: text(m, best_of=3), None),
    ],
)
def test_out_of_range_fields_are_400s_at_the_boundary(
    server: BackgroundServer,
    model: str,
    call: Callable[[str], tuple[str, dict[str, Any]]],
    param: str | None,
) -> None:
    for stream in (False, True):
        path, body = call(model)
        r = post(server, path, {**body, "stream": stream}, timeout=10)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and "\n" not in err["message"]
        if param is not None:
            assert (err["param"] or "").startswith(param), err
    wait_idle(server, timeout=2)


@pytest.mark.parametrize(
    ("field", "literal"),
    [
        ("temperature", "NaN"),
        ("top_p", "NaN"),
        ("temperature", "Infinity"),
        ("presence_penalty", "-Infinity"),
        ("repetition_penalty", "NaN"),
    ],
)
def test_non_finite_numbers_are_400s(
    server: BackgroundServer, model: str, field: str, literal: str
) -> None:
    path, body = chat(model)
    raw = json.dumps(body)[:-1] + f', "{field}": {literal}}}'
    r = post(server, path, raw.encode(), timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == field
    wait_idle(server, timeout=2)


def test_what_the_worker_refuses_is_a_400_for_that_request_only(
    server: BackgroundServer, engine: Engine, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the boundary (should a check there miss something), the worker's refusal is
    still that request's 400, streamed or not, and its neighbours are answered."""
    from tunesmith.infer import protocol

    real = protocol._Sampling.gen_params

    def slipped(self: Any, max_tokens: int, index: int = 0) -> Any:
        params = real(self, max_tokens, index)
        if self.seed == 7:
            params.seed = 2**64  # what the API boundary refuses, handed to the worker anyway
        return params

    monkeypatch.setattr(protocol._Sampling, "gen_params", slipped)
    good = chat(model, temperature=0)
    alone = answer(post(server, *good))
    calls = [good, chat(model, temperature=1.0, seed=7), text(model, seed=7, stream=True), good]
    results: dict[int, httpx.Response] = {}

    def send(i: int) -> None:
        results[i] = post(server, *calls[i], timeout=20)

    submitted = spy_requests(engine, monkeypatch)
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(calls))]
    with engine.runner.lock:  # refused ones end at once; the others wait for one prefill
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(submitted) < len(calls):
            assert time.monotonic() < deadline, "the requests never arrived"
            time.sleep(0.01)
    for t in threads:
        t.join(60)
    assert [answer(results[0]), answer(results[3])] == [alone, alone]
    r = results[1]
    assert r.status_code == 400 and r.json()["error"]["param"] == "seed", r.text
    streamed = [json.loads(x[6:]) for x in results[2].text.splitlines() if x.startswith("data: {")]
    assert streamed[-1]["error"]["param"] == "seed"
    assert streamed[-1]["error"]["type"] == "invalid_request_error"
    wait_idle(server)


def test_tiny_temperatures_are_greedy(server: BackgroundServer, model: str) -> None:
    """A temperature that underflows float32 answers greedily instead of sampling garbage."""
    greedy = answer(post(server, *chat(model, temperature=0)))
    assert answer(post(server, *chat(model, temperature=1e-300))) == greedy


def slow_decode(engine: Engine, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    decode = engine.runner.decode

    def slow(*args: Any) -> Any:
        time.sleep(seconds)
        return decode(*args)

    monkeypatch.setattr(engine.runner, "decode", slow)


def spy_requests(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The worker's ``Request`` objects of every submission from now on."""
    seen: list[Any] = []
    worker = engine.worker
    submit = worker.submit_many

    def spy(*args: Any, **kw: Any) -> Any:
        reqs = submit(*args, **kw)
        seen.extend(reqs)
        return reqs

    monkeypatch.setattr(worker, "submit_many", spy)
    return seen


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_cancels_its_generation_and_frees_its_slot(
    server: BackgroundServer,
    engine: Engine,
    model: str,
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
) -> None:
    slow_decode(engine, monkeypatch, 0.25)  # 64 tokens would take 16 s
    reqs = spy_requests(engine, monkeypatch)
    path, body = chat(model, max_tokens=64, temperature=1.0, seed=1, stream=stream)
    with httpx.Client(timeout=httpx.Timeout(30, read=1.0)) as client:
        if stream:
            with client.stream("POST", f"{server.url}{path}", json=body) as r:
                next(r.iter_lines())
        else:
            with pytest.raises(httpx.ReadTimeout):
                client.post(f"{server.url}{path}", json=body)
    left = time.monotonic()
    wait_idle(server, timeout=10)
    assert len(reqs) == 1 and reqs[0].cancelled
    while not reqs[0].done and time.monotonic() - left < 6:
        time.sleep(0.02)  # the worker drops it at its next step
    assert reqs[0].finish_reason == "cancelled" and time.monotonic() - left < 6


def test_many_clients_leaving_never_exhaust_the_slots(
    engine: Engine, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for 2 requests, 6 rounds of clients that leave early still leave room."""
    srv = BackgroundServer(create_app(engine, limits=Limits(max_tokens=64, max_concurrent=2)))
    try:
        slow_decode(engine, monkeypatch, 0.1)
        path, body = chat(model, max_tokens=64, temperature=1.0)
        for i in range(6):
            with httpx.Client(timeout=httpx.Timeout(30, read=0.3)) as client:
                if i % 2:
                    with client.stream("POST", f"{srv.url}{path}", json={**body, "stream": True}):
                        pass  # headers read, body never
                else:
                    with pytest.raises(httpx.ReadTimeout):
                        client.post(f"{srv.url}{path}", json=body)
        wait_idle(srv, timeout=10)
        monkeypatch.undo()
        assert post(srv, *chat(model, temperature=0)).status_code == 200
    finally:
        srv.stop()


def test_chat_n_is_held_to_the_sequence_limit(engine: Engine, model: str) -> None:
    srv = BackgroundServer(create_app(engine, limits=Limits(max_tokens=64, max_sequences=2)))
    try:
        r = post(srv, *chat(model, n=3, temperature=1.0))
        assert r.status_code == 400 and r.json()["error"]["param"] == "n", r.text
        assert post(srv, *chat(model, n=2, temperature=1.0)).status_code == 200
        wait_idle(srv, timeout=5)
    finally:
        srv.stop()
