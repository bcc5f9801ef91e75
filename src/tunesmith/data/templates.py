"""Chat templates shared by training and inference.

A model's own jinja ``chat_template`` (from its tokenizer) is preferred; base models that ship none
use a built-in template from the registry below, or any built-in can be forced with
``model.template``. Every built-in is a declarative record whose ``jinja`` is a Hugging Face style
chat template, so training (``tokenizer.apply_chat_template``, assistant spans found by rendering
prefixes) and inference render through the very same string. Templates that mirror an official
model template are tested to render byte-identically to it (``tests/unit/data/test_templates.py``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from tunesmith.data.template_registry import chatml, classic, gemma_phi, glm, llama
from tunesmith.errors import ConfigError


@dataclass(frozen=True)
class ChatTemplate:
    """One built-in chat template.

    Attributes:
        name: Registry name (``model.template``).
        jinja: The Hugging Face chat-template string.
        stop: End-of-turn strings generation must stop on. Templates that write ``eos_token``
            also stop on the tokenizer's eos (``resolve_chat_template`` adds it).
        default_system: The system prompt the template injects when none is given, if any.
        description: One line for ``tunesmith data templates``.
        bos: The begin-of-sequence text the template itself writes (so callers must not add one).
        supports_system: Whether a leading system message is accepted.
        supports_tools: Whether the template renders ``tools`` and assistant ``tool_calls``.
    """

    name: str
    jinja: str
    stop: tuple[str, ...]
    default_system: str | None
    description: str
    bos: str | None = None
    supports_system: bool = True
    supports_tools: bool = False


_QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
_DEEPSEEK_EOS = "<｜end▁of▁sentence｜>"

_BUILTINS: tuple[ChatTemplate, ...] = (
    ChatTemplate(
        name="chatml",
        jinja=chatml.CHATML,
        stop=("<|im_end|>",),
        default_system=None,
        description="ChatML: <|im_start|>role ... <|im_end|> (OpenHermes and other ChatML tunes)",
    ),
    ChatTemplate(
        name="qwen2.5",
        jinja=chatml.QWEN25,
        stop=("<|im_end|>", "<|endoftext|>"),
        default_system=_QWEN_SYSTEM,
        description="Qwen2.5-Instruct: ChatML with a default system prompt and <tool_call> tools",
        supports_tools=True,
    ),
    ChatTemplate(
        name="qwen3",
        jinja=chatml.QWEN3,
        stop=("<|im_end|>", "<|endoftext|>"),
        default_system=None,
        description="Qwen3 with thinking on (<think> blocks; enable_thinking=False turns it off)",
        supports_tools=True,
    ),
    ChatTemplate(
        name="qwen3-nothink",
        jinja=chatml.QWEN3_NOTHINK,
        stop=("<|im_end|>", "<|endoftext|>"),
        default_system=None,
        description="Qwen3 with thinking off by default (empty <think> block in the prompt)",
        supports_tools=True,
    ),
    ChatTemplate(
        name="llama2",
        jinja=llama.LLAMA2,
        stop=("</s>",),
        default_system=None,
        description="Llama-2-chat: <s>[INST] <<SYS>>...<</SYS>> ... [/INST] answer </s>",
        bos="<s>",
    ),
    ChatTemplate(
        name="llama3",
        jinja=llama.LLAMA3,
        stop=("<|eot_id|>", "<|end_of_text|>"),
        default_system=None,
        description="Llama-3-Instruct: <|start_header_id|>role<|end_header_id|> ... <|eot_id|>",
        bos="<|begin_of_text|>",
    ),
    ChatTemplate(
        name="llama3.1",
        jinja=llama.LLAMA31,
        stop=("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
        default_system=None,
        description="Llama-3.1/3.3-Instruct: Llama 3 with a dated system header and JSON tools",
        bos="<|begin_of_text|>",
        supports_tools=True,
    ),
    ChatTemplate(
        name="mistral",
        jinja=llama.MISTRAL,
        stop=("</s>",),
        default_system=None,
        description="Mistral-7B-Instruct v0.1/v0.2: [INST] ... [/INST], system folded into turn 1",
        bos="<s>",
    ),
    ChatTemplate(
        name="mistral-v3",
        jinja=llama.MISTRAL_V3,
        stop=("</s>",),
        default_system=None,
        description="Mistral-7B-Instruct v0.3: [INST] ...[/INST]; system only in a last user turn "
        "(so not trained)",
        bos="<s>",
    ),
    ChatTemplate(
        name="gemma",
        jinja=gemma_phi.GEMMA,
        stop=("<end_of_turn>", "<eos>"),
        default_system=None,
        description="Gemma-it: <start_of_turn>user/model ... <end_of_turn>, no system role",
        bos="<bos>",
        supports_system=False,
    ),
    ChatTemplate(
        name="gemma2",
        jinja=gemma_phi.GEMMA,
        stop=("<end_of_turn>", "<eos>"),
        default_system=None,
        description="Gemma-2-it: same format as Gemma, no system role",
        bos="<bos>",
        supports_system=False,
    ),
    ChatTemplate(
        name="gemma3",
        jinja=gemma_phi.GEMMA3,
        stop=("<end_of_turn>", "<eos>"),
        default_system=None,
        description="Gemma-3-it: Gemma turns, system folded into the first user turn, image parts",
        bos="<bos>",
    ),
    ChatTemplate(
        name="phi3",
        jinja=gemma_phi.PHI3,
        stop=("<|end|>", "<|endoftext|>"),
        default_system=None,
        description="Phi-3-instruct: <|user|> ... <|end|> <|assistant|> ... <|end|>",
    ),
    ChatTemplate(
        name="phi4",
        jinja=chatml.PHI4,
        stop=("<|im_end|>", "<|endoftext|>"),
        default_system=None,
        description="Phi-4: <|im_start|>role<|im_sep|> ... <|im_end|>",
    ),
    ChatTemplate(
        name="internlm2",
        jinja=chatml.INTERNLM2,
        stop=("<|im_end|>", "</s>"),
        default_system=None,
        description="InternLM2-chat: <s> + ChatML",
        bos="<s>",
    ),
    ChatTemplate(
        name="deepseek",
        jinja=classic.DEEPSEEK,
        stop=(_DEEPSEEK_EOS,),
        default_system=None,
        description="DeepSeek LLM chat: User: ...\\n\\nAssistant: ...<｜end▁of▁sentence｜>",
        bos="<｜begin▁of▁sentence｜>",
    ),
    ChatTemplate(
        name="yi",
        jinja=chatml.YI,
        stop=("<|im_end|>", "<|endoftext|>"),
        default_system=None,
        description="Yi-1.5-chat: ChatML turns after a bare-text system prompt; each user turn "
        "opens the assistant turn",
    ),
    ChatTemplate(
        name="vicuna",
        jinja=classic.VICUNA,
        stop=("</s>",),
        default_system=classic.VICUNA_SYSTEM,
        description="Vicuna v1.1: '<system> USER: ... ASSISTANT: ...</s>'",
    ),
    ChatTemplate(
        name="alpaca",
        jinja=classic.ALPACA,
        stop=(),
        default_system=classic.ALPACA_SYSTEM,
        description="Alpaca: ### Instruction: / ### Response: blocks, eos after each response",
    ),
    ChatTemplate(
        name="zephyr",
        jinja=classic.ZEPHYR,
        stop=("</s>",),
        default_system=None,
        description="Zephyr: <|user|>\\n...</s> <|assistant|>\\n...</s>",
    ),
    ChatTemplate(
        name="chatglm3",
        jinja=glm.CHATGLM3,
        stop=("<|user|>", "<|observation|>"),
        default_system=None,
        description="ChatGLM3-6B: [gMASK]sop<|role|>\\n content (turn ends at the next role token)",
        bos="[gMASK]sop",
    ),
    ChatTemplate(
        name="glm4",
        jinja=glm.GLM4,
        stop=("<|user|>", "<|observation|>", "<|endoftext|>"),
        default_system=None,
        description="GLM-4-9B-Chat: [gMASK]<sop><|role|>\\ncontent, function tools",
        bos="[gMASK]<sop>",
        supports_tools=True,
    ),
    ChatTemplate(
        name="baichuan2",
        jinja=classic.BAICHUAN2,
        stop=("</s>", "<reserved_106>"),
        default_system=None,
        description="Baichuan2-chat: <reserved_106>user<reserved_107>assistant</s>",
    ),
    ChatTemplate(
        name="default",
        jinja=classic.DEFAULT,
        stop=(),
        default_system=None,
        description="Plain 'Human: ... / Assistant: ...<eos>' lines for base models",
    ),
)
_BY_NAME: dict[str, ChatTemplate] = {t.name: t for t in _BUILTINS}

# End-of-turn markers looked for in a model's own template when it is not one of the built-ins.
_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>", "</s>")
# GLM templates have no end-of-turn token: the next role token ends a turn.
_GLM_MARKERS = ("<|user|>", "<|observation|>")


def builtin_template_names() -> list[str]:
    """Names of the built-in templates, in registry order."""
    return [t.name for t in _BUILTINS]


def get_template(name: str) -> ChatTemplate:
    """Return the built-in template called ``name``.

    Raises:
        ConfigError: ``name`` is not a built-in (the message suggests the closest name).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(name.lower(), list(_BY_NAME), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(
        f"model.template: unknown chat template '{name}'; {hint}"
        f"built-ins: {', '.join(_BY_NAME)} (see `tunesmith data templates`)"
    )


def default_system_of(jinja: str, name: str | None) -> str | None:
    """The system prompt template ``jinja`` injects when none is given (``None``: none).

    Known for the built-ins: ``name`` when it is one, else the built-in with identical jinja. A
    model's own template that matches no built-in is not read for one.
    """
    if name is not None and name in _BY_NAME:
        return _BY_NAME[name].default_system
    same = next((t for t in _BUILTINS if t.jinja.strip() == jinja.strip()), None)
    return same.default_system if same is not None else None


def resolve_chat_template(tokenizer: Any, name: str | None) -> tuple[str, tuple[str, ...]]:
    """Pick the chat template for a model and the strings generation stops on.

    Args:
        tokenizer: The model's tokenizer (its ``chat_template`` and ``eos_token`` are read);
            may be ``None`` when ``name`` is given.
        name: A built-in to use (overrides the tokenizer's template), or ``None`` to use the
            tokenizer's own template.

    Returns:
        ``(jinja, stop)``. For a built-in, ``stop`` is its stop strings plus the tokenizer's eos
        when the template writes ``eos_token``. For the tokenizer's own template, it is the stop
        strings of the built-in with the identical jinja if there is one, otherwise the
        tokenizer's eos plus the known end-of-turn markers that appear in the template.

    Raises:
        ConfigError: ``name`` is unknown, or it is ``None`` and the tokenizer has no template.
    """
    eos = getattr(tokenizer, "eos_token", None) if tokenizer is not None else None
    if name is not None:
        template = get_template(name)
        return template.jinja, _stops_with_eos(template, eos)
    own = _tokenizer_template(tokenizer)
    if own is None:
        raise ConfigError(
            "model has no chat template; set model.template to one of: "
            + ", ".join(builtin_template_names())
        )
    for template in _BUILTINS:
        if template.jinja.strip() == own.strip():
            return own, _stops_with_eos(template, eos)
    markers = [m for m in _END_MARKERS if m in own]
    if "[gMASK]" in own:  # GLM role tokens are built from the role name, so not literally present
        markers += _GLM_MARKERS
    return own, _dedupe(([eos] if eos else []) + markers)


def _stops_with_eos(template: ChatTemplate, eos: str | None) -> tuple[str, ...]:
    extra = [eos] if eos and "eos_token" in template.jinja else []
    return _dedupe([*template.stop, *extra])


def _tokenizer_template(tokenizer: Any) -> str | None:
    """The tokenizer's jinja template; of several named ones, the ``default`` (else the first)."""
    own = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    if isinstance(own, dict):
        own = own.get("default") or next(iter(own.values()), None)
    return own or None


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
