"""Rendering: exact tokens and labels on the tiny tokenizer, label options, tools, span weights,
truncation, and the self-check failing loudly on broken templates.

Expected ids are computed by hand from pieces: the tiny tokenizer splits at the template's
special tokens and newlines, so ``enc(prompt) + enc(answer) + enc("\\n")`` is the whole sample and
the labels are exactly the ``enc(answer)`` part.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from tunesmith.data.render import IGNORE_INDEX, Renderer, RenderOptions, SkipSample
from tunesmith.data.templates import resolve_chat_template
from tunesmith.data.types import Conversation, Message, TextDoc
from tunesmith.errors import DataError

M = IGNORE_INDEX


@pytest.fixture(scope="module")
def tok(tiny_qwen2: Path) -> Any:
    from tunesmith.model.loader import load_tokenizer

    return load_tokenizer(str(tiny_qwen2))


def enc(tok: Any, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def renderer(tok: Any, template: str | None = None, **opts: Any) -> Renderer:
    jinja, stop = resolve_chat_template(tok, template)
    opts.setdefault("max_length", 4096)
    return Renderer(tok, jinja, stop, RenderOptions(**opts), template or "tokenizer")


def conv(*turns: tuple[str, str], **kw: Any) -> Conversation:
    return Conversation([Message(r, c) for r, c in turns], **kw)  # type: ignore[arg-type]


def trained_runs(tok: Any, ids: list[int], labels: list[int]) -> list[str]:
    """Decoded runs of consecutive trained tokens."""
    runs: list[list[int]] = []
    prev = False
    for i, lab in zip(ids, labels):
        if lab != M:
            if not prev:
                runs.append([])
            runs[-1].append(i)
        prev = lab != M
    return [tok.decode(r, skip_special_tokens=False) for r in runs]


U, A = "<|im_start|>user\n", "<|im_start|>assistant\n"
E = "<|im_end|>"


def test_single_turn_exact_ids_and_labels(tok: Any) -> None:
    out = renderer(tok).render(conv(("user", "hi"), ("assistant", "Hello there")))
    prompt, answer, tail = enc(tok, f"{U}hi{E}\n{A}"), enc(tok, f"Hello there{E}"), enc(tok, "\n")
    assert out.input_ids == prompt + answer + tail
    assert out.labels == [M] * len(prompt) + answer + [M] * len(tail)
    assert out.weights is None and not out.truncated
    assert out.trained_tokens == len(answer)
    assert answer[-1] == tok.convert_tokens_to_ids(E)  # the model learns to stop


def test_system_option_and_every_assistant_turn(tok: Any) -> None:
    c = conv(("user", "a"), ("assistant", "b1"), ("user", "c"), ("assistant", "d2"))
    out = renderer(tok, system="Be brief.").render(c)
    pieces = [
        (f"<|im_start|>system\nBe brief.{E}\n{U}a{E}\n{A}", False),
        (f"b1{E}", True),
        (f"\n{U}c{E}\n{A}", False),
        (f"d2{E}", True),
        ("\n", False),
    ]
    ids = [t for text, _ in pieces for t in enc(tok, text)]
    labels = [t if on else M for text, on in pieces for t in enc(tok, text)]
    assert out.input_ids == ids
    assert out.labels == labels


def test_mask_history_loss_false_and_train_on_prompt(tok: Any) -> None:
    c = conv(("user", "a"), ("assistant", "b1"), ("user", "c"), ("assistant", "d2"))
    assert trained_runs(tok, *_il(renderer(tok, mask_history=True).render(c))) == [f"d2{E}"]
    c.messages[3].loss = False
    assert trained_runs(tok, *_il(renderer(tok).render(c))) == [f"b1{E}"]
    c.messages[1].loss = False
    with pytest.raises(SkipSample, match="no trained tokens"):
        renderer(tok).render(c)  # never a sample with zero trained tokens
    out = renderer(tok, train_on_prompt=True).render(
        conv(("user", "a"), ("assistant", "b1"), ("user", "c"), ("assistant", "d2"))
    )
    assert out.labels == out.input_ids
    # train_on_prompt still honours an explicit loss: false on an assistant turn
    c2 = conv(("user", "a"), ("assistant", "b1"), ("user", "c"), ("assistant", "d2"))
    c2.messages[1].loss = False
    out = renderer(tok, train_on_prompt=True).render(c2)
    b1 = enc(tok, f"b1{E}")
    start = len(enc(tok, f"{U}a{E}\n{A}"))
    assert out.labels[start : start + len(b1)] == [M] * len(b1)
    assert out.labels[:start] == out.input_ids[:start]


def _il(r: Any) -> tuple[list[int], list[int]]:
    return r.input_ids, r.labels


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def tool_conv() -> Conversation:
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    return Conversation(
        [
            Message("user", "Weather in Oslo?"),
            Message("assistant", "", tool_calls=[call]),
            Message("tool", '{"temp": 3}', name="get_weather"),
            Message("assistant", "It is 3 degrees."),
        ],
        tools=TOOLS,
    )


def test_tool_calls_render_through_the_template(tok: Any) -> None:
    out = renderer(tok).render(tool_conv())
    text = tok.decode(out.input_ids, skip_special_tokens=False)
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather"' in text
    assert trained_runs(tok, out.input_ids, out.labels) == [
        f'<tool_call>{{"name": "get_weather", "arguments": {{"city": "Oslo"}}}}</tool_call>{E}',
        f"It is 3 degrees.{E}",
    ]
    # the same conversation through a built-in tool template (Qwen2.5's <tool_call> format)
    out = renderer(tok, "qwen2.5").render(tool_conv())
    runs = trained_runs(tok, out.input_ids, out.labels)
    assert runs[0].startswith('<tool_call>\n{"name": "get_weather"') and runs[0].endswith(E)
    assert runs[1] == f"It is 3 degrees.{E}"


def test_templates_without_tools_refuse_tool_data(tok: Any) -> None:
    c = tool_conv()
    with pytest.raises(DataError) as err:
        renderer(tok, "mistral").render(c, where="agent.jsonl:4")
    assert str(err.value) == (
        "agent.jsonl:4: template 'mistral' does not render tool definitions; use a tool-capable "
        "template (see `tunesmith data templates`)"
    )
    c.tools = None
    with pytest.raises(DataError, match="does not render tool calls"):
        renderer(tok, "mistral").render(c, where="agent.jsonl:4")


REACT = (
    "Thought: I should look it up.\nAction: search[Oslo]\nObservation: 3 degrees\n"
    "Thought: done\nFinal Answer: 3 degrees"
)


def test_span_loss_weights_for_react(tok: Any) -> None:
    rules = {"Action:": 2.0, "Observation:": 0.0, "Thought:": 1.0, "Final Answer:": 1.0}
    out = renderer(tok, loss_weights=rules).render(conv(("user", "Weather?"), ("assistant", REACT)))
    assert out.weights is not None
    by_weight: dict[float, list[int]] = {}
    for i, lab, w in zip(out.input_ids, out.labels, out.weights):
        if lab != M:
            by_weight.setdefault(w, []).append(i)
    assert sorted(by_weight) == [1.0, 2.0]
    assert tok.decode(by_weight[2.0]) == "Action: search[Oslo]\n"
    assert tok.decode(by_weight[1.0], skip_special_tokens=False) == (
        f"Thought: I should look it up.\nThought: done\nFinal Answer: 3 degrees{E}"
    )
    # weight 0 leaves the loss entirely: those positions are not labelled
    assert "Observation" not in "".join(trained_runs(tok, out.input_ids, out.labels))
    # per-call override and per-message weight
    out = renderer(tok).render(
        conv(("user", "q"), ("assistant", REACT)), loss_weights={"Action:": 3}
    )
    assert out.weights is not None and max(out.weights) == 3.0
    c = conv(("user", "q"), ("assistant", "a"))
    c.messages[1].weight = 0.5
    out = renderer(tok).render(c)
    assert out.weights is not None
    assert {w for w, lab in zip(out.weights, out.labels) if lab != M} == {0.5}


def long_chat(n: int) -> Conversation:
    turns: list[tuple[str, str]] = [("system", "sys")]
    for i in range(n):
        turns += [("user", f"question {i} " + "word " * 20), ("assistant", f"answer {i} " * 5)]
    return conv(*turns)


def test_truncation_policies(tok: Any) -> None:
    c = long_chat(4)
    full = renderer(tok).render(c)
    n = len(full.input_ids)
    with pytest.raises(SkipSample, match="longer than max_length"):
        renderer(tok, max_length=n - 1).render(c)  # drop is the default
    # whole turns: left drops the oldest exchanges, right the newest; the system turn stays
    left = renderer(tok, max_length=n // 2, truncation="truncate_left").render(c)
    right = renderer(tok, max_length=n // 2, truncation="truncate_right").render(c)
    assert left.truncated and right.truncated
    for r in (left, right):
        assert len(r.input_ids) <= n // 2
        text = tok.decode(r.input_ids, skip_special_tokens=False)
        assert text.startswith(f"<|im_start|>system\nsys{E}\n{U}question")
        assert text.endswith(f"{E}\n")  # whole turns, ending on a complete assistant turn
    assert "answer 3" in tok.decode(left.input_ids) and "answer 0" not in tok.decode(left.input_ids)
    assert "answer 0" in tok.decode(right.input_ids)
    assert "answer 3" not in tok.decode(right.input_ids)
    # one exchange longer than max_length: cut tokens, keeping trained ones
    one = conv(("user", "word " * 40), ("assistant", "reply " * 40))
    whole = renderer(tok).render(one)
    m = len(whole.input_ids) - 10
    r = renderer(tok, max_length=m, truncation="truncate_right").render(one)
    assert r.input_ids == whole.input_ids[:m] and r.labels == whole.labels[:m]
    r = renderer(tok, max_length=m, truncation="truncate_left").render(one)
    assert r.input_ids == whole.input_ids[-m:] and r.labels == whole.labels[-m:]
    prompt_len = whole.labels.index(next(x for x in whole.labels if x != M))
    with pytest.raises(SkipSample, match="no trained tokens left after truncation"):
        renderer(tok, max_length=prompt_len - 2, truncation="truncate_right").render(one)


BROKEN_UPPER = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.role == 'assistant' %}{{ m.content | upper }}{% else %}{{ m.content }}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
BROKEN_PROMPT = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>bot\n{% endif %}"
)
# Text between the content and the end-of-turn string would be trained as if it were content.
BROKEN_SUFFIX = BROKEN_UPPER.replace("{{ m.content | upper }}", "{{ m.content }} (end)")
RAISES = "{{ raise_exception('roles must alternate user/assistant') }}"


@pytest.mark.parametrize(
    ("jinja", "message"),
    [
        (
            BROKEN_UPPER,
            "data.jsonl:7: label self-check failed with template 'broken': assistant turn 1 "
            "renders as 'HELLO THERE<|im_end|>', which lacks its content 'Hello there'; the "
            "template rewrites assistant turns (use another model.template)",
        ),
        (
            BROKEN_PROMPT,
            "data.jsonl:7: template 'broken' renders the generation prompt of assistant turn 1 "
            "differently from the turn in context, so its labels cannot be derived; use another "
            "model.template",
        ),
        (
            BROKEN_SUFFIX,
            "data.jsonl:7: label self-check failed with template 'broken': assistant turn 1 "
            "renders as 'Hello there (end)<|im_end|>', which does not end with its content and "
            "one end-of-turn string; the template rewrites assistant turns (use another "
            "model.template)",
        ),
        (RAISES, "data.jsonl:7: template 'broken': roles must alternate user/assistant"),
    ],
)
def test_broken_templates_fail_loudly_in_one_line(tok: Any, jinja: str, message: str) -> None:
    r = Renderer(tok, jinja, ("<|im_end|>",), RenderOptions(), "broken")
    with pytest.raises(DataError) as err:
        r.render(conv(("user", "hi"), ("assistant", "Hello there")), where="data.jsonl:7")
    assert str(err.value) == message
    assert "\n" not in str(err.value)


class CharTokenizer:
    """A slow character tokenizer (no ``backend_tokenizer``); ``lossy`` breaks its decode."""

    eos_token_id = 0
    chat_template = None

    def __init__(self, lossy: bool = False) -> None:
        self.lossy = lossy
        self.special_tokens_map = {"eos_token": "<|im_end|>"}

    def __call__(self, text: str, **_: Any) -> dict[str, Any]:
        return {
            "input_ids": [ord(c) for c in text],
            "offset_mapping": [(i, i + 1) for i in range(len(text))],
        }

    def decode(self, ids: list[int], **_: Any) -> str:
        text = "".join(chr(i) for i in ids)
        return text.replace("e", "") if self.lossy else text


def test_slow_tokenizer_offsets_and_decode_self_check() -> None:
    from tunesmith.model.tiny import CHATML_TEMPLATE

    c = conv(("user", "hi"), ("assistant", "Hello"))
    out = Renderer(CharTokenizer(), CHATML_TEMPLATE, (E,), RenderOptions()).render(c)
    text = f"{U}hi{E}\n{A}Hello{E}\n"
    assert out.input_ids == [ord(ch) for ch in text]
    start = len(f"{U}hi{E}\n{A}")
    assert out.labels == [M] * start + [ord(ch) for ch in f"Hello{E}"] + [M]
    lossy = Renderer(CharTokenizer(lossy=True), CHATML_TEMPLATE, (E,), RenderOptions(), "chatml")
    with pytest.raises(DataError) as err:
        lossy.render(c, where="x.json:record 3")
    assert str(err.value) == (
        "x.json:record 3: label self-check failed with template 'chatml': assistant turn 1 "
        "trained tokens decode to 'Hllo<|im_nd|>', expected 'Hello<|im_end|>'"
    )


def test_generation_markers_give_the_same_labels(tok: Any) -> None:
    from tunesmith.model.tiny import CHATML_TEMPLATE

    marked = CHATML_TEMPLATE.replace(
        "{{- '<|im_start|>assistant\\n' }}{%- if message.content %}"
        "{{- message.content }}{%- endif %}",
        "{{- '<|im_start|>assistant\\n' }}{% generation %}{%- if message.content %}"
        "{{- message.content }}{%- endif %}",
    ).replace(
        "{%- endfor %}{{- '<|im_end|>\\n' }}",
        "{%- endfor %}{{- '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}",
    )
    assert "{% generation %}" in marked and "{% endgeneration %}" in marked
    c = conv(("user", "a"), ("assistant", "b1"), ("user", "c"), ("assistant", "d2"))
    plain = renderer(tok).render(c)
    r = Renderer(tok, marked, (E,), RenderOptions(max_length=4096), "marked")
    assert r._markers
    out = r.render(c)
    assert (out.input_ids, out.labels) == (plain.input_ids, plain.labels)


def test_history_rendered_unlike_the_final_turn(tok: Any) -> None:
    """Qwen3 drops reasoning blocks from earlier turns: spans still follow the rendering."""
    c = conv(("user", "a"), ("assistant", "b1"), ("user", "c"), ("assistant", "d2"))
    out = renderer(tok, "qwen3").render(c)
    assert trained_runs(tok, out.input_ids, out.labels) == [
        f"b1{E}",
        f"<think>\n\n</think>\n\nd2{E}",
    ]
    out = renderer(tok, "qwen3-nothink").render(c)
    assert trained_runs(tok, out.input_ids, out.labels) == [f"b1{E}", f"d2{E}"]
    # the empty <think> block of the prompt and "<tool_call>" share "<t": the span starts whole
    out = renderer(tok, "qwen3-nothink").render(tool_conv())
    runs = trained_runs(tok, out.input_ids, out.labels)
    assert runs[0].startswith('<tool_call>\n{"name": "get_weather"'), runs[0]
    assert runs[1] == f"It is 3 degrees.{E}"


def test_glm_turns_end_at_the_next_role_token(tok: Any) -> None:
    c = conv(("user", "a"), ("assistant", "b1"), ("user", "c"), ("assistant", "d2"))
    out = renderer(tok, "chatglm3").render(c)
    runs = trained_runs(tok, out.input_ids, out.labels)
    assert [r.strip() for r in runs] == ["b1<|user|>", "d2<|user|>"]  # the last one appended


def test_render_text_chunks_with_eos(tok: Any) -> None:
    r = renderer(tok, max_length=16)
    ids = [*enc(tok, "lorem ipsum " * 20), tok.eos_token_id]
    chunks = r.render_text(TextDoc("lorem ipsum " * 20))
    assert [c.input_ids for c in chunks] == [ids[i : i + 16] for i in range(0, len(ids), 16)]
    assert all(c.labels == c.input_ids for c in chunks)


# --- official templates installed on the tiny tokenizer (issue 14) -----------------------------
REFS = Path(__file__).resolve().parent / "template_refs"  # sources: template_refs/README.md


def official(path: Path, ref: str, *, bos: str, eos: str, specials: list[str]) -> Any:
    """A fresh tiny tokenizer carrying a model's official template and its special tokens, as
    that model's own tokenizer would: the renderer then uses it as the tokenizer's template."""
    from tunesmith.model.loader import load_tokenizer

    t = load_tokenizer(str(path))
    t.add_special_tokens(
        {"bos_token": bos, "eos_token": eos, "additional_special_tokens": specials}
    )
    t.chat_template = (REFS / ref).read_text(encoding="utf-8")
    return t


def expected(tok: Any, pieces: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    """Ids and labels of ``(text, trained)`` pieces cut at special tokens (they concatenate)."""
    ids = [t for text, _ in pieces for t in enc(tok, text)]
    labels = [t if on else M for text, on in pieces for t in enc(tok, text)]
    return ids, labels


MISTRAL_SPECIALS = ["<s>", "</s>", "[INST]", "[/INST]"]
SYS_AB_CD = (
    ("system", "Be brief."),
    ("user", "a"),
    ("assistant", "b1"),
    ("user", "c"),
    ("assistant", "d2"),
)


@pytest.fixture(scope="module")
def mistral03(tiny_qwen2: Path) -> Any:
    return official(
        tiny_qwen2,
        "mistralai--Mistral-7B-Instruct-v0.3.jinja",
        bos="<s>",
        eos="</s>",
        specials=MISTRAL_SPECIALS,
    )


def test_mistral_v03_official_template_labels_with_a_system_message(mistral03: Any) -> None:
    # v0.3 writes the system message only into a *last* user turn, so each turn's generation
    # prompt differs from its context. Labels come from the whole conversation's rendering, the
    # one that is trained (which, ending on an assistant turn, has no system message at all).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = renderer(mistral03)
        out = r.render(conv(*SYS_AB_CD))
    assert sorted(str(w.message) for w in caught) == r.notes  # each note warned once
    assert [n.split(" (")[0] for n in r.notes] == [
        "template 'tokenizer' leaves the system message out of the trained text of some samples",
        "template 'tokenizer' renders the context of an assistant turn unlike its generation "
        "prompt",
    ]
    ids, labels = expected(
        mistral03,
        [
            ("<s>[INST] a[/INST]", False),
            (" b1</s>", True),
            ("[INST] c[/INST]", False),
            (" d2</s>", True),
        ],
    )
    assert (out.input_ids, out.labels) == (ids, labels)
    # Ending on a user turn, the system message is in the sample, inside that last user turn.
    with pytest.warns(UserWarning, match=r"unlike its generation prompt"):
        out = renderer(mistral03).render(conv(*SYS_AB_CD[:4]))
    ids, labels = expected(
        mistral03,
        [("<s>[INST] a[/INST]", False), (" b1</s>", True), ("[INST] Be brief.\n\nc[/INST]", False)],
    )
    assert (out.input_ids, out.labels) == (ids, labels)
    # Without a system message every prompt is a prefix of the conversation: no notes.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = renderer(mistral03).render(conv(*SYS_AB_CD[1:]))
    assert trained_runs(mistral03, out.input_ids, out.labels) == [" b1</s>", " d2</s>"]


def test_mistral_v3_builtin_labels_like_the_official_template(mistral03: Any) -> None:
    for turns in (SYS_AB_CD, SYS_AB_CD[:4], SYS_AB_CD[1:]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            own = renderer(mistral03).render(conv(*turns))
            builtin = renderer(mistral03, "mistral-v3").render(conv(*turns))
        assert (builtin.input_ids, builtin.labels) == (own.input_ids, own.labels)


PHI3_SPECIALS = ["<s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]


@pytest.mark.parametrize(
    "ref", ["microsoft--Phi-3-mini-4k-instruct.jinja", "microsoft--Phi-3.5-mini-instruct.jinja"]
)
@pytest.mark.parametrize("template", [None, "phi3"])
def test_phi3_last_turn_ends_at_its_first_end_of_turn(
    tiny_qwen2: Path, ref: str, template: str | None
) -> None:
    # The template writes <|endoftext|> after the final <|end|>; that is not part of the turn.
    tok = official(tiny_qwen2, ref, bos="<s>", eos="<|endoftext|>", specials=PHI3_SPECIALS)
    out = renderer(tok, template).render(conv(*SYS_AB_CD))
    ids, labels = expected(
        tok,
        [
            ("<|system|>\nBe brief.<|end|>\n<|user|>\na<|end|>\n<|assistant|>\n", False),
            ("b1<|end|>", True),
            ("\n<|user|>\nc<|end|>\n<|assistant|>\n", False),
            ("d2<|end|>", True),
            ("\n<|endoftext|>", False),
        ],
    )
    assert (out.input_ids, out.labels) == (ids, labels)
