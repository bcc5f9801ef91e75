"""The registered converters: one small function per source format.

Each takes a record (already renamed by ``columns``) and a ``Context`` and returns a canonical
example, raising ``Invalid`` for anything wrong with the record.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tunesmith.data.formats._base import Context, Invalid, as_text, need, present, register, short
from tunesmith.data.formats._messages import (
    as_list,
    check_order,
    check_placeholders,
    parse_messages,
    parse_tools,
    resolve_images,
)
from tunesmith.data.types import Conversation, KTOExample, Message, PreferencePair, TextDoc

_SHARED = frozenset({"system", "tools", "images", "image"})
"""Fields ``finish`` reads itself; every other unread field goes to ``Conversation.meta``."""


def finish(
    messages: list[Message],
    rec: dict[str, Any],
    ctx: Context,
    consumed: Iterable[str],
    *,
    part_images: list[str] | None = None,
    ending: str = "assistant",
) -> Conversation:
    """Validate the messages and attach tools, images and the unread fields as ``meta``."""
    check_order(messages, ending)
    tools = parse_tools(rec.get("tools"))
    images = resolve_images(rec.get(present(rec, "images", "image") or "images"), ctx)
    if part_images:
        if images:
            raise Invalid(
                "images given both in an images field and in image_url content parts",
                "use one of the two",
                "image count mismatch",
            )
        images = resolve_images(part_images, ctx)
    check_placeholders(messages, images)
    skip = _SHARED | set(consumed)
    meta = {k: v for k, v in rec.items() if k not in skip and v is not None}
    return Conversation(messages, tools, images, ctx.source, meta)


def with_system(messages: list[Message], rec: dict[str, Any]) -> list[Message]:
    """Prepend the record's ``system`` field unless the messages already start with one."""
    system = as_text(rec.get("system"), "system")
    if system and not (messages and messages[0].role == "system"):
        return [Message("system", system), *messages]
    return messages


def history(value: Any) -> list[Message]:
    """``[[question, answer], ...]`` -> alternating user/assistant messages."""
    if value is None or value == "":  # an empty CSV cell
        return []
    out: list[Message] = []
    for i, pair in enumerate(as_list(value, "history"), start=1):
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise Invalid(
                f"history item {i} must be a [question, answer] pair, got {short(pair)}",
                'write history as [["q1", "a1"], ["q2", "a2"]]',
                "wrong type",
            )
        out.append(Message("user", as_text(pair[0], f"history item {i} question")))
        out.append(Message("assistant", as_text(pair[1], f"history item {i} answer")))
    return out


def _chat(rec: dict[str, Any], ctx: Context, keys: tuple[str, ...]) -> Conversation:
    items = as_list(need(rec, ctx, *keys), present(rec, *keys) or keys[0])
    messages, part_images = parse_messages(items, ctx.tags)
    return finish(with_system(messages, rec), rec, ctx, keys, part_images=part_images)


def _user_text(rec: dict[str, Any], ctx: Context) -> str:
    """Alpaca's user turn: instruction, then the input on a new line when there is one."""
    instruction = as_text(need(rec, ctx, "instruction", "prompt"), "instruction")
    extra = as_text(rec.get(present(rec, "input", "query") or "input"), "input")
    return f"{instruction}\n{extra}" if extra else instruction


@register("alpaca")
def alpaca(rec: dict[str, Any], ctx: Context) -> Conversation:
    """``instruction``/``input``/``output`` (+ ``system``, ``history``) -> one or more turns."""
    user = _user_text(rec, ctx)
    output = as_text(need(rec, ctx, "output", "response", "completion"), "output")
    messages = [*history(rec.get("history")), Message("user", user), Message("assistant", output)]
    consumed = ("instruction", "prompt", "input", "query", "output", "response", "completion")
    return finish(with_system(messages, rec), rec, ctx, (*consumed, "history"))


@register("sharegpt")
def sharegpt(rec: dict[str, Any], ctx: Context) -> Conversation:
    """``conversations: [{from, value}]`` with human/gpt/system/function_call/observation."""
    return _chat(rec, ctx, ("conversations", "messages"))


@register("openai")
def openai(rec: dict[str, Any], ctx: Context) -> Conversation:
    """``messages: [{role, content}]`` with tool calls, content parts, ``loss``/``weight``."""
    return _chat(rec, ctx, ("messages", "conversations"))


@register("llava")
def llava(rec: dict[str, Any], ctx: Context) -> Conversation:
    """``image``/``images`` + ``conversations`` with ``<image>`` placeholders."""
    need(rec, ctx, "images", "image")
    return _chat(rec, ctx, ("conversations", "messages"))


@register("xtuner")
def xtuner(rec: dict[str, Any], ctx: Context) -> Conversation:
    """``conversation: [{system?, input, output, output_with_loss?}]``."""
    messages: list[Message] = []
    for i, turn in enumerate(as_list(need(rec, ctx, "conversation"), "conversation"), start=1):
        if not isinstance(turn, dict):
            raise Invalid(
                f"conversation turn {i} must be an object, got {type(turn).__name__}",
                "write turns as {input, output} objects",
                "wrong type",
            )
        if turn.get("system"):
            messages.append(Message("system", as_text(turn["system"], f"turn {i} system")))
        if "input" not in turn or "output" not in turn:
            raise Invalid(
                f"conversation turn {i} needs input and output",
                "give every turn an input and an output",
                "missing column",
            )
        loss = turn.get("output_with_loss")
        if loss is not None and not isinstance(loss, bool):
            raise Invalid(
                f"turn {i} output_with_loss must be true or false",
                "use a JSON boolean",
                "wrong type",
            )
        messages.append(Message("user", as_text(turn["input"], f"turn {i} input")))
        messages.append(Message("assistant", as_text(turn["output"], f"turn {i} output"), loss))
    return finish(messages, rec, ctx, ("conversation",))


@register("query_response")
def query_response(rec: dict[str, Any], ctx: Context) -> Conversation:
    """ms-swift's ``query``/``response``/``history``/``system``; ``tag`` -> ``meta["lang"]``."""
    query = as_text(need(rec, ctx, "query"), "query")
    response = as_text(need(rec, ctx, "response"), "response")
    messages = [
        *history(rec.get("history")),
        Message("user", query),
        Message("assistant", response),
    ]
    conv = finish(with_system(messages, rec), rec, ctx, ("query", "response", "history", "tag"))
    if isinstance(rec.get("tag"), str):
        conv.meta["lang"] = rec["tag"]
    return conv


@register("text")
def text(rec: dict[str, Any], ctx: Context) -> TextDoc:
    """``text`` -> a document for continued pre-training."""
    body = as_text(need(rec, ctx, "text"), "text")
    if not body.strip():
        raise Invalid("empty text", "remove the record or give it some text", "empty text")
    return TextDoc(body, ctx.source)


def _prompt_side(
    rec: dict[str, Any], ctx: Context
) -> tuple[list[Message], list[str], tuple[str, ...]] | None:
    """The prompt of a preference/KTO record: a message list, or Alpaca-style text fields."""
    key = present(rec, "conversations", "messages")
    if key is None and isinstance(rec.get("prompt"), list):
        key = "prompt"
    if key is not None:
        messages, part_images = parse_messages(as_list(rec[key], key), ctx.tags)
        return with_system(messages, rec), part_images, (key,)
    if present(rec, "instruction", "prompt") is None:
        return None
    messages = [*history(rec.get("history")), Message("user", _user_text(rec, ctx))]
    consumed = ("instruction", "prompt", "input", "query", "history")
    return with_system(messages, rec), [], consumed


def _reply(value: Any, what: str, ctx: Context) -> tuple[list[Message], Message]:
    """A chosen/rejected reply: a string, a message dict or a message list (prefix, last)."""
    if isinstance(value, str):
        prefix, msg = [], Message("assistant", value)
    elif isinstance(value, dict):
        prefix, msg = [], parse_messages([value], ctx.tags, what)[0][0]
    elif isinstance(value, list):
        messages = parse_messages(value, ctx.tags, what)[0]
        if not messages:
            raise Invalid(
                f"{what} is an empty list", f"give {what} a reply", "empty assistant turn"
            )
        prefix, msg = messages[:-1], messages[-1]
    else:
        raise Invalid(
            f"{what} must be a string or an assistant message, got {type(value).__name__}",
            f'write {what} as "text" or {{"role": "assistant", "content": "text"}}',
            "wrong type",
        )
    if msg.role != "assistant":
        raise Invalid(
            f"{what} reply has role {msg.role}, not assistant",
            f"make {what} an assistant reply",
            "wrong role order",
        )
    if not msg.content.strip() and not msg.tool_calls:
        raise Invalid(f"empty {what} reply", f"give {what} some text", "empty assistant turn")
    return prefix, msg


@register("preference")
def preference(rec: dict[str, Any], ctx: Context) -> PreferencePair:
    """A prompt (messages, ``prompt`` or ``instruction``) with ``chosen``/``rejected`` replies.

    ms-swift's layout works too: ``messages`` ending with the chosen reply plus
    ``rejected_response``.
    """
    if present(rec, "chosen") is None and present(rec, "rejected_response") is not None:
        return _swift_preference(rec, ctx)
    chosen_prefix, chosen = _reply(need(rec, ctx, "chosen"), "chosen", ctx)
    rejected_prefix, rejected = _reply(need(rec, ctx, "rejected"), "rejected", ctx)
    side = _prompt_side(rec, ctx)
    if side is None:  # TRL's implicit prompt: chosen/rejected are whole conversations
        if not chosen_prefix or chosen_prefix != rejected_prefix:
            raise Invalid(
                "no prompt (conversations, messages, prompt or instruction)",
                "add a prompt field, or give chosen and rejected as full conversations "
                "that share the same prompt",
                "missing column",
            )
        side = (with_system(chosen_prefix, rec), [], ())
    elif chosen_prefix or rejected_prefix:
        raise Invalid(
            "chosen/rejected hold several messages although the record has a prompt",
            "give chosen and rejected as single assistant replies",
            "wrong type",
        )
    messages, part_images, consumed = side
    prompt = finish(
        messages,
        rec,
        ctx,
        (*consumed, "chosen", "rejected"),
        part_images=part_images,
        ending="prompt",
    )
    return PreferencePair(prompt, chosen, rejected, ctx.source)


def _swift_preference(rec: dict[str, Any], ctx: Context) -> PreferencePair:
    side = _prompt_side(rec, ctx)
    messages, part_images, consumed = side if side is not None else ([], [], ())
    if not messages or messages[-1].role != "assistant":
        raise Invalid(
            "with rejected_response, the messages must end with the chosen assistant reply",
            "add the chosen reply as the last message",
            "wrong role order",
        )
    _, rejected = _reply(rec["rejected_response"], "rejected_response", ctx)
    prompt = finish(
        messages[:-1],
        rec,
        ctx,
        (*consumed, "rejected_response"),
        part_images=part_images,
        ending="prompt",
    )
    chosen = messages[-1]
    if not chosen.content.strip() and not chosen.tool_calls:
        raise Invalid("empty chosen reply", "give chosen some text", "empty assistant turn")
    return PreferencePair(prompt, chosen, rejected, ctx.source)


_TRUE = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _label(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE:  # CSV cells are strings
        return _TRUE[value.strip().lower()]
    raise Invalid(
        f"label must be true or false, got {short(value)}",
        "mark desirable replies true and undesirable ones false",
        "invalid label",
    )


@register("kto")
def kto(rec: dict[str, Any], ctx: Context) -> KTOExample:
    """A conversation (or prompt + ``completion``) with a boolean ``label`` on its last reply."""
    desirable = _label(need(rec, ctx, "label", "kto_tag"))
    side = _prompt_side(rec, ctx)
    completion_key = present(rec, "completion", "output", "response")
    if side is None and completion_key is None:
        need(rec, ctx, "messages", "conversations")
    messages, part_images, consumed = side or ([], [], ())
    if completion_key is not None:
        value = rec[completion_key]
        if isinstance(value, str):
            messages = [*messages, Message("assistant", value)]
        else:
            items = [value] if isinstance(value, dict) else as_list(value, completion_key)
            messages = [*messages, *parse_messages(items, ctx.tags, completion_key)[0]]
        consumed = (*consumed, completion_key)
    conv = finish(messages, rec, ctx, (*consumed, "label", "kto_tag"), part_images=part_images)
    return KTOExample(conv, desirable, ctx.source)
