"""Message lists, tool calls, tool definitions, images and role-order validation.

One parser reads both ShareGPT (``{from, value}``) and OpenAI (``{role, content}``) message dicts,
so every format that carries a message list shares the same rules and error messages.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from tunesmith.data.formats._base import Context, Invalid, Tags, as_text, short
from tunesmith.data.types import Message

IMAGE = "<image>"
_URL = re.compile(r"^(https?|data|s3|gs):", re.IGNORECASE)
_CALL_FIX = 'write it as {"name": ..., "arguments": {...}}'


def as_list(value: Any, what: str) -> list[Any]:
    """A list field; a JSON string holding a list (as CSV cells do) is parsed."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise Invalid(
                f"{what} is not valid JSON ({exc.msg} at column {exc.colno})",
                "write it as a JSON list",
                "wrong type",
            ) from None
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise Invalid(
            f"{what} must be a list, got {type(value).__name__}",
            "write it as a JSON list",
            "wrong type",
        )
    return value


def parse_messages(
    items: list[Any], tags: Tags, what: str = "message"
) -> tuple[list[Message], list[str]]:
    """Parse message dicts into ``Message`` objects.

    Returns:
        The messages and the image references found in OpenAI-style content parts (each part
        leaves an ``<image>`` placeholder in the text).
    """
    messages: list[Message] = []
    images: list[str] = []
    pending: list[str] = []  # names of tool calls still waiting for their results
    for n, item in enumerate(items, start=1):
        msg, part_images = _parse_message(item, tags, f"{what} {n}")
        images.extend(part_images)
        if msg.tool_calls:
            pending = [c["function"]["name"] for c in msg.tool_calls]
        elif msg.role == "tool" and msg.name is None and pending:
            msg.name = pending.pop(0)
        messages.append(msg)
    return messages, images


def _parse_message(item: Any, tags: Tags, label: str) -> tuple[Message, list[str]]:
    if not isinstance(item, dict):
        raise Invalid(
            f"{label} must be an object, got {type(item).__name__}",
            "write messages as {role, content} (or {from, value}) objects",
            "wrong type",
        )
    role_key = tags.role_key or ("from" if "from" in item else "role")
    raw_role = item.get(role_key)
    if raw_role is None:
        raise Invalid(
            f"{label} has no {role_key!r} field",
            "give every message a role, or name the field with `tags: {role_tag: ...}`",
            "missing column",
        )
    role = tags.names.get(raw_role) if isinstance(raw_role, str) else None
    if role is None and isinstance(raw_role, str):
        role = tags.names.get(raw_role.lower())
    if role is None:
        raise Invalid(
            f"unknown role {short(raw_role)} in {label}",
            "use system/user/assistant/tool (ShareGPT: human/gpt/function_call/observation) "
            "or map it with `tags:`",
            "unknown role",
        )
    content_key = tags.content_key or ("value" if "value" in item else "content")
    raw_content = item.get(content_key)
    images: list[str] = []
    if isinstance(raw_content, list):
        content, images = _content_parts(raw_content, label)
    else:
        content = as_text(raw_content, f"{label} content")

    tool_calls: list[dict[str, Any]] = []
    if role == "call":  # ShareGPT function_call: the value is the JSON call itself
        tool_calls = parse_call_text(content, label)
        role, content = "assistant", ""
    if item.get("tool_calls") is not None:
        for call in as_list(item["tool_calls"], f"{label} tool_calls"):
            tool_calls.append(normalize_call(call, label))
    if isinstance(item.get("function_call"), dict):  # legacy OpenAI single call
        tool_calls.append(normalize_call(item["function_call"], label))

    loss = item.get("loss")
    if loss is not None and not isinstance(loss, bool):
        raise Invalid(
            f"{label} loss must be true or false, got {short(loss)}",
            "use a JSON boolean",
            "wrong type",
        )
    weight = item.get("weight")
    if weight is None:
        weight = 1.0
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
        raise Invalid(
            f"{label} weight must be a number >= 0, got {short(weight)}",
            "use e.g. 1.0 (trained) or 0 (not trained)",
            "wrong type",
        )
    if weight == 0 and loss is None:
        loss = False  # OpenAI's fine-tuning format marks untrained turns with weight 0
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise Invalid(f"{label} name must be a string", "write the tool name as text", "wrong type")
    msg = Message(role, content, loss, float(weight), tool_calls or None, name)  # type: ignore[arg-type]
    return msg, images


def _content_parts(parts: list[Any], label: str) -> tuple[str, list[str]]:
    texts: list[str] = []
    images: list[str] = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in ("image_url", "image"):
            ref = part.get(kind)
            if isinstance(ref, dict):
                ref = ref.get("url") or ref.get("path")
            if not isinstance(ref, str) or not ref:
                raise Invalid(
                    f"{label} has an image part without a url",
                    'write {"type": "image_url", "image_url": {"url": "path/or/url"}}',
                    "wrong type",
                )
            texts.append(IMAGE)
            images.append(ref)
        else:
            raise Invalid(
                f"{label} has an unsupported content part {short(part)}",
                "use text and image_url parts",
                "wrong type",
            )
    return "".join(texts), images


def parse_call_text(text: str, label: str) -> list[dict[str, Any]]:
    """Tool calls from a ShareGPT ``function_call`` value (one JSON call or a list of them)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(
            f"function_call in {label} is not valid JSON ({exc.msg} at column {exc.colno})",
            _CALL_FIX,
            "invalid tool call",
        ) from None
    calls = data if isinstance(data, list) else [data]
    return [normalize_call(c, label) for c in calls]


def normalize_call(obj: Any, label: str) -> dict[str, Any]:
    """One tool call as ``{"type": "function", "function": {"name", "arguments": dict}}``."""
    if not isinstance(obj, dict):
        raise Invalid(f"tool call in {label} must be an object", _CALL_FIX, "invalid tool call")
    fn = obj["function"] if isinstance(obj.get("function"), dict) else obj
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise Invalid(f"tool call in {label} has no name", _CALL_FIX, "invalid tool call")
    args = fn.get("arguments", fn.get("parameters"))
    if args is None or args == "":
        args = {}
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            raise Invalid(
                f"arguments of tool call {name!r} in {label} are not valid JSON",
                "give arguments as a JSON object",
                "invalid tool call",
            ) from None
    if not isinstance(args, dict):
        raise Invalid(
            f"arguments of tool call {name!r} in {label} must be an object",
            "give arguments as a JSON object",
            "invalid tool call",
        )
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": args}}
    if isinstance(obj.get("id"), str):
        call["id"] = obj["id"]
    return call


def parse_tools(value: Any) -> list[dict[str, Any]] | None:
    """Tool definitions (a list or a JSON string of one) in OpenAI form; empty -> ``None``."""
    fix = 'give tools as a JSON list of {"name", "description", "parameters"} objects'
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise Invalid(
                f"tools is not valid JSON ({exc.msg} at column {exc.colno})", fix, "invalid tools"
            ) from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list | tuple):
        raise Invalid(f"tools must be a list, got {type(value).__name__}", fix, "invalid tools")
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(value, start=1):
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            tools.append(tool)
        elif isinstance(tool, dict) and isinstance(tool.get("name"), str):
            tools.append({"type": "function", "function": tool})
        else:
            raise Invalid(f"tool {i} has no name", fix, "invalid tools")
    return tools or None


_NEXT: dict[str, tuple[str, ...]] = {
    "start": ("user",),
    "user": ("assistant", "call"),
    "assistant": ("user",),
    "call": ("tool",),
    "tool": ("tool", "assistant", "call"),
}
_SHOWN = {"start": "the start", "call": "an assistant tool call"}


def check_order(messages: list[Message], ending: str = "assistant") -> None:
    """Validate roles and contents.

    An optional system message comes first; user and assistant turns alternate; tool results
    follow an assistant tool call. ``ending="assistant"`` (SFT, KTO) requires an assistant turn
    last; ``ending="prompt"`` (preference prompts) requires a user or tool turn last.
    """
    roles = ["call" if m.role == "assistant" and m.tool_calls else m.role for m in messages]
    for i, role in enumerate(roles[1:], start=2):
        if role == "system":
            raise Invalid(
                f"system message at position {i}",
                "a system message may only come first; merge it into the first one",
                "system not first",
            )
    start = 1 if roles[:1] == ["system"] else 0
    if len(roles) == start:
        raise Invalid(
            "no user or assistant messages",
            "add a user turn and an assistant reply",
            "empty conversation",
        )
    prev = "start"
    for i in range(start, len(roles)):
        if roles[i] not in _NEXT[prev]:
            seq = ",".join(roles[:12]) + (",..." if len(roles) > 12 else "")
            raise Invalid(
                f"wrong role order: {_SHOWN.get(roles[i], roles[i])} after "
                f"{_SHOWN.get(prev, prev)} at message {i + 1} (roles: {seq})",
                "turns must alternate user/assistant after an optional system message, "
                "and tool results must follow an assistant tool call",
                "wrong role order",
            )
        prev = roles[i]
    last = roles[-1]
    if ending == "assistant" and last not in ("assistant", "call"):
        raise Invalid(
            f"last turn is {last}, not assistant",
            "end every conversation with an assistant reply",
            "last turn not assistant",
        )
    if ending == "prompt" and last not in ("user", "tool"):
        raise Invalid(
            f"prompt ends with an {_SHOWN.get(last, last)} turn",
            "end the prompt with a user turn; the chosen/rejected replies follow it",
            "wrong role order",
        )
    for i, m in enumerate(messages, start=1):
        if m.role == "assistant" and not m.tool_calls and not m.content.strip():
            raise Invalid(
                f"empty assistant turn (message {i})",
                "give every assistant turn some text, or remove the sample",
                "empty assistant turn",
            )


def resolve_images(value: Any, ctx: Context) -> list[str]:
    """Image references -> absolute paths (URLs kept); relative paths against ``ctx.media_dir``."""
    if value is None or value == "":  # an empty CSV cell
        return []
    if isinstance(value, str) and not value.lstrip().startswith("["):
        value = [value]
    refs = as_list(value, "images")
    out: list[str] = []
    for i, ref in enumerate(refs, start=1):
        if isinstance(ref, dict) and isinstance(ref.get("path"), str):
            ref = ref["path"]  # datasets' Image feature without decoding
        if not isinstance(ref, str) or not ref:
            raise Invalid(
                f"image {i} must be a file path or URL, got {type(ref).__name__}",
                "list images as paths relative to media_dir",
                "wrong type",
            )
        if _URL.match(ref):
            out.append(ref)
            continue
        path = Path(ref).expanduser()
        if not path.is_absolute():
            path = ctx.media_dir / path
        if not path.is_file():
            raise Invalid(
                f"image file not found: {path}",
                "fix the path or set media_dir (relative image paths are resolved against it)",
                "missing image",
            )
        out.append(os.path.abspath(path))
    return out


def check_placeholders(messages: list[Message], images: list[str]) -> None:
    """The text must hold exactly one ``<image>`` per image."""
    count = sum(m.content.count(IMAGE) for m in messages)
    if count != len(images):
        raise Invalid(
            f"{count} {IMAGE} placeholder(s) in the text but {len(images)} image(s)",
            f"put exactly one {IMAGE} in the text for each image",
            "image count mismatch",
        )
