"""Images through the OpenAI-compatible server, driven by the official ``openai`` client.

The served model is the tiny LLaVA with its language model and projector sharpened (so greedy
answers vary token to token and depend on the image), loaded from a checkpoint folder. Answers
are checked against the engine called directly and against plain ``transformers`` ``generate``
on the processor's inputs.
"""

from __future__ import annotations

import base64
import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import torch

from tunesmith.infer.engine import Engine, GenParams
from tunesmith.infer.server import BackgroundServer, Limits, create_app

KEY = "test-key"
MAX = 12
QUESTION = "What colour is this?"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def png(path: Path, rgb: tuple[int, int, int], size: int = 32) -> Path:
    from PIL import Image

    Image.new("RGB", (size, size), rgb).save(path)
    return path


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def ask(url: str, text: str = QUESTION) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": text},
            ],
        }
    ]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("images")
    return {
        "red": png(root / "red.png", (220, 20, 20)),
        "blue": png(root / "blue.png", (20, 20, 220)),
        "green": png(root / "green.png", (20, 200, 20), 48),
    }


@pytest.fixture(scope="module")
def engine(sharp_llava_dir: Path) -> Iterator[Engine]:
    eng = Engine.load(str(sharp_llava_dir))
    yield eng
    eng.close()


def start(engine: Engine, **limits: Any) -> tuple[BackgroundServer, openai.OpenAI]:
    srv = BackgroundServer(create_app(engine, api_key=KEY, limits=Limits(max_tokens=64, **limits)))
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=KEY, max_retries=0, timeout=60)
    return srv, client


@pytest.fixture(scope="module")
def served(
    engine: Engine, images: dict[str, Path]
) -> Iterator[tuple[BackgroundServer, openai.OpenAI]]:
    srv, client = start(engine, max_images=3, image_dirs=(str(images["red"].parent),))
    yield srv, client
    srv.stop()


@pytest.fixture(scope="module")
def client(served: tuple[BackgroundServer, openai.OpenAI]) -> openai.OpenAI:
    return served[1]


@pytest.fixture(scope="module")
def model(client: openai.OpenAI, sharp_llava_dir: Path) -> str:
    (name,) = [m.id for m in client.models.list()]
    assert name == sharp_llava_dir.name  # the folder's name, not its path
    return name


def chat(client: openai.OpenAI, model: str, messages: list[dict[str, Any]], **kw: Any) -> Any:
    return client.chat.completions.create(
        model=model, messages=messages, temperature=0, max_tokens=MAX, **kw
    )


def hf_generate(engine: Engine, image: Path) -> str:
    """Plain ``transformers`` greedy ``generate`` on the processor's inputs (as in training)."""
    from tunesmith.data.images import load_image
    from tunesmith.model.multimodal import prepare_inputs

    msgs = [{"role": "user", "content": "<image>" + QUESTION}]
    inputs = prepare_inputs(engine.processor, msgs, [load_image(str(image))])
    with torch.no_grad():
        out = engine.model.generate(**inputs, max_new_tokens=MAX, do_sample=False)
    return engine.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_image_answers_equal_the_engine_and_transformers(
    client: openai.OpenAI, engine: Engine, model: str, images: dict[str, Path]
) -> None:
    params = GenParams(max_new_tokens=MAX)
    for name in ("red", "green"):
        path = images[name]
        direct = engine.generate(
            [[{"role": "user", "content": QUESTION}]], params, images=[[path]]
        )[0]
        assert direct == hf_generate(engine, path).strip()
        ids, _ = engine.prompt_inputs(
            [{"role": "user", "content": "<image>" + QUESTION}], images=[path]
        )
        for url in (data_uri(path), str(path), f"file://{path}"):
            r = chat(client, model, ask(url))
            assert r.choices[0].message.content.strip() == direct, url
            assert r.usage.prompt_tokens == len(ids)  # the 16 image tokens count
        assert ids.count(engine.runner.image_token_id) == 16


def test_different_images_reach_the_model(
    client: openai.OpenAI, engine: Engine, model: str, images: dict[str, Path]
) -> None:
    answers = {
        n: chat(client, model, ask(data_uri(p))).choices[0].message.content
        for n, p in images.items()
    }
    assert len(set(answers.values())) == 3
    msgs = [{"role": "user", "content": "<image>" + QUESTION}]
    first = []
    for name in ("red", "blue"):
        ids, pixels = engine.prompt_inputs(msgs, images=[images[name]])
        first.append(engine.runner.prefill([ids], [None], [pixels])[0][0])
    assert not torch.allclose(first[0], first[1])


def test_streaming_n_and_usage(
    client: openai.OpenAI, engine: Engine, model: str, images: dict[str, Path]
) -> None:
    messages = ask(data_uri(images["blue"]))
    whole = chat(client, model, messages).choices[0].message.content
    chunks = list(
        chat(client, model, messages, stream=True, stream_options={"include_usage": True})
    )
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(deltas) == whole and len([d for d in deltas if d]) > 1
    assert chunks[-1].usage.prompt_tokens == len(
        engine.prompt_inputs(
            [{"role": "user", "content": "<image>" + QUESTION}], images=[images["blue"]]
        )[0]
    )
    r = chat(client, model, messages, n=2)
    assert [c.message.content for c in r.choices] == [whole, whole]
    assert r.usage.completion_tokens == 2 * chunks[-1].usage.completion_tokens
    # Two images in one message, and an image in a later turn, keep their order.
    two = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "First "},
                {"type": "image_url", "image_url": {"url": str(images["red"])}},
                {"type": "text", "text": " then "},
                {"type": "image_url", "image_url": {"url": str(images["green"])}},
            ],
        },
        {"role": "assistant", "content": "ok"},
        *ask(str(images["blue"]), "And now?"),
    ]
    direct = engine.generate(
        [
            [
                {"role": "user", "content": "First <image> then <image>"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "<image>And now?"},
            ]
        ],
        GenParams(max_new_tokens=MAX),
        images=[[images["red"], images["green"], images["blue"]]],
    )[0]
    assert chat(client, model, two).choices[0].message.content.strip() == direct


def test_bad_image_requests_are_400s(
    client: openai.OpenAI, model: str, images: dict[str, Path], tmp_path: Path
) -> None:
    def refused(messages: list[dict[str, Any]]) -> dict[str, Any]:
        with pytest.raises(openai.BadRequestError) as info:
            chat(client, model, messages)
        assert set(info.value.body) >= {"message", "type", "param", "code"}
        return info.value.body

    body = refused(ask("https://example.com/cat.png"))
    assert body["param"] == "messages[0].content[0]" and body["code"] == "remote_image_refused"
    bad_png = images["red"].parent / "bad.png"  # in the server's image directory
    bad_png.write_bytes(b"not a png")
    bad = ask(str(images["red"]))
    bad[0]["content"].append({"type": "image_url", "image_url": {"url": str(bad_png)}})
    body = refused(bad)
    assert body["param"] == "messages[0].content[2]" and "unreadable" in body["message"]
    body = refused(ask(str(images["red"].parent / "missing.png")))
    assert body["param"] == "messages[0].content[0]" and "no such file" in body["message"]
    body = refused(ask("data:image/png;base64,????"))
    assert "base64" in body["message"]
    huge = tmp_path / "huge.png"
    from PIL import Image

    Image.new("1", (5000, 5000)).save(huge)  # 25 Mpx in a few KiB
    started = time.monotonic()
    body = refused(ask(data_uri(huge)))
    assert body["code"] == "image_too_large" and "5000x5000" in body["message"]
    assert time.monotonic() - started < 5  # refused from the header, never decoded
    many = ask(data_uri(images["red"]))
    many[0]["content"] = many[0]["content"][:1] * 4
    body = refused(many)
    assert body["code"] == "too_many_images" and "3 per request" in body["message"]


def test_server_side_files_only_under_image_dirs(
    engine: Engine, model: str, images: dict[str, Path], client: openai.OpenAI, tmp_path: Path
) -> None:
    """No --image-dir: base64 only. With one: files under it, and nothing said of others."""
    secret = png(tmp_path / "secret.png", (1, 2, 3))
    (images["red"].parent / "link.png").symlink_to(secret)
    inside = chat(client, model, ask(str(images["red"])))
    assert inside.choices[0].message.content

    def refusal(c: openai.OpenAI, url: str) -> str:
        with pytest.raises(openai.BadRequestError) as info:
            chat(c, model, ask(url))
        assert info.value.body["code"] == "local_image_refused"
        return info.value.body["message"].replace(url, "URL")

    outside = [
        str(secret),
        str(tmp_path / "missing.png"),
        f"file://{secret}",
        str(images["red"].parent / ".." / secret.parent.name / "secret.png"),
        str(images["red"].parent / "link.png"),
        "/etc/passwd",
    ]
    assert len({refusal(client, u) for u in outside}) == 1
    srv, closed = start(engine)  # the default: no server-side files at all
    try:
        assert len({refusal(closed, u) for u in [*outside, str(images["red"])]}) == 1
        got = chat(closed, model, ask(data_uri(images["red"]))).choices[0].message.content
        assert got == inside.choices[0].message.content
    finally:
        srv.stop()


def test_remote_images_only_with_the_opt_in(
    engine: Engine, model: str, images: dict[str, Path], client: openai.OpenAI
) -> None:
    """``--allow-remote-images``: an http URL (a loopback file server here) is fetched."""
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(images["red"].parent)
    )
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{files.server_address[1]}/red.png"
    srv, open_client = start(engine, allow_remote_images=True)
    try:
        with pytest.raises(openai.BadRequestError):
            chat(client, model, ask(url))
        got = chat(open_client, model, ask(url)).choices[0].message.content
        assert got == chat(client, model, ask(data_uri(images["red"]))).choices[0].message.content
    finally:
        srv.stop()
        files.shutdown()


def test_images_to_a_text_only_model_are_400s(tiny_qwen2: Path, images: dict[str, Path]) -> None:
    text = Engine.load(str(tiny_qwen2))
    srv, client = start(text)
    try:
        with pytest.raises(openai.BadRequestError) as info:
            chat(client, tiny_qwen2.name, ask(data_uri(images["red"])))
        body = info.value.body
        assert body["param"] == "messages[0].content[0]" and "text-only" in body["message"]
        assert tiny_qwen2.name in body["message"]
    finally:
        srv.stop()
        text.close()


def test_concurrent_image_requests_batch_together(
    served: tuple[BackgroundServer, openai.OpenAI],
    engine: Engine,
    model: str,
    images: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    srv, client = served
    requests = [
        ask(data_uri(images["red"])),
        ask(str(images["green"]), "Describe this picture in a few words, please."),
    ]
    alone = [chat(client, model, m).choices[0].message.content for m in requests]
    sizes: list[int] = []
    decode = engine.runner.decode

    def spy(tokens: Any, *args: Any) -> Any:
        sizes.append(len(tokens))
        return decode(tokens, *args)

    monkeypatch.setattr(engine.runner, "decode", spy)
    results: dict[int, str] = {}

    def run(i: int) -> None:
        results[i] = chat(client, model, requests[i]).choices[0].message.content

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    with engine.runner.lock:  # the model is busy: both requests arrive before a token is made
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while srv.app.state.gate.active < 2:
            assert time.monotonic() < deadline, "the requests never arrived"
            time.sleep(0.01)
        time.sleep(0.1)
    for t in threads:
        t.join()
    assert [results[0], results[1]] == alone
    assert max(sizes) == 2  # decoded in one batch
