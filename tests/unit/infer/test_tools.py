"""Tool calls: parsing the model's output, converting OpenAI messages, probing the template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunesmith.errors import ConfigError
from tunesmith.infer.tools import (
    ToolFormat,
    parse_tool_calls,
    probe_tool_format,
    to_template_messages,
)

NAMES = {"get_weather", "add"}


def test_tool_call_blocks_are_parsed_and_removed_from_content() -> None:
    text = (
        'Let me check.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}'
        '</tool_call>\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    )
    content, calls = parse_tool_calls(text, NAMES)
    assert content == "Let me check."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("add", {"a": 1, "b": 2}),
    ]
    assert all(c.id.startswith("call_") for c in calls) and calls[0].id != calls[1].id
    assert calls[0].to_openai()["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }


def test_unterminated_block_and_llama_style_json_are_understood() -> None:
    content, calls = parse_tool_calls('<tool_call>{"name": "add", "arguments": {"a": 1}}', NAMES)
    assert content is None and calls[0].name == "add"
    content, calls = parse_tool_calls('{"name": "add", "parameters": {"a": 2}}', NAMES)
    assert content is None and json.loads(calls[0].arguments) == {"a": 2}


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>{"name": "unknown", "arguments": {}}</tool_call>',
        '<tool_call>{"name": "add", "arguments": {"a": </tool_call>',
        "plain answer",
        '{"name": "unknown"}',
    ],
)
def test_unknown_functions_and_bad_json_stay_content(text: str) -> None:
    assert parse_tool_calls(text, NAMES) == (text, [])


def test_openai_messages_become_template_messages() -> None:
    out = to_template_messages(
        [
            {
                "role": "developer",
                "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
            },
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
        ]
    )
    assert out == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Oslo"}},
                }
            ],
        },
        {"role": "tool", "content": "cold", "tool_call_id": "call_1"},
    ]


def test_image_parts_are_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"messages\[0\].*image_url"):
        to_template_messages([{"role": "user", "content": [{"type": "image_url"}]}])


@pytest.fixture(scope="module")
def tok(tiny_qwen2: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_qwen2)


def test_probe_finds_the_tiny_templates_tool_format(tok: Any) -> None:
    fmt = probe_tool_format(tok)
    assert fmt == ToolFormat('<tool_call>{"name": "', '", "arguments": ')
    assert fmt.forced_prefix("add") == '<tool_call>{"name": "add", "arguments":'
    assert fmt.forced_prefix(None) == '<tool_call>{"name": "'


def test_templates_without_tool_calls_have_no_format(tok: Any) -> None:
    plain = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    original = tok.chat_template
    try:
        tok.chat_template = plain
        assert probe_tool_format(tok) is None
    finally:
        tok.chat_template = original
