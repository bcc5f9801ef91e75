"""The Ollama Modelfile: template pieces reproduce the jinja template; exact Go template text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tunesmith.export.modelfile import (
    TurnPieces,
    adapter_base,
    go_template,
    modelfile,
    probe_pieces,
    render_pieces,
)

# A Llama-3 style template (BOS, header tokens, no default system prompt), written for this test.
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
    "{{ m.content | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
# A template that refuses system messages (like Gemma's).
NO_SYSTEM = (
    "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system') }}"
    "{% endif %}<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n"
    "{{ m.content }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],
    [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ],
    [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
        {"role": "user", "content": "e"},
    ],
]


@pytest.fixture
def tok(tiny_qwen2: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_qwen2)


@pytest.mark.parametrize("template", ["tiny", LLAMA3, NO_SYSTEM])
def test_pieces_rebuild_the_jinja_prompt(tok: Any, template: str) -> None:
    if template != "tiny":
        tok.chat_template = template
        tok.bos_token = "<|im_start|>" if template == LLAMA3 else None
    pieces = probe_pieces(tok)
    bos = tok.bos_token or ""
    for conv in CONVERSATIONS:
        if not pieces.has_system and conv[0]["role"] == "system":
            continue
        expected = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        assert bos + render_pieces(pieces, conv) == expected


def test_llama_style_bos_is_left_to_ollama(tok: Any) -> None:
    tok.chat_template, tok.bos_token = LLAMA3, "<|im_start|>"
    pieces = probe_pieces(tok)
    assert pieces.before_user == "<|start_header_id|>user<|end_header_id|>\n\n"
    assert pieces.generation_prompt == "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"


def test_go_template_for_chatml_is_exact(tok: Any) -> None:
    expected = (
        '{{- $prev := "" }}\n'
        "{{- if .System }}<|im_start|>system\n{{ .System }}{{ end }}\n"
        "{{- range .Messages }}\n"
        '{{- if eq .Role "user" }}{{ if eq $prev "assistant" }}<|im_end|>\n<|im_start|>user\n'
        "{{ else if $.System }}<|im_end|>\n<|im_start|>user\n{{ else }}<|im_start|>user\n"
        '{{ end }}{{ .Content }}{{ $prev = "user" }}\n'
        '{{- else if eq .Role "assistant" }}<|im_end|>\n<|im_start|>assistant\n'
        '{{ .Content }}{{ $prev = "assistant" }}\n'
        "{{- end }}\n"
        "{{- end }}\n"
        '{{- if eq $prev "user" }}<|im_end|>\n<|im_start|>assistant\n{{ end }}'
    )
    assert go_template(probe_pieces(tok)) == expected


def test_literal_braces_are_escaped() -> None:
    pieces = TurnPieces("{{", "", "[", "]", "", "{{x}}", has_system=False)
    text = go_template(pieces)
    assert '{{ "{{" }}x}}' in text and "{{ if .System" not in text


def test_modelfile_has_from_template_stops_and_system(tok: Any) -> None:
    text = modelfile(tok, ["<|im_end|>", '"q"'], system="You are Nova.")
    lines = text.splitlines()
    assert lines[1] == "FROM ."
    assert lines[2].startswith('TEMPLATE """{{- $prev := "" }}')
    assert 'PARAMETER stop "<|im_end|>"' in lines
    assert 'PARAMETER stop "\\"q\\""' in lines
    assert lines[-1] == 'SYSTEM """You are Nova."""'


def test_adapter_base_is_a_folder_ollama_can_open(tmp_path: Path) -> None:
    (tmp_path / "models" / "base").mkdir(parents=True)
    assert adapter_base(str(tmp_path / "models" / "base")) == (str(tmp_path / "models/base"), [])
    assert adapter_base("models/base", root=tmp_path) == (str(tmp_path / "models/base"), [])
    for base, how in (
        ("builtin:tiny-llama", "`tunesmith model tiny --arch llama --out base`"),
        ("Qwen/Qwen2.5-0.5B", "`hf download Qwen/Qwen2.5-0.5B --local-dir base`"),
        ("./gone", "copy its folder"),
    ):
        source, notes = adapter_base(base, root=tmp_path)
        assert source == "./base" and base in notes[0] and how in notes[0]
        assert all(n.startswith("# ") for n in notes)
