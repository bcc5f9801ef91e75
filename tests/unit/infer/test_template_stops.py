"""Generation stops on the chat template's own end-of-turn strings, not a fixed list.

The tiny Qwen2 is fine-tuned (a few seconds) to answer one question and then write the
template's end-of-turn string followed by more text, for the llama3 and glm4 built-ins installed
on its tokenizer; on this tokenizer those strings are several tokens each, so only stopping on
the template's own strings ends the answer before them.
"""

from __future__ import annotations

from pathlib import Path

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
