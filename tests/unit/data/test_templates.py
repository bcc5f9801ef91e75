"""Built-in chat templates: byte-identical to the official templates, and the registry API.

The official templates live in ``template_refs/`` (sources in its README). Both sides are rendered
with transformers' own jinja renderer, the one ``apply_chat_template`` uses.
"""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import PreTrainedTokenizerFast
from transformers.utils.chat_template_utils import render_jinja_template

from tunesmith.data.template_registry.classic import ALPACA_SYSTEM, VICUNA_SYSTEM
from tunesmith.data.templates import builtin_template_names, get_template, resolve_chat_template
from tunesmith.errors import ConfigError

REFS = Path(__file__).resolve().parent / "template_refs"


def render(jinja: str, messages: list[dict[str, Any]], *, agp: bool = False, **kw: Any) -> str:
    """Render like ``apply_chat_template(tokenize=False)``; ``bos``/``eos`` play the tokenizer's."""
    kw["bos_token"], kw["eos_token"] = kw.pop("bos", "<s>"), kw.pop("eos", "</s>")
    out, _ = render_jinja_template([messages], chat_template=jinja, add_generation_prompt=agp, **kw)
    return out[0]


def ref(filename: str) -> str:
    return (REFS / filename).read_text(encoding="utf-8")


SYS = {"role": "system", "content": "You are a terse assistant.\n"}  # "\n" exercises trims
U1 = {"role": "user", "content": "What is 2 + 2?"}
A1 = {"role": "assistant", "content": "4."}
U2 = {"role": "user", "content": "  And in French? Réponds en français ✓  "}
A2 = {"role": "assistant", "content": "Quatre.\nC'est tout. "}
CHATS = {
    "single": [U1],
    "single_sys": [SYS, U1],
    "one_turn": [U1, A1],
    "one_turn_sys": [SYS, U1, A1],
    "multi": [U1, A1, U2, A2],
    "multi_sys": [SYS, U1, A1, U2, A2],
    "ends_user": [SYS, U1, A1, U2],
}
NO_SYS = [k for k, v in CHATS.items() if v[0]["role"] != "system"]


@dataclass
class Case:
    builtin: str
    ref: str
    bos: str
    eos: str
    chats: list[str] = field(default_factory=lambda: list(CHATS))
    ref_kwargs: dict[str, Any] = field(default_factory=dict)


NOTHINK = {"enable_thinking": False}
DS_BOS, DS_EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
PARITY = [
    Case("chatml", "teknium--OpenHermes-2.5-Mistral-7B.jinja", "<s>", "<|im_end|>"),
    Case("qwen2.5", "Qwen--Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>"),
    Case("qwen3", "Qwen--Qwen3-0.6B.jinja", "", "<|im_end|>"),
    Case("qwen3-nothink", "Qwen--Qwen3-0.6B.jinja", "", "<|im_end|>", ref_kwargs=NOTHINK),
    Case("llama2", "meta-llama--Llama-2-7b-chat-hf.jinja", "<s>", "</s>"),
    Case("llama3", "meta-llama--Meta-Llama-3-8B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    Case("llama3.1", "meta-llama--Llama-3.3-70B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>"),
    Case("mistral", "mistralai--Mistral-7B-Instruct-v0.2.jinja", "<s>", "</s>"),
    Case("mistral-v3", "mistralai--Mistral-7B-Instruct-v0.3.jinja", "<s>", "</s>"),
    Case("gemma", "google--gemma-7b-it.jinja", "<bos>", "<eos>", chats=NO_SYS),
    Case("gemma2", "google--gemma-2-2b-it.jinja", "<bos>", "<eos>", chats=NO_SYS),
    Case("gemma3", "google--gemma-3-4b-it.jinja", "<bos>", "<eos>"),
    Case("phi3", "microsoft--Phi-3-mini-4k-instruct.jinja", "<s>", "<|endoftext|>"),
    Case("phi3", "microsoft--Phi-3.5-mini-instruct.jinja", "<s>", "<|endoftext|>"),
    Case("phi4", "microsoft--phi-4.jinja", "<|endoftext|>", "<|im_end|>"),
    Case("internlm2", "internlm--internlm2-chat-7b.jinja", "<s>", "</s>"),
    Case("deepseek", "deepseek-ai--deepseek-llm-7b-chat.jinja", DS_BOS, DS_EOS),
    Case("yi", "01-ai--Yi-1.5-34B-Chat.jinja", "<|startoftext|>", "<|im_end|>"),
    Case("zephyr", "HuggingFaceH4--zephyr-7b-beta.jinja", "<s>", "</s>"),
    Case("chatglm3", "THUDM--chatglm3-6b.jinja", "", "</s>"),
    Case("glm4", "THUDM--glm-4-9b-chat.jinja", "", "<|endoftext|>"),
]
PARITY_PARAMS = [
    pytest.param(case, chat, agp, id=f"{case.builtin}[{case.ref.split('--')[1][:-6]}]-{chat}-{agp}")
    for case in PARITY
    for chat in case.chats
    for agp in (False, True)
]


@pytest.mark.parametrize(("case", "chat", "agp"), PARITY_PARAMS)
def test_builtin_renders_byte_identical_to_official(case: Case, chat: str, agp: bool) -> None:
    messages = CHATS[chat]
    ours = render(get_template(case.builtin).jinja, messages, agp=agp, bos=case.bos, eos=case.eos)
    theirs = render(ref(case.ref), messages, agp=agp, bos=case.bos, eos=case.eos, **case.ref_kwargs)
    assert ours == theirs


# --- tools -------------------------------------------------------------------------------------
# Two function tools (OpenAI schema), shared by every tool-capable family.
TOOLS = json.loads((REFS / "tools.json").read_text(encoding="utf-8"))
ASK = {"role": "user", "content": "Weather and time in Paris?"}
CALL_W = {
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
}
CALL_T = {"type": "function", "function": {"name": "get_time", "arguments": {"tz": "Europe/Paris"}}}
RESULT_W = {"role": "tool", "name": "get_weather", "content": '{"temp": 21}'}
RESULT_T = {"role": "tool", "name": "get_time", "content": "14:05"}
ANSWER = {"role": "assistant", "content": "21 °C, and it is 14:05."}


def calls(*tool_calls: dict, content: str = "") -> dict[str, Any]:
    return {"role": "assistant", "content": content, "tool_calls": list(tool_calls)}


TOOL_CHATS = {
    "ask": [ASK],
    "ask_sys": [SYS, ASK],
    "one_call": [ASK, calls(CALL_W), RESULT_W, ANSWER],
    "one_call_sys": [SYS, ASK, calls(CALL_W), RESULT_W, ANSWER],
}
QWEN_TOOL_CHATS = {
    **TOOL_CHATS,
    "two_calls": [SYS, ASK, calls(CALL_W, CALL_T, content="Both."), RESULT_W, RESULT_T, ANSWER],
    "ends_on_results": [ASK, calls(CALL_W, CALL_T), RESULT_W, RESULT_T],
}
TOOL_CASES = [
    (c, n)
    for c in PARITY
    if c.builtin in ("qwen2.5", "qwen3", "qwen3-nothink")
    for n in QWEN_TOOL_CHATS
]
TOOL_CASES += [(c, n) for c in PARITY if c.builtin == "llama3.1" for n in TOOL_CHATS]


@pytest.mark.parametrize("agp", [False, True])
@pytest.mark.parametrize(
    ("case", "chat"), TOOL_CASES, ids=[f"{c.builtin}-{n}" for c, n in TOOL_CASES]
)
def test_tool_calls_render_byte_identical(case: Case, chat: str, agp: bool) -> None:
    messages = QWEN_TOOL_CHATS[chat]
    kw = {"agp": agp, "bos": case.bos, "eos": case.eos, "tools": TOOLS}
    ours = render(get_template(case.builtin).jinja, messages, **kw)
    assert ours == render(ref(case.ref), messages, **kw, **case.ref_kwargs)
    assert "get_weather" in ours


def test_qwen3_string_arguments_and_reasoning_match_official() -> None:
    string_args = {
        "type": "function",
        "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'},
    }
    chats = [
        # <think> kept after the last query, stripped from history.
        [
            U1,
            {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4."},
            U2,
            {"role": "assistant", "content": "<think>\ntranslate\n</think>\n\nQuatre."},
        ],
        [U1, {"role": "assistant", "content": "4.", "reasoning_content": "2+2=4"}],
        [U1, {"role": "assistant", "content": "<think> add </think>\n 4."}],  # spaces kept
        # Multi-step tool use: reasoning of every step after the query is kept.
        [
            ASK,
            calls(string_args, content="<think>\nneed time\n</think>\n\n"),
            RESULT_T,
            {"role": "assistant", "content": "<think>\ndone\n</think>\n\nIt is 14:05."},
        ],
    ]
    qwen3, official = get_template("qwen3").jinja, ref("Qwen--Qwen3-0.6B.jinja")
    nothink = get_template("qwen3-nothink").jinja
    for messages in chats:
        for kwargs in ({}, {"enable_thinking": True}, {"enable_thinking": False}):
            for agp in (False, True):
                expected = render(official, messages, agp=agp, tools=TOOLS, **kwargs)
                assert render(qwen3, messages, agp=agp, tools=TOOLS, **kwargs) == expected
                if kwargs:  # an explicit switch makes both variants the official template
                    assert render(nothink, messages, agp=agp, tools=TOOLS, **kwargs) == expected
    # qwen3-nothink only changes the default; thinking can still be switched on explicitly.
    assert render(nothink, [U1], agp=True).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert render(nothink, [U1], agp=True, enable_thinking=True) == render(official, [U1], agp=True)


def test_llama31_options_match_official() -> None:
    search = {
        "type": "function",
        "function": {"name": "brave_search", "arguments": {"query": "Paris weather"}},
    }
    ipython = [
        SYS,
        ASK,
        calls(search),
        {"role": "ipython", "content": "sunny"},
        ANSWER,
    ]
    variants = [
        ({"tools": TOOLS, "tools_in_user_message": False}, TOOL_CHATS["one_call_sys"]),
        ({"date_string": "01 Jan 2025"}, CHATS["multi_sys"]),
        ({"builtin_tools": ["brave_search", "wolfram_alpha"]}, ipython),
        ({"builtin_tools": ["code_interpreter"], "tools": TOOLS}, ipython),
    ]
    official, ours = ref("meta-llama--Llama-3.3-70B-Instruct.jinja"), get_template("llama3.1").jinja
    for kwargs, messages in variants:
        for agp in (False, True):
            expected = render(official, messages, agp=agp, bos="<|begin_of_text|>", **kwargs)
            assert render(ours, messages, agp=agp, bos="<|begin_of_text|>", **kwargs) == expected
    assert '<|python_tag|>brave_search.call(query="Paris weather")<|eom_id|>' in render(
        ours, ipython, builtin_tools=["brave_search"]
    )


def _glm_official_form(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same conversation in glm-4-9b-chat's own message form (tools/metadata/observation)."""
    out: list[dict[str, Any]] = []
    if messages[0]["role"] != "system":
        out.append({"role": "system", "content": "", "tools": TOOLS})
    for m in messages:
        if m["role"] == "system":
            out.append({**m, "tools": TOOLS})
        elif m["role"] == "tool":
            out.append({"role": "observation", "content": m["content"]})
        elif m.get("tool_calls"):
            out += [
                {
                    "role": "assistant",
                    "metadata": c["function"]["name"],
                    "content": json.dumps(c["function"]["arguments"], ensure_ascii=False),
                }
                for c in m["tool_calls"]
            ]
        else:
            out.append(m)
    return out


@pytest.mark.parametrize("chat", list(TOOL_CHATS))
def test_glm4_standard_tools_match_official_message_form(chat: str) -> None:
    # Our glm4 also takes the standard `tools`/`tool_calls`/`tool` form; upstream reads tools from a
    # message and calls from `metadata`. Both forms must give the same bytes. (Upstream's built-in
    # python/simple_browser/cogview tool types are not supported.)
    messages, glm_form = TOOL_CHATS[chat], _glm_official_form(TOOL_CHATS[chat])
    ours, official = get_template("glm4").jinja, ref("THUDM--glm-4-9b-chat.jinja")
    for agp in (False, True):
        expected = render(official, glm_form, agp=agp)
        assert render(ours, messages, agp=agp, tools=TOOLS) == expected
        assert render(ours, glm_form, agp=agp) == expected  # upstream's own form works too


# --- behaviour of upstream templates that the built-ins keep -----------------------------------
def test_yi_writes_the_system_prompt_as_bare_text_like_yi_15() -> None:
    # Upstream Yi-1.5 writes the system text with no role markers before the first user turn.
    yi = get_template("yi").jinja
    assert render(yi, [SYS, U1]) == (
        "You are a terse assistant.\n<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_mistral_v3_writes_the_system_message_into_the_last_user_turn_only() -> None:
    # v0.3 (unlike v0.2) has no space before [INST] or [/INST] and moves the system message to
    # the last user turn; a conversation ending on an assistant turn renders without it.
    v3 = get_template("mistral-v3").jinja
    assert render(v3, CHATS["ends_user"]) == (
        "<s>[INST] What is 2 + 2?[/INST] 4.</s>[INST] You are a terse assistant.\n\n\n"
        "  And in French? Réponds en français ✓  [/INST]"
    )
    assert render(v3, CHATS["multi_sys"]) == render(v3, CHATS["multi"])
    assert "terse" not in render(v3, CHATS["one_turn_sys"])


def test_gemma3_image_and_text_parts_match_official() -> None:
    system = {"role": "system", "content": [{"type": "text", "text": "Describe images."}]}
    parts = [{"type": "image"}, {"type": "text", "text": " What is this? "}]
    messages = [system, {"role": "user", "content": parts}, A1]
    for agp in (False, True):
        expected = render(ref("google--gemma-3-4b-it.jinja"), messages, agp=agp, bos="<bos>")
        assert render(get_template("gemma3").jinja, messages, agp=agp, bos="<bos>") == expected
    assert "<start_of_image>What is this?<end_of_turn>" in expected


def test_phi3_keeps_an_empty_system_turn_like_phi3_mini() -> None:
    # Phi-3-mini writes an empty system turn; Phi-3.5 drops it. We follow Phi-3-mini.
    messages = [{"role": "system", "content": ""}, U1]
    ours = render(get_template("phi3").jinja, messages, agp=True)
    assert ours == render(ref("microsoft--Phi-3-mini-4k-instruct.jinja"), messages, agp=True)
    assert ours == "<|system|>\n<|end|>\n" + render(
        ref("microsoft--Phi-3.5-mini-instruct.jinja"), messages, agp=True
    )


@pytest.mark.parametrize(
    ("name", "messages"),
    [
        ("gemma", [SYS, U1]),
        ("gemma2", [U1, U2]),
        ("gemma3", [U1, U2]),
        ("llama2", [U1, U2]),
        ("mistral", [A1]),
        ("mistral", [U1, RESULT_T]),
        ("mistral-v3", [A1]),
        ("mistral-v3", [SYS, U1, U2]),
        ("llama3.1", [ASK, calls(CALL_W, CALL_T)]),
    ],
)
def test_invalid_conversations_fail_like_official(name: str, messages: list[dict]) -> None:
    official = next(c.ref for c in PARITY if c.builtin == name)
    with pytest.raises(jinja2.TemplateError) as theirs:
        render(ref(official), messages)
    with pytest.raises(jinja2.TemplateError) as ours:
        render(get_template(name).jinja, messages)
    assert str(ours.value) == str(theirs.value)


# --- templates without an official jinja -------------------------------------------------------
def test_vicuna_matches_fastchat_v11_format() -> None:
    def fastchat(messages: list[dict], agp: bool) -> str:  # FastChat's ADD_COLON_TWO get_prompt
        system = messages[0]["content"] if messages[0]["role"] == "system" else VICUNA_SYSTEM
        turns = [m for m in messages if m["role"] != "system"]
        text, seps = system + " ", (" ", "</s>")
        for i, m in enumerate(turns):
            text += (
                ("USER" if m["role"] == "user" else "ASSISTANT") + ": " + m["content"] + seps[i % 2]
            )
        return text + ("ASSISTANT:" if agp else "")

    for messages in CHATS.values():
        for agp in (False, True):
            assert render(get_template("vicuna").jinja, messages, agp=agp) == fastchat(
                messages, agp
            )


def test_alpaca_baichuan2_default_exact_text() -> None:
    two = [U1, A1, {"role": "user", "content": "Why?"}]
    assert render(get_template("alpaca").jinja, two, agp=True) == (
        f"{ALPACA_SYSTEM}\n\n### Instruction:\nWhat is 2 + 2?\n\n### Response:\n4.</s>"
        "\n\n### Instruction:\nWhy?\n\n### Response:\n"
    )
    assert render(get_template("alpaca").jinja, [{"role": "system", "content": ""}, U1, A1]) == (
        "### Instruction:\nWhat is 2 + 2?\n\n### Response:\n4.</s>"
    )
    assert render(get_template("baichuan2").jinja, [SYS, *two], agp=True) == (
        "You are a terse assistant.\n<reserved_106>What is 2 + 2?<reserved_107>4.</s>"
        "<reserved_106>Why?<reserved_107>"
    )
    assert render(get_template("default").jinja, [SYS, *two], agp=True) == (
        "System: You are a terse assistant.\n\nHuman: What is 2 + 2?\nAssistant: 4.</s>"
        "\nHuman: Why?\nAssistant:"
    )


# --- properties of every built-in --------------------------------------------------------------
# fmt: off
REQUIRED = {
    "chatml", "qwen2.5", "qwen3", "qwen3-nothink", "llama2", "llama3", "llama3.1", "mistral",
    "mistral-v3",
    "gemma", "gemma2", "gemma3", "phi3", "phi4", "internlm2", "deepseek", "yi", "vicuna", "alpaca",
    "zephyr", "chatglm3", "glm4", "baichuan2", "default",
}
# fmt: on
# Turn ends at the next role token: nothing follows the final assistant turn (see report).
NEXT_ROLE_ENDS_TURN = {"chatglm3", "glm4"}


def test_registry_has_the_required_templates() -> None:
    names = builtin_template_names()
    assert set(names) >= REQUIRED
    assert len(names) == len(set(names))
    for name in names:
        template = get_template(name)
        assert template.name == name and template.description and "\n" not in template.description


@pytest.mark.parametrize("name", builtin_template_names())
def test_two_turns_render_and_each_reply_ends_with_a_stop(name: str) -> None:
    template = get_template(name)
    _, stops = resolve_chat_template(SimpleNamespace(eos_token="</s>", chat_template=None), name)
    assert stops
    messages = CHATS["multi_sys" if template.supports_system else "multi"]
    text = render(template.jinja, messages)
    position = 0
    for message in (m for m in messages if m["role"] == "assistant"):
        reply = message["content"].strip()
        position = text.index(reply, position) + len(reply)
        rest = text[position:].lstrip(" \n")
        if name in NEXT_ROLE_ENDS_TURN and message is messages[-1]:
            assert rest == ""
        else:
            assert rest.startswith(stops), (name, rest[:20])
    if template.default_system:
        assert template.default_system in render(template.jinja, [U1])
        assert template.default_system not in render(template.jinja, [SYS, U1])
    if template.supports_tools:
        assert "get_weather" in render(template.jinja, [ASK], agp=True, tools=TOOLS)
    if not template.supports_system:
        with pytest.raises(jinja2.TemplateError):
            render(template.jinja, [SYS, U1])


def test_prompt_renders_are_prefixes_of_the_full_rendering() -> None:
    # Training finds assistant spans by rendering prefixes: the prompt up to each assistant turn
    # is usually a prefix of the whole conversation. Two break this by design, and the renderer
    # finds their spans in context: qwen3-nothink's prompt pre-fills an empty <think> block that
    # earlier assistant turns lose, and mistral-v3 writes the system message into the last user
    # turn only (test_render.py checks their labels).
    broken = set()
    for name in builtin_template_names():
        template = get_template(name)
        messages = CHATS["multi_sys" if template.supports_system else "multi"]
        full = render(template.jinja, messages)
        for k, message in enumerate(messages):
            if message["role"] == "assistant" and not full.startswith(
                render(template.jinja, messages[:k], agp=True)
            ):
                broken.add(name)
    assert broken == {"qwen3-nothink", "mistral-v3"}


# --- registry API -------------------------------------------------------------------------------
def test_get_template_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(ConfigError) as err:
        get_template("qwen25")
    message = str(err.value)
    assert "'qwen2.5'" in message and "did you mean" in message and "\n" not in message
    with pytest.raises(ConfigError, match=r"built-ins: chatml, qwen2\.5"):
        get_template("totally-unknown-format")
    with pytest.raises(FrozenInstanceError):
        get_template("chatml").name = "x"  # type: ignore[misc]


def test_resolve_prefers_the_tokenizer_template_and_derives_stops() -> None:
    llama3 = ref("meta-llama--Meta-Llama-3-8B-Instruct.jinja")
    tok = SimpleNamespace(chat_template=llama3, eos_token="<|end_of_text|>")
    assert resolve_chat_template(tok, None) == (llama3, ("<|end_of_text|>", "<|eot_id|>"))
    # A name overrides the tokenizer's template; eos joins when the template writes eos_token.
    assert resolve_chat_template(tok, "chatml") == (get_template("chatml").jinja, ("<|im_end|>",))
    assert resolve_chat_template(tok, "alpaca")[1] == ("<|end_of_text|>",)
    # A tokenizer carrying one of our built-ins gets that built-in's stops.
    tok.chat_template = get_template("llama3.1").jinja
    assert resolve_chat_template(tok, None)[1] == ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")
    tok.chat_template = {"tool_use": "unused", "default": llama3}
    assert resolve_chat_template(tok, None)[0] == llama3
    with pytest.raises(
        ConfigError,
        match=r"model has no chat template; set model.template to one "
        r"of: chatml, qwen2.5, ",
    ):
        resolve_chat_template(SimpleNamespace(chat_template=None, eos_token="</s>"), None)


@pytest.mark.parametrize("case", PARITY, ids=[c.ref for c in PARITY])
def test_official_templates_resolve_to_their_end_of_turn(case: Case) -> None:
    tok = SimpleNamespace(chat_template=ref(case.ref), eos_token=case.eos)
    jinja, stops = resolve_chat_template(tok, None)
    assert jinja == ref(case.ref)
    assert get_template(case.builtin).stop[0] in stops


def _tiny_tokenizer() -> PreTrainedTokenizerFast:
    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate([*specials, "system", "user", "assistant", "Hi", "!"])}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=specials[3:],
    )


def test_apply_chat_template_on_a_real_tokenizer_uses_the_resolved_template() -> None:
    tok = _tiny_tokenizer()
    messages = [SYS, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hi !"}]
    jinja, stops = resolve_chat_template(tok, "qwen2.5")
    assert stops == ("<|im_end|>", "<|endoftext|>")
    text = tok.apply_chat_template(messages, chat_template=jinja, tokenize=False)
    assert text == render(ref("Qwen--Qwen2.5-7B-Instruct.jinja"), messages)
    # bos/eos come from the tokenizer's special tokens, exactly as training will render them.
    tok.chat_template = ref("meta-llama--Llama-2-7b-chat-hf.jinja")
    own, _ = resolve_chat_template(tok, None)
    llama2 = tok.apply_chat_template(
        messages, chat_template=get_template("llama2").jinja, tokenize=False
    )
    assert llama2 == tok.apply_chat_template(messages, chat_template=own, tokenize=False)
    assert (
        llama2
        == "<s>[INST] <<SYS>>\nYou are a terse assistant.\n\n<</SYS>>\n\nHi [/INST] Hi ! </s>"
    )
    ids = tok.apply_chat_template(messages, chat_template=jinja, tokenize=True, return_dict=False)
    assert tok.convert_tokens_to_ids("<|im_end|>") in ids
