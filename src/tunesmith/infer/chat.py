"""Terminal chat: streaming, multi-turn, with the model's training template.

With a vision-language model the images given at the start (``--image``) belong to the first
user turn (again after ``/reset``), and ``/image PATH`` attaches one more to the next turn; every
answer goes through the same engine, and the same template and processor, as text chat.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tunesmith.errors import TunesmithError
from tunesmith.infer.decode import Delta, Finished
from tunesmith.infer.engine import Engine, GenParams

HELP = "commands: /reset  /system TEXT  /regen  /save FILE  /exit"
IMAGE_HELP = "commands: /reset  /system TEXT  /regen  /image PATH  /save FILE  /exit"
IMAGE_TOKEN = "<image>"


def answer_once(
    engine: Engine,
    prompt: str,
    params: GenParams,
    system: str | None = None,
    *,
    adapter: str | None = None,
    images: list[Any] | None = None,
) -> str:
    """One non-interactive answer (``tunesmith chat --prompt``), about ``images`` if given."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    return engine.generate([messages], params, adapter=adapter, images=[images or None])[0]


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
    images: list[Any] | None = None,
) -> list[dict[str, Any]]:
    """Read user turns until ``/exit`` or end of input, streaming each answer.

    ``images`` (PIL images, vision-language models only) go with the first user turn; user
    turns then carry one ``<image>`` placeholder per attached image. Returns the conversation
    history (user and assistant turns).
    """
    write = out or (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    history: list[dict[str, Any]] = []
    seen: list[Any] = []  # images of the turns in history, in placeholder order
    pending: list[Any] = list(images or [])  # images for the next user turn
    help_text = IMAGE_HELP if engine.takes_images else HELP

    def answer() -> bool:
        messages = ([{"role": "system", "content": system}] if system else []) + history
        t0, pieces, n, started = time.perf_counter(), [], 0, False
        events = engine.events(messages, params, adapter=adapter, images=seen or None)
        try:
            first = next(events, None)  # the prompt is checked before anything is printed
        except TunesmithError as exc:
            write(f"(error: {exc})\n")
            return False
        write("bot> ")
        for ev in itertools.chain([first] if first is not None else [], events):
            if isinstance(ev, Delta):
                pieces.append(ev.text)
                # Shown as it is kept: without the whitespace a reply may start with.
                shown = ev.text if started else ev.text.lstrip()
                started = started or bool(shown)
                if shown:
                    write(shown)
            elif isinstance(ev, Finished):
                n = ev.completion_tokens
        rate = n / max(time.perf_counter() - t0, 1e-9)
        write(f"\n[{n} tokens, {rate:.1f} tok/s]\n")
        history.append({"role": "assistant", "content": "".join(pieces).strip()})
        return True

    def ask(text: str) -> None:
        nonlocal pending
        attached, pending = pending, []
        history.append({"role": "user", "content": IMAGE_TOKEN * len(attached) + text})
        seen.extend(attached)
        if not answer():  # the turn is taken back, its images wait for the next one
            history.pop()
            del seen[len(seen) - len(attached) :]
            pending = attached + pending

    write(f"{help_text}\n")
    if pending:
        write(f"({len(pending)} image(s) attached to your first message)\n")
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
            history, seen, pending = [], [], list(images or [])
            write("(history cleared)\n")
        elif command == "/system":
            system = rest.strip() or None
            history, seen, pending = [], [], list(images or [])
            write(f"(system prompt {'set' if system else 'cleared'}; history cleared)\n")
        elif command == "/regen":
            if not history or history[-1]["role"] != "assistant":
                write("(nothing to regenerate yet)\n")
                continue
            previous = history.pop()
            if not answer():
                history.append(previous)
        elif command == "/image" and engine.takes_images:
            if not rest.strip():
                write("usage: /image PATH (attached to your next message)\n")
                continue
            from tunesmith.data.images import load_image

            try:
                pending.append(load_image(rest.strip(), where="/image"))
            except TunesmithError as exc:
                write(f"(could not attach: {exc})\n")
                continue
            write(f"({len(pending)} image(s) attached to your next message)\n")
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
            write(f"unknown command {command!r}; {help_text}\n")
        else:
            ask(text)
