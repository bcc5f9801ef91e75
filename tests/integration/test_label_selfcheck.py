"""Every SFT sample of the shared demo data passes the label self-check, with the tiny model's own
template and with built-in templates.

The self-check runs inside the renderer (a failure raises ``DataError`` naming the sample); on top
of it, every sample must render (nothing skipped at a generous ``max_length``) with one trained run
per assistant turn, each run ending in one of the template's end-of-turn strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tunesmith.data.dataset_info import read_dataset_info
from tunesmith.data.render import IGNORE_INDEX, Renderer, RenderOptions
from tunesmith.data.selfcog import has_placeholders, substitute
from tunesmith.data.sources import load_examples
from tunesmith.data.templates import resolve_chat_template
from tunesmith.data.types import Conversation

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
LF = SHARED / "llamafactory"
TEXT_SETS = ("alpaca_en_demo", "alpaca_zh_demo", "identity", "mllm_demo")
TOOL_SETS = ("glaive_toolcall_en_demo",)
# None = the tokenizer's own template (the tiny model's ChatML with tools)
TEXT_TEMPLATES = (None, "qwen2.5", "llama3", "mistral", "gemma")
TOOL_TEMPLATES = (None, "qwen2.5", "llama3.1", "glm4")
NAME, AUTHOR = {"en": "Nova", "zh": "诺瓦"}, {"en": "Acme Labs", "zh": "艾克米实验室"}


@pytest.fixture(scope="module")
def tok(tiny_qwen2: Path) -> Any:
    from tunesmith.model.loader import load_tokenizer

    return load_tokenizer(str(tiny_qwen2))


def load(name: str) -> tuple[list[Conversation], list[str]]:
    entry = read_dataset_info(LF / "dataset_info.json", name)
    result = load_examples(
        entry.file, fmt=entry.fmt, columns=entry.columns, tags=entry.tags, media_dir=entry.media_dir
    )
    convs = [substitute(e, NAME, AUTHOR) if has_placeholders(e) else e for e in result.examples]
    assert all(isinstance(c, Conversation) for c in convs)
    return convs, result.wheres  # type: ignore[return-value]


def check_all(tok: Any, template: str | None, convs: list[Conversation], wheres: list[str]) -> None:
    jinja, stop = resolve_chat_template(tok, template)
    r = Renderer(tok, jinja, stop, RenderOptions(max_length=1 << 16), template or "tokenizer")
    for lo in range(0, len(convs), 512):
        batch = convs[lo : lo + 512]
        for c, out in zip(batch, r.render_many(batch, wheres[lo : lo + 512])):
            assert not isinstance(out, Exception), (template, out)
            ends = [
                i
                for i in range(len(out.labels))
                if out.labels[i] != IGNORE_INDEX
                and (i + 1 == len(out.labels) or out.labels[i + 1] == IGNORE_INDEX)
            ]
            assert len(ends) == sum(m.role == "assistant" for m in c.messages), template
            for i in ends:  # every run ends on an end-of-turn string
                tail = tok.decode(out.input_ids[max(0, i - 12) : i + 1], skip_special_tokens=False)
                assert tail.endswith(stop), (template, tail)


@pytest.mark.parametrize("template", TEXT_TEMPLATES)
def test_text_sets_pass_the_self_check(tok: Any, template: str | None) -> None:
    for name in TEXT_SETS:
        convs, wheres = load(name)
        check_all(tok, template, convs, wheres)


@pytest.mark.parametrize("template", TOOL_TEMPLATES)
def test_tool_calls_pass_the_self_check(tok: Any, template: str | None) -> None:
    for name in TOOL_SETS:
        convs, wheres = load(name)
        assert sum(bool(c.tools) for c in convs) > 100
        check_all(tok, template, convs, wheres)


@pytest.mark.parametrize("template", (None, "qwen2.5", "llama3", "gemma"))
def test_swift_self_cognition_with_substitution(tok: Any, template: str | None) -> None:
    result = load_examples(SHARED / "swift" / "self_cognition.jsonl")
    convs = [substitute(e, NAME, AUTHOR) for e in result.examples]
    assert len(convs) == 134 and not any(has_placeholders(c) for c in convs)
    check_all(tok, template, convs, result.wheres)  # type: ignore[arg-type]
