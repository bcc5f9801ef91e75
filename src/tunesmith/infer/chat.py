"""Terminal chat: streaming, multi-turn, with the model's training template."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tunesmith.infer.decode import Delta, Finished
from tunesmith.infer.engine import Engine, GenParams

HELP = "commands: /reset  /system TEXT  /regen  /save FILE  /exit"


def answer_once(
    engine: Engine,
    prompt: str,
    params: GenParams,
    system: str | None = None,
    *,
    adapter: str | None = None,
) -> str:
    """One non-interactive answer (``tunesmith chat --prompt``)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    return engine.generate([messages], params, adapter=adapter)[0]


def save_conversation(path: str, system: str | None, history: list[dict[str, Any]]) -> Path:
    """Write the conversation in OpenAI ``messages`` form (``.jsonl``: append one line)."""
    messages = ([{"role": "system", "content": system}] if system else []) + history
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".jsonl":
        with target.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    else:
        text = json.dumps({"messages": messages}, ensure_ascii=False, indent=1)
        target.write_text(text + "\n", encoding="utf-8")
    return target


def chat_loop(
    engine: Engine,
    params: GenParams,
    *,
    system: str | None = None,
    stdin: TextIO = sys.stdin,
    out: Any = None,
    adapter: str | None = None,
) -> list[dict[str, Any]]:
    """Read user turns until ``/exit`` or end of input, streaming each answer.

    Returns the conversation history (user and assistant turns).
    """
    write = out or (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    history: list[dict[str, Any]] = []

    def answer() -> None:
        messages = ([{"role": "system", "content": system}] if system else []) + history
        write("bot> ")
        t0, pieces, n = time.perf_counter(), [], 0
        for ev in engine.events(messages, params, adapter=adapter):
            if isinstance(ev, Delta):
                pieces.append(ev.text)
                write(ev.text)
            elif isinstance(ev, Finished):
                n = ev.completion_tokens
        rate = n / max(time.perf_counter() - t0, 1e-9)
        write(f"\n[{n} tokens, {rate:.1f} tok/s]\n")
        history.append({"role": "assistant", "content": "".join(pieces).strip()})

    write(f"{HELP}\n")
    while True:
        write("\nyou> ")
        line = stdin.readline()
        if not line:
            write("\n")
            return history
        text = line.strip()
        if not text:
            continue
        command, _, rest = text.partition(" ")
        if command == "/exit":
            return history
        if command == "/reset":
            history = []
            write("(history cleared)\n")
        elif command == "/system":
            system = rest.strip() or None
            history = []
            write(f"(system prompt {'set' if system else 'cleared'}; history cleared)\n")
        elif command == "/regen":
            if not history or history[-1]["role"] != "assistant":
                write("(nothing to regenerate yet)\n")
                continue
            history.pop()
            answer()
        elif command == "/save":
            if not rest.strip():
                write("usage: /save FILE (.json, or .jsonl to append)\n")
                continue
            try:
                where = save_conversation(rest.strip(), system, history)
            except OSError as exc:
                write(f"(could not save: {exc})\n")
                continue
            write(f"(saved {len(history)} messages to {where})\n")
        elif command.startswith("/"):
            write(f"unknown command {command!r}; {HELP}\n")
        else:
            history.append({"role": "user", "content": text})
            answer()
