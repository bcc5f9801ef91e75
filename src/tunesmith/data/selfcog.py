"""Identity ("self-cognition") data: fill in the model's name and author.

Identity sets write ``{{name}}``/``{{author}}`` (LLaMA-Factory) or ``{{NAME}}``/``{{AUTHOR}}``
(ms-swift) in their replies. ``substitute`` replaces them, choosing per-language values
(``{"en": "Nova", "zh": "诺瓦"}``) from the sample's language tag or, failing that, from the script
of its user turns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import TypeVar

from tunesmith.data.types import Conversation, KTOExample, Message, PreferencePair, TextDoc
from tunesmith.errors import DataError

_PLACEHOLDER = re.compile(r"\{\{\s*(name|author)\s*\}\}", re.IGNORECASE)
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

E = TypeVar("E", Conversation, PreferencePair, KTOExample, TextDoc)


def detect_lang(text: str) -> str:
    """``ko``/``ja``/``zh`` when the text holds Hangul/Kana/Han characters, else ``en``."""
    if _HANGUL.search(text):
        return "ko"
    if _KANA.search(text):
        return "ja"
    return "zh" if _HAN.search(text) else "en"


def _lang_of(conv: Conversation) -> str:
    for key in ("lang", "tag"):
        value = conv.meta.get(key)
        if isinstance(value, str) and value:
            return value.lower()
    users = [m.content for m in conv.messages if m.role == "user"]
    return detect_lang(" ".join(users or [m.content for m in conv.messages]))


def _pick(values: str | Mapping[str, str], lang: str, what: str) -> str:
    if isinstance(values, str):
        return values
    if not values:
        raise DataError(f"identity {what}: no values given; set e.g. {what}: {{en: ..., zh: ...}}")
    base = lang.split("-")[0].split("_")[0]
    for key in (lang, base, "en"):
        if key in values:
            return values[key]
    return next(iter(values.values()))


def _fill(text: str, name: str, author: str) -> str:
    return _PLACEHOLDER.sub(lambda m: name if m.group(1).lower() == "name" else author, text)


def _fill_conv(conv: Conversation, name: str, author: str) -> Conversation:
    messages = [replace(m, content=_fill(m.content, name, author)) for m in conv.messages]
    return replace(conv, messages=messages, meta=dict(conv.meta))


def substitute(example: E, name: str | Mapping[str, str], author: str | Mapping[str, str]) -> E:
    """Replace the name/author placeholders in every message of ``example``.

    Args:
        example: A conversation (preference pairs, KTO examples and documents work too).
        name: The model's name, or one per language (``{"en": "Nova", "zh": "诺瓦"}``).
        author: The author, likewise.

    Returns:
        A new example; the input is left unchanged. The language is ``meta["lang"]`` (or
        ``meta["tag"]``), else detected from the user turns; values fall back to ``en``, then to
        the first one given.
    """
    if isinstance(example, TextDoc):
        lang = detect_lang(example.text)
        return replace(
            example,
            text=_fill(example.text, _pick(name, lang, "name"), _pick(author, lang, "author")),
        )
    if isinstance(example, PreferencePair):
        conv = example.prompt
    elif isinstance(example, KTOExample):
        conv = example.conversation
    else:
        conv = example
    lang = _lang_of(conv)
    n, a = _pick(name, lang, "name"), _pick(author, lang, "author")
    if isinstance(example, PreferencePair):
        return replace(
            example,
            prompt=_fill_conv(example.prompt, n, a),
            chosen=replace(example.chosen, content=_fill(example.chosen.content, n, a)),
            rejected=replace(example.rejected, content=_fill(example.rejected.content, n, a)),
        )
    if isinstance(example, KTOExample):
        return replace(example, conversation=_fill_conv(example.conversation, n, a))
    return _fill_conv(example, n, a)


def _messages(example: Conversation | PreferencePair | KTOExample) -> list[Message]:
    if isinstance(example, PreferencePair):
        return [*example.prompt.messages, example.chosen, example.rejected]
    if isinstance(example, KTOExample):
        return example.conversation.messages
    return example.messages


def has_placeholders(example: Conversation | PreferencePair | KTOExample | TextDoc) -> bool:
    """Whether any message (or the document) still holds a name/author placeholder."""
    if isinstance(example, TextDoc):
        return bool(_PLACEHOLDER.search(example.text))
    return any(_PLACEHOLDER.search(m.content) for m in _messages(example))
