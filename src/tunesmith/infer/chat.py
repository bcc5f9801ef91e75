"""Terminal chat: streaming, multi-turn, with the model's training template."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tunesmith.infer.engine import Engine, GenParams

HELP = "commands: /reset  /system TEXT  /exit"


def answer_once(engine: Engine, prompt: str, params: GenParams, system: str | None = None) -> str:
    """One non-interactive answer (``tunesmith chat --prompt``)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    return engine.generate([messages], params)[0]


def chat_loop(
    engine: Engine,
    params: GenParams,
    *,
    system: str | None = None,
    stdin: TextIO = sys.stdin,
    out: Any = None,
) -> None:
    """Read user turns until ``/exit`` or end of input, streaming each answer."""
    write = out or (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    history: list[dict[str, Any]] = []
    write(f"{HELP}\n")
    while True:
        write("\nyou> ")
        line = stdin.readline()
        if not line:
            write("\n")
            return
        text = line.strip()
        if not text:
            continue
        if text == "/exit":
            return
        if text == "/reset":
            history = []
            write("(history cleared)\n")
            continue
        if text.startswith("/system"):
            system = text[len("/system") :].strip() or None
            history = []
            write(f"(system prompt {'set' if system else 'cleared'}; history cleared)\n")
            continue
        if text.startswith("/"):
            write(f"unknown command {text.split()[0]!r}; {HELP}\n")
            continue
        history.append({"role": "user", "content": text})
        messages = ([{"role": "system", "content": system}] if system else []) + history
        write("bot> ")
        t0, pieces = time.perf_counter(), []
        for piece in engine.stream(messages, params):
            pieces.append(piece)
            write(piece)
        reply = "".join(pieces).strip()
        n = len(engine.tokenizer(reply, add_special_tokens=False)["input_ids"])
        write(f"\n[{n} tokens, {n / max(time.perf_counter() - t0, 1e-9):.1f} tok/s]\n")
        history.append({"role": "assistant", "content": reply})
