"""Tool calls: OpenAI messages -> template input, and the model's tool calls back out.

The template decides how tool calls look in text. We find out by rendering a probe assistant
turn with a sentinel call, which tells us the opening marker (``<tool_call>`` for Qwen/Hermes
style templates) and the exact text that precedes the function name and the arguments, so
``tool_choice`` can be enforced by starting the answer with that text.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from tunesmith.errors import ConfigError

_NAME = "zzprobefnzz"
_ARG = "zzprobeargzz"
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


@dataclass(frozen=True)
class ToolFormat:
    """How a template writes one tool call: text before the name and before the arguments."""

    before_name: str  # e.g. '<tool_call>{"name": "'
    before_args: str  # e.g. '", "arguments": '

    def forced_prefix(self, name: str | None) -> str:
        """Answer prefix that commits the model to a call (of ``name`` when given).

        Trailing spaces are left for the model to write: BPE vocabularies usually merge a space
        with the next character, so a prompt ending in a bare space is off the training path.
        """
        if name is None:
            return self.before_name.rstrip()
        return (self.before_name + name + self.before_args).rstrip()


def probe_tool_format(tokenizer: Any) -> ToolFormat | None:
    """Render a sentinel tool call with the tokenizer's template; ``None`` if unsupported."""
    call = {"type": "function", "function": {"name": _NAME, "arguments": {_ARG: 1}}}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        prompt = tokenizer.apply_chat_template(
            messages[:1], tokenize=False, add_generation_prompt=True
        )
    except Exception:
        return None
    if not text.startswith(prompt) or _NAME not in text or _ARG not in text:
        return None
    answer = text[len(prompt) :]
    i_name, i_arg = answer.find(_NAME), answer.find(_ARG)
    start = answer.find("<tool_call>")
    if start < 0 or not start <= i_name < i_arg:
        return None
    arg_open = answer.rfind("{", i_name, i_arg)
    if arg_open < 0:
        return None
    return ToolFormat(answer[start:i_name], answer[i_name + len(_NAME) : arg_open])


@dataclass
class ToolCall:
    """One parsed call; ``arguments`` is a JSON string, as in OpenAI's API."""

    name: str
    arguments: str
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = "call_" + uuid.uuid4().hex[:24]

    def to_openai(self) -> dict[str, Any]:
        """The ``tool_calls`` entry of a response message."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


def _call_from(obj: Any, names: set[str]) -> ToolCall | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    if names and obj["name"] not in names:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if not isinstance(args, str):
        args = json.dumps(args, ensure_ascii=False)
    return ToolCall(obj["name"], args)


def parse_tool_calls(text: str, tool_names: set[str]) -> tuple[str | None, list[ToolCall]]:
    """Split an answer into content and tool calls.

    Understands ``<tool_call>{json}</tool_call>`` blocks (Qwen, Hermes and our tiny template) and
    an answer that is a single JSON object ``{"name": ..., "arguments"|"parameters": ...}``
    (Llama 3.x). Calls of unknown functions or invalid JSON are left in the content.
    """
    calls: list[ToolCall] = []
    kept: list[str] = []
    pos = 0
    for m in _BLOCK.finditer(text):
        try:
            call = _call_from(json.loads(m.group(1)), tool_names)
        except json.JSONDecodeError:
            call = None
        if call is None:
            continue
        kept.append(text[pos : m.start()])
        pos = m.end()
        calls.append(call)
    if calls:
        kept.append(text[pos:])
        content = "".join(kept).strip()
        return content or None, calls
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            call = _call_from(json.loads(stripped), tool_names)
        except json.JSONDecodeError:
            call = None
        if call is not None:
            return None, [call]
    return text, []


def _text_of(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            raise ConfigError(
                f"{where}: content part of type {kind!r} is not supported (text only)"
            )
        parts.append(part.get("text", ""))
    return "".join(parts)


def to_template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI chat messages -> the dicts chat templates expect.

    Content parts are joined into text, ``developer`` becomes ``system``, and tool-call arguments
    (JSON strings on the wire) become objects, which is what Hugging Face templates render.
    """
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        role = "system" if m.get("role") == "developer" else m.get("role")
        msg: dict[str, Any] = {
            "role": role,
            "content": _text_of(m.get("content"), f"messages[{i}]"),
        }
        if m.get("name"):
            msg["name"] = m["name"]
        if role == "tool" and m.get("tool_call_id"):
            msg["tool_call_id"] = m["tool_call_id"]
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                fn = dict(call.get("function") or {})
                args = fn.get("arguments")
                if isinstance(args, str):
                    # Invalid JSON stays a raw string; the template prints it as is.
                    with contextlib.suppress(json.JSONDecodeError):
                        fn["arguments"] = json.loads(args) if args.strip() else {}
                calls.append({"id": call.get("id"), "type": "function", "function": fn})
            msg["tool_calls"] = calls
        out.append(msg)
    return out
