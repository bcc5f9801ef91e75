"""Terminal chat on a run directory: multi-turn streaming, commands, saved conversations."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from tunesmith.infer.chat import answer_once, chat_loop
from tunesmith.infer.engine import Engine, GenParams

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SYSTEM = "You are Nova."


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> Path:
    """A LoRA run directory as training leaves it (random, non-zero adapter weights)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path_factory.mktemp("chat") / "nova"
    torch.manual_seed(0)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen2), cfg).save_pretrained(
        run / "adapter"
    )
    AutoTokenizer.from_pretrained(tiny_qwen2).save_pretrained(run / "adapter")
    config = {
        "model": {"name": "builtin:tiny-qwen2"},
        "data": {"datasets": [{"path": "builtin:identity"}], "system": SYSTEM},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


@pytest.fixture(scope="module")
def engine(run_dir: Path) -> Engine:
    return Engine.load(str(run_dir))


def talk(engine: Engine, script: list[str], **kw: object) -> tuple[str, list[dict]]:
    out: list[str] = []
    history = chat_loop(
        engine,
        GenParams(max_new_tokens=8),
        system=SYSTEM,
        stdin=io.StringIO("".join(line + "\n" for line in script)),
        out=out.append,
        **kw,
    )
    return "".join(out), history


def test_multi_turn_chat_with_commands(engine: Engine, tmp_path: Path) -> None:
    params = GenParams(max_new_tokens=8)
    first = answer_once(engine, "hello", params, SYSTEM)
    second = engine.generate(
        [
            [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": first},
                {"role": "user", "content": "and you?"},
            ]
        ],
        params,
    )[0]
    text, history = talk(
        engine,
        ["hello", "/regen", "and you?", f"/save {tmp_path / 'c.json'}", "/bogus", "/exit", "x"],
    )
    assert history == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": first},  # /regen replaced it, did not add one
        {"role": "user", "content": "and you?"},
        {"role": "assistant", "content": second},
    ]
    assert len(re.findall(r"\[8 tokens, [0-9.]+ tok/s\]", text)) == 3
    assert "unknown command '/bogus'" in text
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved == {"messages": [{"role": "system", "content": SYSTEM}, *history]}


def test_system_reset_and_jsonl_append(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    _, history = talk(
        engine,
        ["hi", "/system Be short.", "hey", f"/save {log}", "/reset", f"/save {log}", "/regen"],
    )
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[0]["messages"][0] == {"role": "system", "content": "Be short."}
    assert [m["content"] for m in lines[0]["messages"][1:2]] == ["hey"]  # history was cleared
    assert lines[1] == {"messages": [{"role": "system", "content": "Be short."}]}
    assert history == []


def test_the_run_adapter_is_used(engine: Engine, tiny_qwen2: Path) -> None:
    params = GenParams(max_new_tokens=8)
    tuned = answer_once(engine, "hello", params, SYSTEM)
    base = answer_once(engine, "hello", params, SYSTEM, adapter=engine.base_name)
    plain = Engine.load(str(tiny_qwen2)).generate(
        [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hello"}]], params
    )[0]
    assert base == plain != tuned
