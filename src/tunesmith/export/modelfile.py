"""An Ollama ``Modelfile`` whose Go template reproduces the model's jinja chat template.

Rather than translating jinja, we render a probe conversation made of sentinel strings and cut
the result at the sentinels. That yields the literal text between any two turns (for example
``<|im_end|>\\n<|im_start|>assistant\\n`` between a user message and the answer), which is all
a Go template needs to rebuild the same prompt. :func:`render_pieces` applies the pieces the way
the Go template does, so tests can check them against the jinja rendering.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

_SYS, _U1, _A1, _U2, _A2 = "QZXsys0", "QZXusr1", "QZXast1", "QZXusr2", "QZXast2"


@dataclass(frozen=True)
class TurnPieces:
    """Literal text around the turns of a conversation."""

    before_system: str  # start of the prompt when there is a system message
    system_to_user: str  # after the system text, before the first user text
    before_user: str  # start of the prompt without a system message
    user_to_assistant: str  # after a user text, before the assistant text
    assistant_to_user: str  # after an assistant text, before the next user text
    generation_prompt: str  # after the last user text: where the answer begins
    has_system: bool = True


def _between(text: str, a: str | None, b: str | None) -> str:
    start = 0 if a is None else text.index(a) + len(a)
    end = len(text) if b is None else text.index(b, start)
    return text[start:end]


def probe_pieces(tokenizer: Any) -> TurnPieces:
    """Cut a sentinel conversation rendered with ``tokenizer.chat_template`` into pieces."""

    def render(messages: list[dict[str, str]], gen: bool) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)

    sys_msg = {"role": "system", "content": _SYS}
    turns = [
        {"role": "user", "content": _U1},
        {"role": "assistant", "content": _A1},
        {"role": "user", "content": _U2},
    ]
    bos = tokenizer.bos_token or ""
    no_sys = render(turns, True)
    try:
        with_sys = render([sys_msg, *turns], True)
        has_system = _SYS in with_sys
    except Exception:  # templates that refuse system messages
        has_system = False
    if not has_system:
        with_sys = no_sys
    before_user = _between(no_sys, None, _U1)
    pieces = TurnPieces(
        before_system=_between(with_sys, None, _SYS) if has_system else before_user,
        system_to_user=_between(with_sys, _SYS, _U1) if has_system else "",
        before_user=before_user,
        user_to_assistant=_between(no_sys, _U1, _A1),
        assistant_to_user=_between(no_sys, _A1, _U2),
        generation_prompt=_between(no_sys, _U2, None),
        has_system=has_system,
    )
    if bos:  # Ollama's tokenizer adds BOS itself
        pieces = replace(
            pieces,
            before_system=pieces.before_system.removeprefix(bos),
            before_user=pieces.before_user.removeprefix(bos),
        )
    return pieces


def render_pieces(pieces: TurnPieces, messages: list[dict[str, str]]) -> str:
    """Build a prompt from pieces exactly as the generated Go template does."""
    system = "".join(m["content"] for m in messages if m["role"] == "system")
    out = pieces.before_system + system if system and pieces.has_system else ""
    prev = ""
    for m in messages:
        if m["role"] == "user":
            if prev == "assistant":
                out += pieces.assistant_to_user
            elif system and pieces.has_system:
                out += pieces.system_to_user
            else:
                out += pieces.before_user
            out += m["content"]
            prev = "user"
        elif m["role"] == "assistant":
            out += pieces.user_to_assistant + m["content"]
            prev = "assistant"
    if prev == "user":
        out += pieces.generation_prompt
    return out


def _lit(text: str) -> str:
    """Literal text for a Go template (``{{`` must not start an action)."""
    return text.replace("{{", '{{ "{{" }}')


def go_template(pieces: TurnPieces) -> str:
    """The Ollama ``TEMPLATE`` body. Every trimming ``{{-`` follows a layout newline only."""
    sys_block = (
        f"{{{{- if .System }}}}{_lit(pieces.before_system)}{{{{ .System }}}}{{{{ end }}}}\n"
        if pieces.has_system
        else ""
    )
    user_open = (
        f'{{{{ if eq $prev "assistant" }}}}{_lit(pieces.assistant_to_user)}'
        + (f"{{{{ else if $.System }}}}{_lit(pieces.system_to_user)}" if pieces.has_system else "")
        + f"{{{{ else }}}}{_lit(pieces.before_user)}{{{{ end }}}}"
    )
    return (
        '{{- $prev := "" }}\n'
        + sys_block
        + "{{- range .Messages }}\n"
        + '{{- if eq .Role "user" }}'
        + user_open
        + '{{ .Content }}{{ $prev = "user" }}\n'
        + '{{- else if eq .Role "assistant" }}'
        + _lit(pieces.user_to_assistant)
        + '{{ .Content }}{{ $prev = "assistant" }}\n'
        + "{{- end }}\n"
        + "{{- end }}\n"
        + '{{- if eq $prev "user" }}'
        + _lit(pieces.generation_prompt)
        + "{{ end }}"
    )


def adapter_base(base: str, root: Path | None = None) -> tuple[str, list[str]]:
    """``(FROM value, comment lines)`` for an adapter-only folder trained over ``base``.

    Ollama's ``FROM`` takes a folder of weights or an Ollama model name, never a ``builtin:`` name
    or a Hub id: a local base is named by its absolute path; otherwise ``FROM ./base`` with a
    comment saying how to put the base there.
    """
    from tunesmith.export.card import hub_id

    path = Path(base).expanduser()
    for folder in (Path.cwd(), root):
        if not base.startswith("builtin:") and folder is not None and (folder / path).is_dir():
            return str((folder / path).resolve()), []
    if base.startswith("builtin:tiny-"):
        arch = base.removeprefix("builtin:tiny-")
        how = f"write it with `tunesmith model tiny --arch {arch} --out base` in this folder"
    elif hub_id(base, root=root):
        how = f"download it with `hf download {base} --local-dir base` in this folder"
    else:
        how = "copy its folder (config.json + safetensors) to ./base"
    return "./base", [
        f"# FROM must be the base the adapter was trained on, {base}: {how},",
        "# or replace ./base with an Ollama model of the same base weights.",
    ]


def modelfile(
    tokenizer: Any,
    stop_tokens: list[str],
    *,
    source: str = ".",
    system: str | None = None,
    notes: list[str] | None = None,
) -> str:
    """The ``Modelfile`` text: ``FROM``, ``TEMPLATE``, stop parameters and the system prompt.

    ``notes``: comment lines put just above ``FROM`` (what to fill in).
    """
    lines = [
        "# Ollama: ollama create NAME -f Modelfile   (run from this folder)",
        *(notes or []),
        f"FROM {source}",
        f'TEMPLATE """{go_template(probe_pieces(tokenizer))}"""',
    ]
    lines += [f"PARAMETER stop {json.dumps(s, ensure_ascii=False)}" for s in stop_tokens]
    if system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"
