"""Pieces of rendering that need no renderer: character <-> token lookups, marker weights,
common prefixes, template inputs and whole-turn truncation helpers.

Per-span loss weights (``loss_weights``, for agent data): each marker string, e.g. ``Action:``,
starts a span inside a trained assistant turn that runs to the next marker or to the end of the
turn's text (the end-of-turn string keeps the turn's weight, so the model still learns to stop).
A weight of 0 removes the span from the loss (its labels become -100).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import Any

from tunesmith.data.types import Message
from tunesmith.errors import DataError


def template_kwargs(tokenizer: Any, template_name: str) -> dict[str, Any]:
    """What ``apply_chat_template`` passes to the template: the special tokens, plus a bos."""
    kwargs = dict(getattr(tokenizer, "special_tokens_map", None) or {})
    if not kwargs.get("bos_token"):
        from tunesmith.data.templates import builtin_template_names, get_template

        if template_name in builtin_template_names():
            kwargs["bos_token"] = get_template(template_name).bos or ""
    return kwargs


class Tokens:
    """Token ids of one text with character <-> token lookups.

    Backed by a fast tokenizer's ``Encoding`` (lookups done in Rust, no offset lists built in
    Python) or by an offset list from a slow tokenizer.
    """

    def __init__(
        self,
        ids: list[int],
        *,
        encoding: Any = None,
        offsets: list[tuple[int, int]] | None = None,
    ) -> None:
        self.ids = ids
        self._enc = encoding
        self._offsets = offsets
        self._starts: list[int] | None = None

    def chars(self, t: int) -> tuple[int, int]:
        """Characters ``[start, end)`` of token ``t``."""
        if self._enc is not None:
            a, b = self._enc.token_to_chars(t)
            return a, b
        assert self._offsets is not None
        return self._offsets[t]

    def char_to_token(self, c: int) -> int | None:
        """The (first) token holding character ``c``; ``None`` for characters no token holds."""
        if self._enc is not None:
            return self._enc.char_to_token(c)
        assert self._offsets is not None
        if self._starts is None:
            self._starts = [a for a, _ in self._offsets]
        t = bisect_right(self._starts, c) - 1
        while t > 0 and self._starts[t - 1] == self._starts[t]:
            t -= 1  # the bytes of one character share its offsets
        return t if t >= 0 and self._offsets[t][0] <= c < self._offsets[t][1] else None

    def token_range(self, start: int, end: int) -> tuple[int, int]:
        """Tokens overlapping characters ``[start, end)``; one straddling ``start`` included."""
        first = last = None
        for c in range(start, end):
            if (first := self.char_to_token(c)) is not None:
                break
        if first is None:
            return 0, 0
        for c in range(end - 1, start - 1, -1):
            if (last := self.char_to_token(c)) is not None:
                break
        assert last is not None
        while last + 1 < len(self.ids) and self.chars(last + 1)[0] < end:
            last += 1  # the other bytes of a multi-byte last character
        return first, last + 1


def common_prefix(a: str, b: str) -> int:
    """Length of the common prefix of two strings (C-speed ``startswith`` bisection)."""
    if a.startswith(b):
        return len(b)
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a.startswith(b[:mid]):
            lo = mid
        else:
            hi = mid - 1
    return lo


def common_suffix(a: str, b: str, end: int | None = None) -> int:
    """Length of the common suffix of ``a[:end]`` and ``b`` (bisection, no copies of ``a``)."""
    end = len(a) if end is None else end
    lo, hi = 0, min(end, len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a.endswith(b[len(b) - mid :], 0, end):
            lo = mid
        else:
            hi = mid - 1
    return lo


def first_stop(text: str, start: int, end: int, stop: tuple[str, ...]) -> int | None:
    """End of the earliest stop string in ``text[start:end]`` (the longer one on a tie)."""
    hits = [(p, -len(s)) for s in stop if s and (p := text.find(s, start, end)) >= 0]
    if not hits:
        return None
    pos, neg = min(hits)
    return pos - neg


def marker_weights(
    text: str, start: int, end: int, rules: dict[str, float] | None, stop: tuple[str, ...]
) -> list[tuple[int, float]]:
    """``(char position, weight)`` change points of the marker rules inside one span."""
    if not rules:
        return []
    seg = text[start:end]
    body_end = len(seg)
    for s in stop:
        if s and seg.endswith(s):
            body_end = min(body_end, len(seg) - len(s))
    hits = sorted(
        (m.start(), w)
        for marker, w in rules.items()
        for m in re.finditer(re.escape(marker), seg[:body_end])
    )
    points = [(start + pos, w) for pos, w in hits]
    return [*points, (start + body_end, 1.0)] if points else []


def weight_at(points: list[tuple[int, float]], pos: int) -> float:
    if not points:
        return 1.0
    k = bisect_right([p for p, _ in points], pos) - 1
    return points[k][1] if k >= 0 else 1.0


def to_template_dict(m: Message) -> dict[str, Any]:
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        d["tool_calls"] = m.tool_calls
    if m.name:
        d["name"] = m.name
    return d


def exchanges(body: list[Message]) -> int:
    return sum(1 for m in body if m.role == "user")


def drop_exchange(body: list[Message], *, left: bool) -> list[Message]:
    """Remove one user turn and everything up to the next user turn (oldest or newest)."""
    users = [i for i, m in enumerate(body) if m.role == "user"]
    if left:
        return body[users[1] :]
    return body[: users[-1]]


SHOW = 60  # characters of text shown in error messages


def check_span(text: str, sp: Any, where: str, stop: tuple[str, ...], template_name: str) -> None:
    """The span holds the assistant's content, its tool calls and an end-of-turn string."""
    seg = text[sp.start : sp.end]
    msg = sp.message
    missing = None
    content = msg.content.strip()
    if content and content not in seg:
        missing = f"its content {content[:SHOW]!r}"
    for call in msg.tool_calls or []:
        name = (call.get("function") or call).get("name", "")
        if name and name not in seg:
            missing = f"its tool call {name!r}"
    ends = [s for s in stop if s and seg.endswith(s)]
    if missing is None and stop and not ends:
        missing = f"an end-of-turn string (one of {list(stop)})"
    # Strict: nothing but whitespace between the content and the one end-of-turn string (a call's
    # arguments follow its name, so turns with tool calls are checked by content and name only).
    if (
        missing is None
        and ends
        and content
        and not msg.tool_calls
        and not any(seg[: len(seg) - len(s)].rstrip().endswith(content) for s in ends)
    ):
        raise DataError(
            f"{where}: label self-check failed with template {template_name!r}: assistant "
            f"turn {sp.index} renders as {_tail(seg)!r}, which does not end with its content "
            "and one end-of-turn string; the template rewrites assistant turns (use another "
            "model.template)"
        )
    if missing is not None:
        raise DataError(
            f"{where}: label self-check failed with template {template_name!r}: assistant "
            f"turn {sp.index} renders as {seg[:SHOW]!r}, which lacks {missing}; the template "
            "rewrites assistant turns (use another model.template)"
        )


def _tail(seg: str) -> str:
    return seg if len(seg) <= SHOW else "..." + seg[-SHOW:]


def check_tool_support(
    chat_template: str, template_name: str, conv: Any, messages: list[Message], where: str
) -> None:
    """A template that ignores tools would train calls to tools the model never saw."""
    if conv.tools and "tools" not in chat_template:
        raise DataError(
            f"{where}: template {template_name!r} does not render tool definitions; "
            "use a tool-capable template (see `tunesmith data templates`)"
        )
    if any(m.tool_calls for m in messages) and "tool_calls" not in chat_template:
        raise DataError(
            f"{where}: template {template_name!r} does not render tool calls; "
            "use a tool-capable template (see `tunesmith data templates`)"
        )
