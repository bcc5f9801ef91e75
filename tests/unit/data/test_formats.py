"""Each source format converts to exactly the expected canonical objects."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tunesmith.data.formats import (
    FORMATS,
    apply_columns,
    check_options,
    convert,
    detect_format,
    register,
)
from tunesmith.data.sources import Record
from tunesmith.data.types import Conversation, KTOExample, Message, PreferencePair, TextDoc
from tunesmith.errors import DataError


def rec(data: dict[str, Any], file: str = "data/train.jsonl", line: int = 3) -> Record:
    return Record(data, file, line)


def fn_call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_registry_holds_every_format() -> None:
    assert set(FORMATS) == {
        "alpaca",
        "sharegpt",
        "openai",
        "xtuner",
        "llava",
        "query_response",
        "preference",
        "kto",
        "text",
    }


def test_alpaca_with_input_system_and_history() -> None:
    data = {
        "instruction": "Translate to French",
        "input": "good morning",
        "output": "bonjour",
        "system": "You translate.",
        "history": [["hi", "hello!"], ["how are you?", "fine"]],
    }
    assert convert(rec(data), source="demo") == Conversation(
        messages=[
            Message("system", "You translate."),
            Message("user", "hi"),
            Message("assistant", "hello!"),
            Message("user", "how are you?"),
            Message("assistant", "fine"),
            Message("user", "Translate to French\ngood morning"),
            Message("assistant", "bonjour"),
        ],
        source="demo",
    )


def test_alpaca_empty_input_and_extra_fields_go_to_meta() -> None:
    data = {"instruction": "Say hi", "input": "", "output": "hi", "id": 7, "lang": "en"}
    assert convert(rec(data)) == Conversation(
        [Message("user", "Say hi"), Message("assistant", "hi")], meta={"id": 7, "lang": "en"}
    )


def test_sharegpt_with_tools_function_call_and_observation() -> None:
    data = {
        "conversations": [
            {"from": "human", "value": "Weather in Paris?"},
            {
                "from": "function_call",
                "value": '{"name": "get_weather", "arguments": {"city": "Paris"}}',
            },
            {"from": "observation", "value": '{"temp": 21}'},
            {"from": "gpt", "value": "It is 21 degrees."},
        ],
        "system": "Be brief.",
        "tools": json.dumps([WEATHER_TOOL]),
    }
    assert convert(rec(data), "sharegpt") == Conversation(
        messages=[
            Message("system", "Be brief."),
            Message("user", "Weather in Paris?"),
            Message("assistant", "", tool_calls=[fn_call("get_weather", city="Paris")]),
            Message("tool", '{"temp": 21}', name="get_weather"),
            Message("assistant", "It is 21 degrees."),
        ],
        tools=[{"type": "function", "function": WEATHER_TOOL}],
    )


def test_sharegpt_parallel_calls_name_each_result_in_order() -> None:
    calls = [
        {"name": "a", "arguments": {}},
        {"name": "b", "arguments": '{"x": 1}'},
    ]
    data = {
        "conversations": [
            {"from": "human", "value": "go"},
            {"from": "function_call", "value": json.dumps(calls)},
            {"from": "observation", "value": "ra"},
            {"from": "observation", "value": "rb"},
            {"from": "gpt", "value": "done"},
        ]
    }
    conv = convert(rec(data))
    assert isinstance(conv, Conversation)
    assert conv.messages[1].tool_calls == [fn_call("a"), fn_call("b", x=1)]
    assert [(m.role, m.name) for m in conv.messages[2:4]] == [("tool", "a"), ("tool", "b")]


def test_sharegpt_custom_tags() -> None:
    data = {
        "dialog": [
            {"speaker": "SYS", "text": "rules"},
            {"speaker": "Q", "text": "q1"},
            {"speaker": "A", "text": "a1"},
        ]
    }
    tags = {
        "role_tag": "speaker",
        "content_tag": "text",
        "user_tag": "Q",
        "assistant_tag": "A",
        "system_tag": "SYS",
    }
    got = convert(rec(data), "sharegpt", columns={"conversations": "dialog"}, tags=tags)
    assert got == Conversation(
        [Message("system", "rules"), Message("user", "q1"), Message("assistant", "a1")]
    )


def test_openai_parts_tool_calls_loss_weight_and_meta(tmp_path: Path) -> None:
    (tmp_path / "cat.png").write_bytes(b"png")
    data = {
        "messages": [
            {"role": "system", "content": "sys"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is "},
                    {"type": "image_url", "image_url": {"url": "cat.png"}},
                    {"type": "text", "text": " and the weather?"},
                ],
            },
            {"role": "assistant", "content": "A cat.", "loss": False},
            {"role": "user", "content": "Weather in Rome"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    }
                ],
            },
            {"role": "tool", "content": "sunny", "name": "get_weather"},
            {"role": "assistant", "content": "Sunny.", "weight": 0.5},
            {"role": "user", "content": "thanks"},
            {"role": "assistant", "content": "welcome", "weight": 0},
        ],
        "tools": [{"type": "function", "function": WEATHER_TOOL}],
        "lang": "en",
    }
    call = {"id": "c1", **fn_call("get_weather", city="Rome")}
    assert convert(rec(data, str(tmp_path / "d.jsonl"))) == Conversation(
        messages=[
            Message("system", "sys"),
            Message("user", "What is <image> and the weather?"),
            Message("assistant", "A cat.", loss=False),
            Message("user", "Weather in Rome"),
            Message("assistant", "", tool_calls=[call]),
            Message("tool", "sunny", name="get_weather"),
            Message("assistant", "Sunny.", weight=0.5),
            Message("user", "thanks"),
            Message("assistant", "welcome", loss=False, weight=0.0),
        ],
        tools=[{"type": "function", "function": WEATHER_TOOL}],
        images=[os.path.abspath(tmp_path / "cat.png")],
        meta={"lang": "en"},
    )


def test_xtuner_turns_with_output_with_loss() -> None:
    data = {
        "conversation": [
            {"system": "sys", "input": "q1", "output": "a1", "output_with_loss": False},
            {"input": "q2", "output": "a2"},
        ]
    }
    assert convert(rec(data)) == Conversation(
        [
            Message("system", "sys"),
            Message("user", "q1"),
            Message("assistant", "a1", loss=False),
            Message("user", "q2"),
            Message("assistant", "a2"),
        ]
    )


def test_llava_images_resolved_against_media_dir(tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "coco").mkdir(parents=True)
    (media / "coco" / "1.jpg").write_bytes(b"jpg")
    data = {
        "id": "x1",
        "image": "coco/1.jpg",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is shown?"},
            {"from": "gpt", "value": "A dog."},
        ],
    }
    got = convert(rec(data, "elsewhere/llava.json"), media_dir=media)
    assert got == Conversation(
        [Message("user", "<image>\nWhat is shown?"), Message("assistant", "A dog.")],
        images=[os.path.abspath(media / "coco" / "1.jpg")],
        meta={"id": "x1"},
    )


def test_images_default_to_the_data_files_folder(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"jpg")
    data = {
        "messages": [
            {"role": "user", "content": "<image>hi"},
            {"role": "assistant", "content": "ok"},
        ],
        "images": ["a.jpg"],
    }
    got = convert(rec(data, str(tmp_path / "mm.json")))
    assert isinstance(got, Conversation)
    assert got.images == [os.path.abspath(tmp_path / "a.jpg")]


def test_query_response_tag_becomes_lang() -> None:
    data = {"query": "你是谁", "response": "我是{{NAME}}", "tag": "zh", "history": [["嗨", "你好"]]}
    assert convert(rec(data)) == Conversation(
        [
            Message("user", "嗨"),
            Message("assistant", "你好"),
            Message("user", "你是谁"),
            Message("assistant", "我是{{NAME}}"),
        ],
        meta={"lang": "zh"},
    )


def test_text() -> None:
    assert convert(rec({"text": "Once upon a time."}), source="c4") == TextDoc(
        "Once upon a time.", "c4"
    )


def test_preference_alpaca_style() -> None:
    data = {"instruction": "Pick", "input": "a or b", "chosen": "a", "rejected": "b", "system": "s"}
    assert convert(rec(data)) == PreferencePair(
        prompt=Conversation([Message("system", "s"), Message("user", "Pick\na or b")]),
        chosen=Message("assistant", "a"),
        rejected=Message("assistant", "b"),
    )


def test_preference_sharegpt_ranking() -> None:
    data = {
        "conversations": [
            {"from": "system", "value": "sys"},
            {"from": "human", "value": "q1"},
            {"from": "gpt", "value": "a1"},
            {"from": "human", "value": "q2"},
        ],
        "chosen": {"from": "gpt", "value": "good"},
        "rejected": {"from": "gpt", "value": "bad"},
    }
    expected = PreferencePair(
        prompt=Conversation(
            [
                Message("system", "sys"),
                Message("user", "q1"),
                Message("assistant", "a1"),
                Message("user", "q2"),
            ],
            source="dpo",
        ),
        chosen=Message("assistant", "good"),
        rejected=Message("assistant", "bad"),
        source="dpo",
    )
    assert convert(rec(data), "sharegpt", ranking=True, source="dpo") == expected
    assert convert(rec(data), source="dpo") == expected


def test_preference_openai_style_explicit_and_implicit_prompt() -> None:
    prompt = [{"role": "user", "content": "2+2?"}]
    explicit = {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    }
    implicit = {
        "chosen": [*prompt, {"role": "assistant", "content": "4"}],
        "rejected": [*prompt, {"role": "assistant", "content": "5"}],
    }
    expected = PreferencePair(
        Conversation([Message("user", "2+2?")]),
        Message("assistant", "4"),
        Message("assistant", "5"),
    )
    assert convert(rec(explicit)) == expected
    assert convert(rec(implicit)) == expected


def test_preference_ms_swift_rejected_response() -> None:
    data = {
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
        ],
        "rejected_response": "5",
    }
    assert convert(rec(data)) == PreferencePair(
        Conversation([Message("system", "s"), Message("user", "2+2?")]),
        Message("assistant", "4"),
        Message("assistant", "5"),
    )


def test_kto_messages_and_alpaca_style_labels() -> None:
    data = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "go away"},
        ],
        "label": False,
    }
    assert convert(rec(data)) == KTOExample(
        Conversation([Message("user", "hi"), Message("assistant", "go away")]), desirable=False
    )
    flat = {"prompt": "hi", "completion": "hello!", "label": "true"}  # CSV cells are strings
    assert convert(rec(flat), "kto") == KTOExample(
        Conversation([Message("user", "hi"), Message("assistant", "hello!")]), desirable=True
    )


@pytest.mark.parametrize(
    ("fields", "fmt"),
    [
        ({"instruction": "q", "input": "", "output": "a"}, "alpaca"),
        ({"prompt": "q", "response": "a"}, "alpaca"),
        ({"conversations": []}, "sharegpt"),
        ({"conversations": [], "image": "x.jpg"}, "llava"),
        ({"messages": [], "images": []}, "openai"),
        ({"conversation": []}, "xtuner"),
        ({"query": "q", "response": "a", "tag": "en"}, "query_response"),
        ({"conversations": [], "chosen": {}, "rejected": {}}, "preference"),
        ({"instruction": "q", "chosen": "a", "rejected": "b"}, "preference"),
        ({"messages": [], "rejected_response": "b"}, "preference"),
        ({"messages": [], "label": True}, "kto"),
        ({"text": "doc"}, "text"),
    ],
)
def test_detect_format(fields: dict[str, Any], fmt: str) -> None:
    assert detect_format(fields) == fmt


def test_detect_format_with_columns_and_unknown_fields() -> None:
    assert detect_format({"question": "q", "answer": "a"}, {"instruction": "question"}) == "alpaca"
    with pytest.raises(DataError) as err:
        detect_format({"foo": 1, "bar": 2})
    assert str(err.value).startswith("cannot detect the data format from fields [bar, foo]; set")


def test_column_mapping_renames_and_swaps() -> None:
    data = {"question": "q", "answer": "a", "meta_id": 1}
    got = convert(rec(data), columns={"instruction": "question", "output": "answer"})
    assert got == Conversation(
        [Message("user", "q"), Message("assistant", "a")], meta={"meta_id": 1}
    )
    assert apply_columns({"input": "x", "output": "y"}, {"input": "output", "output": "input"}) == {
        "input": "y",
        "output": "x",
    }
    assert apply_columns({"ok": True}, {"kto_tag": "ok"}) == {"label": True}


def test_check_options_rejects_unknown_names() -> None:
    with pytest.raises(DataError, match=r"^format: unknown format 'alpacca' \(did you mean"):
        check_options("alpacca", None, None)
    with pytest.raises(DataError, match=r"^columns: unknown field 'instructoin' \(did you mean"):
        check_options("auto", {"instructoin": "q"}, None)
    with pytest.raises(DataError, match=r"^tags: unknown key 'role'"):
        check_options("auto", None, {"role": "speaker"})


def test_register_adds_a_format() -> None:
    @register("upper_test")
    def upper(data: dict[str, Any], ctx: Any) -> TextDoc:
        return TextDoc(data["body"].upper(), ctx.source)

    try:
        assert convert(rec({"body": "abc"}), "upper_test", source="s") == TextDoc("ABC", "s")
    finally:
        del FORMATS["upper_test"]
