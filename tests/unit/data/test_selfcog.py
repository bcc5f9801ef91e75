"""Identity placeholders are filled per language, in every message, without mutating the input."""

from __future__ import annotations

import pytest

from tunesmith.data.selfcog import detect_lang, has_placeholders, substitute
from tunesmith.data.types import Conversation, KTOExample, Message, PreferencePair, TextDoc
from tunesmith.errors import DataError

NAME = {"en": "Nova", "zh": "诺瓦"}
AUTHOR = {"en": "Acme", "zh": "艾克米"}


def conv(user: str, reply: str, **meta: str) -> Conversation:
    return Conversation([Message("user", user), Message("assistant", reply)], meta=dict(meta))


def test_plain_strings_and_all_spellings() -> None:
    example = Conversation(
        [
            Message("system", "You are {{name}}."),
            Message("user", "who?"),
            Message("assistant", "I am {{NAME}} by {{ AUTHOR }}, {{ name }} by {{author}}."),
        ]
    )
    got = substitute(example, "Nova", "Acme")
    assert [m.content for m in got.messages] == [
        "You are Nova.",
        "who?",
        "I am Nova by Acme, Nova by Acme.",
    ]
    assert has_placeholders(example) and not has_placeholders(got)
    assert example.messages[2].content.startswith("I am {{NAME}}")  # input untouched


def test_language_from_meta_tag_or_script() -> None:
    assert substitute(conv("hi", "{{NAME}}", lang="zh"), NAME, AUTHOR).messages[1].content == "诺瓦"
    assert substitute(conv("hi", "{{NAME}}", tag="zh"), NAME, AUTHOR).messages[1].content == "诺瓦"
    assert substitute(conv("你好", "我是{{name}}"), NAME, AUTHOR).messages[1].content == "我是诺瓦"
    assert (
        substitute(conv("hello", "I am {{name}}"), NAME, AUTHOR).messages[1].content == "I am Nova"
    )


def test_fallback_to_en_then_first_value() -> None:
    assert substitute(conv("hi", "{{name}}", lang="fr"), NAME, AUTHOR).messages[1].content == "Nova"
    only_zh = {"zh": "诺瓦"}
    assert substitute(conv("hi", "{{name}}"), only_zh, "A").messages[1].content == "诺瓦"
    assert substitute(conv("hi", "{{name}}", lang="zh-CN"), NAME, "A").messages[1].content == "诺瓦"
    with pytest.raises(DataError, match="identity name: no values given"):
        substitute(conv("hi", "{{name}}"), {}, "A")


def test_detect_lang() -> None:
    assert [detect_lang(t) for t in ("hello", "你好", "こんにちは", "안녕하세요")] == [
        "en",
        "zh",
        "ja",
        "ko",
    ]


def test_preference_kto_and_text_examples() -> None:
    pair = PreferencePair(
        Conversation([Message("user", "你是谁？")]),
        Message("assistant", "我是{{NAME}}"),
        Message("assistant", "我是{{AUTHOR}}的"),
    )
    got = substitute(pair, NAME, AUTHOR)
    assert (got.chosen.content, got.rejected.content) == ("我是诺瓦", "我是艾克米的")
    kto = KTOExample(conv("hi", "{{name}}!"), desirable=True)
    assert substitute(kto, NAME, AUTHOR).conversation.messages[1].content == "Nova!"
    assert substitute(TextDoc("{{name}} by {{author}}"), NAME, AUTHOR) == TextDoc("Nova by Acme")
    assert has_placeholders(kto) and has_placeholders(pair)
    assert not has_placeholders(TextDoc("{name}"))
