"""The Chat tab's turn: a run or model (plus adapters, as ``tunesmith chat --adapter``) answers
through :class:`tunesmith.infer.Engine`, streamed piece by piece."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tunesmith.board.state import Board
from tunesmith.errors import TunesmithError


def chat_turn(
    board: Board,
    run: str | None,
    adapters: str,
    use: str,
    text: str,
    history: list[dict[str, Any]],
    sys_text: str,
    tokens: float,
    temp: float,
    topp: float,
    seed_value: float | None,
    img: str | None,
) -> Iterator[tuple[list[dict[str, Any]], str, str | None]]:
    """One chat turn as ``(history, message box, note)`` updates (note ``None``: unchanged).

    ``adapters`` is the Chat tab's adapters box (see :meth:`Board.chat_adapters`), ``use`` the
    public name to answer with (empty: the default adapter). Errors end the turn with the CLI's
    one-line message in the note; the history keeps what it had.
    """
    from tunesmith.infer.chat import IMAGE_TOKEN
    from tunesmith.infer.engine import GenParams

    history = list(history or [])
    if not run or not text.strip():
        yield (history, text, "pick a run and type a message")
        return
    try:
        eng = board.engine(run, adapters or "")
        adapter = (use or "").strip() or None  # a public name, as serve's "model"
        eng.adapter_key(adapter)  # an unknown name fails here, before the turn is added
        params = GenParams(
            max_new_tokens=int(tokens),
            temperature=float(temp),
            top_p=float(topp),
            seed=None if seed_value is None else int(seed_value),
        ).check()
        images = None
        if img and eng.takes_images:
            from tunesmith.data.images import load_image

            images = [load_image(img, where=f"image {img}")]
        elif img:
            yield (history, text, f"{run} is a text-only model: the image is not sent")
        sys_prompt = sys_text.strip() or eng.system_prompt
        user = (IMAGE_TOKEN if images else "") + text
        turns = [{"role": m["role"], "content": m["content"]} for m in history]
        messages = ([{"role": "system", "content": sys_prompt}] if sys_prompt else []) + turns
        messages.append({"role": "user", "content": user})
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
        info = eng.run.template if eng.run is not None else None
        tname = info.template if info else "the tokenizer's own"
        yield (history, "", f"template: {tname}")
        for piece in eng.stream(messages, params, adapter=adapter, images=images):
            history[-1]["content"] += piece
            yield (history, "", None)
        history[-1]["content"] = history[-1]["content"].strip()
        yield (history, "", None)
    except TunesmithError as exc:
        # a code span shows its text as is (Markdown escapes it): no HTML entities here
        yield (history, text, "error: `" + str(exc).replace("`", "'") + "`")
