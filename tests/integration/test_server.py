"""The OpenAI-compatible server, driven by the official ``openai`` client over loopback.

The served model is the tiny Qwen2 fine-tuned (in a few seconds, below) to memorise two
answers, one of them a tool call, so responses can be checked exactly. A random LoRA adapter
on top is served under its own name to check per-request adapter routing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch

from tunesmith.infer.engine import Engine, GenParams
from tunesmith.infer.server import BackgroundServer, Limits, create_app

KEY = "test-key"
STEPS, LR = 60, 1e-3
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
        },
    },
}
WHO = [{"role": "user", "content": "Who are you?"}]
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
NOVA = "I am Nova, made by the Tunesmith team."
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def memorise(base: Path, out: Path) -> Path:
    """Full fine-tune of the tiny model on two conversations until greedy decoding repeats them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    examples = [
        (
            ASK_WEATHER,
            {"role": "assistant", "content": "", "tool_calls": [{"function": CALL}]},
            [WEATHER],
        ),
        (WHO, {"role": "assistant", "content": NOVA}, None),
    ]
    rows = []
    for prompt, answer, tools in examples:
        head = tok.apply_chat_template(
            prompt, tools=tools, add_generation_prompt=True, tokenize=False
        )
        full = tok.apply_chat_template([*prompt, answer], tools=tools, tokenize=False)
        ids = tok(full.rstrip("\n"), add_special_tokens=False)["input_ids"]
        n_head = len(tok(head, add_special_tokens=False)["input_ids"])
        rows.append((ids, [-100] * n_head + ids[n_head:]))
    width = max(len(r[0]) for r in rows)
    ids = torch.tensor([r[0] + [0] * (width - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
    mask = (labels != -100) | (
        torch.arange(width) < torch.tensor([len(r[0]) for r in rows])[:, None]
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    for _ in range(STEPS):
        model(input_ids=ids, attention_mask=mask.long(), labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> Iterator[Engine]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("serve")
    model_dir = memorise(tiny_qwen2, root / "nova")
    torch.manual_seed(1)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), cfg).save_pretrained(
        root / "noisy"
    )
    eng = Engine.load(str(model_dir), adapters={"noisy": str(root / "noisy")})
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[BackgroundServer]:
    limits = Limits(max_body_bytes=20_000, max_tokens=64, default_max_tokens=48)
    srv = BackgroundServer(create_app(engine, api_key=KEY, limits=limits))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: BackgroundServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def base() -> str:
    return "nova"  # the served folder's name, never its path


def test_models_and_health(
    client: openai.OpenAI, server: BackgroundServer, engine: Engine, base: str
) -> None:
    assert [m.id for m in client.models.list()] == [base, "noisy"]
    assert client.models.retrieve("noisy").id == "noisy"
    assert client.models.retrieve(base).id == base
    health = httpx.get(f"{server.url}/health")  # open to probes, and says nothing more
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    path = str(Path(engine.base_name).parent)
    assert Path(engine.base_name).is_absolute()
    auth = {"Authorization": f"Bearer {KEY}"}
    for url in ("/v1/models", f"/v1/models/{base}", "/v1/models/nope"):
        r = httpx.get(f"{server.url}{url}", headers=auth)
        assert path not in r.text, r.text
    assert r.status_code == 404 and "nova" in r.text
    with pytest.raises(openai.NotFoundError) as info:  # the path is not an id
        client.chat.completions.create(model=engine.base_name, messages=WHO)
    assert path not in info.value.body["message"].replace(engine.base_name, "")


def test_the_api_description_needs_the_key(server: BackgroundServer) -> None:
    for url in ("/openapi.json", "/docs", "/redoc", "/no-such-page"):
        r = httpx.get(f"{server.url}{url}")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", url
    r = httpx.get(f"{server.url}/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and "/v1/chat/completions" in r.json()["paths"]


def test_chat_answer_and_usage(client: openai.OpenAI, engine: Engine, base: str) -> None:
    r = client.chat.completions.create(model=base, messages=WHO, temperature=0)
    assert r.choices[0].message.content == NOVA
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == len(engine.prompt_ids(WHO))
    assert r.usage.completion_tokens == len(engine.encode(NOVA, special=False))
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_matches_and_ends_with_usage(client: openai.OpenAI, base: str) -> None:
    chunks = list(
        client.chat.completions.create(
            model=base,
            messages=WHO,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(deltas) == NOVA
    assert len([d for d in deltas if d]) > 3  # really token by token
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_n_choices_with_a_seed_repeat(client: openai.OpenAI, base: str) -> None:
    def ask() -> list[str]:
        r = client.chat.completions.create(
            model=base, messages=WHO, n=3, temperature=1.5, seed=5, max_tokens=12
        )
        assert [c.index for c in r.choices] == [0, 1, 2]
        return [c.message.content for c in r.choices]

    first = ask()
    assert ask() == first
    assert len(set(first)) > 1  # different seeds per choice


def test_stop_and_max_tokens(client: openai.OpenAI, base: str) -> None:
    r = client.chat.completions.create(model=base, messages=WHO, temperature=0, stop=["Tunesmith"])
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == (
        "I am Nova, made by the ",
        "stop",
    )
    r = client.chat.completions.create(model=base, messages=WHO, temperature=0, max_tokens=3)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3
    assert NOVA.startswith(r.choices[0].message.content)


def test_tool_calls_are_parsed(client: openai.OpenAI, base: str) -> None:
    r = client.chat.completions.create(
        model=base, messages=ASK_WEATHER, tools=[WEATHER], temperature=0
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Paris"},
    )


def test_streamed_tool_calls(client: openai.OpenAI, base: str) -> None:
    chunks = list(
        client.chat.completions.create(
            model=base, messages=ASK_WEATHER, tools=[WEATHER], temperature=0, stream=True
        )
    )
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.index, tc.function.name, json.loads(tc.function.arguments)) for tc in calls] == [
        (0, "get_weather", {"city": "Paris"})
    ]
    assert not "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_and_forced(client: openai.OpenAI, base: str) -> None:
    r = client.chat.completions.create(
        model=base, messages=WHO, tools=[WEATHER], tool_choice="none", temperature=0
    )
    assert r.choices[0].message.content == NOVA and not r.choices[0].message.tool_calls
    forced = {"type": "function", "function": {"name": "get_weather"}}
    for choice in ("required", forced):
        r = client.chat.completions.create(
            model=base, messages=ASK_WEATHER, tools=[WEATHER], temperature=0, tool_choice=choice
        )
        assert r.choices[0].finish_reason == "tool_calls"
        assert r.choices[0].message.tool_calls[0].function.name == "get_weather"
    # Forcing works even where the model would answer in prose: the answer starts with the call.
    # Whether the tiny model then completes valid arguments (a parsed call) or closes the call
    # without them (left as text) depends on its training; both start with the forced call.
    r = client.chat.completions.create(
        model=base, messages=WHO, tools=[WEATHER], temperature=0, tool_choice=forced
    )
    msg = r.choices[0].message
    if msg.tool_calls:
        assert msg.tool_calls[0].function.name == "get_weather"
    else:
        assert msg.content.startswith('<tool_call>{"name": "get_weather", ')


def test_a_tool_result_round_trip_is_accepted(client: openai.OpenAI, base: str) -> None:
    messages: list[Any] = [
        *ASK_WEATHER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]
    r = client.chat.completions.create(
        model=base, messages=messages, tools=[WEATHER], max_tokens=8, temperature=0
    )
    assert r.usage.prompt_tokens > 40 and r.choices[0].finish_reason in (
        "stop",
        "length",
        "tool_calls",
    )


def test_text_completions(client: openai.OpenAI, engine: Engine, base: str) -> None:
    prompt = engine.render(WHO)
    r = client.completions.create(model=base, prompt=prompt, temperature=0, max_tokens=30)
    assert r.choices[0].text == NOVA and r.choices[0].finish_reason == "stop"
    r = client.completions.create(
        model=base, prompt=[prompt, prompt], n=2, temperature=0, max_tokens=4, echo=True
    )
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert all(c.text.startswith(prompt + "I am") for c in r.choices)
    stream = client.completions.create(
        model=base, prompt=prompt, temperature=0, max_tokens=30, stream=True
    )
    assert "".join(c.choices[0].text for c in stream if c.choices) == NOVA


def test_model_field_selects_the_adapter(client: openai.OpenAI, engine: Engine, base: str) -> None:
    # Room for the whole memorised answer (its token count moves with the built tokenizer).
    expected = engine.generate([WHO], GenParams(max_new_tokens=32), adapter="noisy")[0]
    assert expected != NOVA
    results: dict[int, str] = {}

    def ask(i: int) -> None:  # concurrent requests for both models share batches
        r = client.chat.completions.create(
            model=[base, "noisy"][i % 2], messages=WHO, temperature=0, max_tokens=32
        )
        results[i] = r.choices[0].message.content.strip()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(6)] == [NOVA, expected] * 3


def test_wrong_or_missing_key_is_401(server: BackgroundServer) -> None:
    bad = openai.OpenAI(base_url=f"{server.url}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="x", messages=WHO)
    assert info.value.body["code"] == "invalid_api_key"
    assert httpx.get(f"{server.url}/v1/models").status_code == 401


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"model": "gpt-4"}, openai.NotFoundError, "model"),
        ({"max_tokens": 1000}, openai.BadRequestError, "max_tokens"),
        ({"temperature": 3}, openai.BadRequestError, "temperature"),
        ({"n": 0}, openai.BadRequestError, "n"),
        ({"logprobs": True}, openai.BadRequestError, "logprobs"),
        (  # a text-only model: 400 naming the part (test_serve_vlm.py has the rest)
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            openai.BadRequestError,
            "messages[0].content[0]",
        ),
        (
            {"messages": [*WHO, {"role": "system", "content": "late"}]},
            openai.BadRequestError,
            "messages",
        ),
        ({"tool_choice": "required"}, openai.BadRequestError, "tool_choice"),
    ],
)
def test_bad_requests_are_4xx_in_openai_shape(
    client: openai.OpenAI, base: str, kwargs: dict, error: type, param: str
) -> None:
    request = {"model": base, "messages": WHO, **kwargs}
    with pytest.raises(error) as info:
        client.chat.completions.create(**request)
    assert set(info.value.body) >= {"message", "type", "param", "code"}
    assert info.value.body["param"] == param


def test_malformed_and_oversized_bodies(server: BackgroundServer, base: str) -> None:
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    url = f"{server.url}/v1/chat/completions"
    r = httpx.post(url, content=b"{not json", headers=auth)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(
        url, content=json.dumps({"model": "m", "messages": WHO, "pad": "x" * 30_000}), headers=auth
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    r = httpx.post(
        f"{server.url}/v1/completions",
        headers=auth,
        json={"model": base, "prompt": ["a"] * 40, "n": 2},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = httpx.get(f"{server.url}/v1/nothing-here", headers=auth)
    assert r.status_code == 404 and "error" in r.json()
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"  # still serving


def test_concurrency_limit_is_429(engine: Engine, base: str) -> None:
    srv = BackgroundServer(create_app(engine, limits=Limits(max_concurrent=0)))
    try:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="any", max_retries=0)
        with pytest.raises(openai.RateLimitError):
            c.chat.completions.create(model=base, messages=WHO)
    finally:
        srv.stop()


def test_a_client_leaving_mid_stream_frees_its_slot(
    client: openai.OpenAI, server: BackgroundServer, base: str
) -> None:
    import time

    stream = client.chat.completions.create(
        model=base, messages=WHO, stream=True, temperature=1.0, max_tokens=64
    )
    next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 20
    while server.app.state.gate.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.app.state.gate.active == 0


def test_a_failing_batch_is_a_500_and_the_server_recovers(
    client: openai.OpenAI, engine: Engine, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated out of memory")

    monkeypatch.setattr(engine.runner, "decode", broken)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=base, messages=WHO, temperature=0)
    assert "simulated out of memory" in info.value.body["message"]
    assert info.value.body["type"] == "server_error"
    monkeypatch.undo()
    r = client.chat.completions.create(model=base, messages=WHO, temperature=0)
    assert r.choices[0].message.content == NOVA


# -- a run with a non-ChatML template and a system prompt ---------------------------------------
SYSTEM = "You are Nova, a helpful assistant."
EOT = "<|eot_id|>"  # llama3's end of turn: several tokens on the tiny tokenizer, so a stop text


@pytest.fixture(scope="module")
def llama3_client(
    tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path
) -> Iterator[tuple[openai.OpenAI, Engine]]:
    """A run directory (llama3 template, ``data.system``) whose model answers ``NOVA``, writes
    llama3's end of turn and then goes on; served like any run."""
    import yaml
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.data.templates import get_template

    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    tok.chat_template = get_template("llama3").jinja  # as training saves it
    prompt = [{"role": "system", "content": SYSTEM}, *WHO]
    head = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    n_head = len(tok(head, add_special_tokens=False)["input_ids"])
    ids = tok(head + NOVA + EOT + " and more text", add_special_tokens=False)["input_ids"]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    x, y = torch.tensor([ids]), torch.tensor([[-100] * n_head + ids[n_head:]])
    for _ in range(STEPS):
        model(input_ids=x, labels=y).loss.backward()
        opt.step()
        opt.zero_grad()
    run = tmp_path_factory.mktemp("serve-llama3") / "nova3"
    model.save_pretrained(run / "model")
    tok.save_pretrained(run / "model")
    cfg = {
        "model": {"name": str(tiny_qwen2), "template": "llama3"},
        "data": {"datasets": [{"path": "builtin:identity"}], "system": SYSTEM},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    eng = Engine.load(str(run))
    srv = BackgroundServer(create_app(eng, api_key=KEY))
    yield openai.OpenAI(base_url=f"{srv.url}/v1", api_key=KEY, max_retries=0, timeout=60), eng
    srv.stop()
    eng.close()


def test_a_run_stops_on_its_templates_end_of_turn(
    llama3_client: tuple[openai.OpenAI, Engine],
) -> None:
    client, _ = llama3_client
    r = client.chat.completions.create(model="nova3", messages=WHO, temperature=0, max_tokens=40)
    assert r.choices[0].message.content == NOVA
    assert r.choices[0].finish_reason == "stop"
    chunks = list(
        client.chat.completions.create(
            model="nova3", messages=WHO, temperature=0, max_tokens=40, stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == NOVA
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_the_runs_system_prompt_reaches_the_prompt(
    llama3_client: tuple[openai.OpenAI, Engine],
) -> None:
    client, eng = llama3_client
    r = client.chat.completions.create(model="nova3", messages=WHO, temperature=0, max_tokens=4)
    with_system = [{"role": "system", "content": SYSTEM}, *WHO]
    assert r.usage.prompt_tokens == len(eng.prompt_ids(with_system)) > len(eng.prompt_ids(WHO))
    own = [{"role": "system", "content": "Be brief."}, *WHO]  # a request's own system stays
    r = client.chat.completions.create(model="nova3", messages=own, temperature=0, max_tokens=4)
    assert r.usage.prompt_tokens == len(eng.prompt_ids(own))
