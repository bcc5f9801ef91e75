"""Generation stops on the chat template's own end-of-turn strings, not a fixed list.

The tiny Qwen2 is fine-tuned (a few seconds) to answer one question and then write the
template's end-of-turn string followed by more text, for the llama3 and glm4 built-ins installed
on its tokenizer; on this tokenizer those strings are several tokens each, so only stopping on
the template's own strings ends the answer before them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import yaml

from tunesmith.data.templates import get_template
from tunesmith.infer.chat import answer_once
from tunesmith.infer.decode import Delta, Finished
from tunesmith.infer.engine import Engine, GenParams

ASK = [{"role": "user", "content": "Who are you?"}]
NOVA = "I am Nova, made by the Tunesmith team."
AFTER = " and then this should never be seen"
TEMPLATES = {"llama3": "<|eot_id|>", "glm4": "<|user|>"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> dict[str, Path]:
    """Run directories (``model/`` + ``config.yaml``), one per template, on one memorising model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    rows = []
    for name, end in TEMPLATES.items():
        assert len(tok(end, add_special_tokens=False)["input_ids"]) > 1  # text, not one token
        tok.chat_template = get_template(name).jinja
        head = tok.apply_chat_template(ASK, add_generation_prompt=True, tokenize=False)
        n_head = len(tok(head, add_special_tokens=False)["input_ids"])
        ids = tok(head + NOVA + end + AFTER, add_special_tokens=False)["input_ids"]
        rows.append((ids, [-100] * n_head + ids[n_head:]))
    width = max(len(r[0]) for r in rows)
    ids = torch.tensor([r[0] + [0] * (width - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
    mask = torch.arange(width) < torch.tensor([len(r[0]) for r in rows])[:, None]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(60):
        model(input_ids=ids, attention_mask=mask.long(), labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    root = tmp_path_factory.mktemp("template-stops")
    runs = {}
    for name in TEMPLATES:
        run = root / name
        model.save_pretrained(run / "model")
        tok.chat_template = get_template(name).jinja  # as training saves it
        tok.save_pretrained(run / "model")
        cfg = {
            "model": {"name": str(tiny_qwen2), "template": name},
            "data": {"datasets": [{"path": "builtin:identity"}]},
        }
        (run / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
        runs[name] = run
    return runs


@pytest.mark.parametrize("name", TEMPLATES)
@pytest.mark.parametrize("where", ["run", "model folder"])
def test_answers_stop_on_the_templates_end_of_turn(
    trained: dict[str, Path], name: str, where: str
) -> None:
    path = trained[name] if where == "run" else trained[name] / "model"
    engine = Engine.load(str(path), threads=1)
    params = GenParams(max_new_tokens=40)
    events = list(engine.events(ASK, params))
    text = "".join(e.text for e in events if isinstance(e, Delta))
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.reason == "stop"
    assert text.strip() == NOVA
    assert answer_once(engine, "Who are you?", params) == NOVA  # chat --prompt
    assert engine.generate([ASK], params) == [NOVA]
    assert TEMPLATES[name] in engine.stop_texts


def run_with_template_json(trained: Path, dest: Path, info: dict[str, Any]) -> Path:
    """A copy of the run ``trained`` (its ``model/`` linked) with ``template.json`` = ``info``."""
    dest.mkdir(parents=True)
    (dest / "model").symlink_to(trained / "model")
    (dest / "config.yaml").write_text((trained / "config.yaml").read_text(), encoding="utf-8")
    (dest / "template.json").write_text(json.dumps(info), encoding="utf-8")
    return dest


def chat_over_http(engine: Engine) -> dict[str, Any]:
    """One ``/v1/chat/completions`` answer of ``engine`` served by the real server."""
    from tunesmith.infer.server import BackgroundServer, create_app

    srv = BackgroundServer(create_app(engine))
    try:
        body = {"model": engine.model_names()[0], "messages": ASK, "temperature": 0}
        body["max_tokens"] = 40
        r = httpx.post(f"{srv.url}/v1/chat/completions", json=body, timeout=60)
        r.raise_for_status()
        return r.json()["choices"][0]
    finally:
        srv.stop()


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_json_stops_chat_and_server_on_the_templates_end_of_turn(
    trained: dict[str, Path], tmp_path: Path, name: str
) -> None:
    """What training writes: the template's own stops; chat and the server both end there."""
    stops = list(get_template(name).stop)
    info = {"template": name, "stops": stops, "system": None, "default_system": None}
    run = run_with_template_json(trained[name], tmp_path / name, info)
    engine = Engine.load(str(run), threads=1)
    assert engine.run is not None and engine.run.template is not None
    assert engine.run.template.stops == tuple(stops)
    assert TEMPLATES[name] in engine.stop_texts  # several tokens here: stops as text
    assert answer_once(engine, "Who are you?", GenParams(max_new_tokens=40)) == NOVA
    choice = chat_over_http(engine)
    assert (choice["message"]["content"], choice["finish_reason"]) == (NOVA, "stop")
    engine.close()


def test_template_json_is_what_inference_follows(trained: dict[str, Path], tmp_path: Path) -> None:
    """Stops and system come from ``template.json``, not from the tokenizer or ``data.system``."""
    info = {"template": "llama3", "stops": [", made by"], "system": "Be brief."}
    run = run_with_template_json(
        trained["llama3"], tmp_path / "run", info | {"default_system": None}
    )
    engine = Engine.load(str(run), threads=1)
    assert engine.stop_texts == [", made by"]  # the tokenizer's <|eot_id|> is one id, not text
    assert engine.system_prompt == "Be brief."
    params = GenParams(max_new_tokens=40)
    assert engine.generate([ASK], params) == ["I am Nova"]
    engine.close()
