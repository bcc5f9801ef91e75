"""Per-request decoding state: incremental detokenisation, stop handling and events.

A :class:`Request` receives one token at a time from the scheduler and turns it into text
deltas, holding back text that may be the start of a stop string, so streamed and non-streamed
answers are identical and never contain the stop string or an end-of-turn token.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesmith.infer.sampling import GenParams, make_generator


@dataclass(frozen=True)
class Delta:
    """New answer text."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The answer is complete; ``reason`` is ``stop``, ``length`` or ``cancelled``."""

    reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    """Generation raised; the error is re-raised (or reported) on the consumer's side."""

    error: BaseException


Event = Delta | Finished | Failed


class Detokenizer:
    """Turns a growing list of ids into text increments.

    Decoding a window that starts a few tokens back and subtracting the window's earlier text
    keeps word-initial spaces (SentencePiece) and never emits half a UTF-8 character.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, token_id: int) -> str:
        """Append one id; returns the text it completes (possibly empty)."""
        self.ids.append(token_id)
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            new = after[len(before) :]
            self._prefix, self._read = self._read, len(self.ids)
            self.text += new
            return new
        return ""

    def flush(self) -> str:
        """At the end: whatever was held back (an incomplete character decodes as U+FFFD)."""
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        rest = after[len(before) :]
        self._prefix = self._read = len(self.ids)
        self.text += rest
        return rest


def held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that could begin a stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


@dataclass(eq=False)
class Request:
    """One sequence being generated: prompt, parameters, adapter and where events go.

    For a vision-language model, ``prompt`` holds the expanded image tokens (as the processor
    writes them) and ``pixel_values`` the images' tensor, in placeholder order; the scheduler
    hands it to the prefill and then lets go of it.
    """

    prompt: list[int]
    params: GenParams
    emit: Callable[[Event], None]
    adapter: str | None = None
    pixel_values: Any = None
    answer: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    generator: Any = None
    sent: int = 0
    _detok: Detokenizer | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)

    def start(self, tokenizer: Any) -> None:
        """Prepare detokeniser and RNG (called by the scheduler on admission)."""
        self._detok = Detokenizer(tokenizer)
        if not self.params.greedy:
            self.generator = make_generator(self.params.seed)

    def cancel(self) -> None:
        """Ask the scheduler to drop this sequence at its next step (thread-safe)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        """Whether the sequence has finished."""
        return self.finish_reason is not None

    def push(self, token: int, stop_ids: frozenset[int], max_positions: int) -> None:
        """Take the next token: emit text, detect stop tokens/strings and length limits."""
        assert self._detok is not None, "start() first"
        if token in stop_ids:
            self._finish("stop")
            return
        self.answer.append(token)
        self._detok.add(token)
        text = self._detok.text
        stops = self.params.stop
        if stops:
            hits = [i for i in (text.find(s, max(0, self.sent - len(s))) for s in stops) if i >= 0]
            if hits:
                self._send(text[: min(hits)])
                self._finish("stop", flush=False)
                return
        if len(self.answer) >= self.params.max_new_tokens or (
            len(self.prompt) + len(self.answer) >= max_positions
        ):
            self._finish("length")
            return
        self._send(text[: len(text) - held_back(text, stops)] if stops else text)

    def _send(self, upto: str) -> None:
        if len(upto) > self.sent:
            self.emit(Delta(upto[self.sent :]))
            self.sent = len(upto)

    def _finish(self, reason: str, *, flush: bool = True) -> None:
        if flush and self._detok is not None:
            self._detok.flush()
            self._send(self._detok.text)
        self.finish_reason = reason
        self.emit(Finished(reason, len(self.prompt), len(self.answer)))

    def abort(self, reason: str = "cancelled") -> None:
        """Finish without flushing held-back text (cancelled by the client)."""
        if not self.done:
            self._finish(reason, flush=False)

    def fail(self, error: BaseException) -> None:
        """Report an error to the consumer and mark the sequence finished."""
        if not self.done:
            self.finish_reason = "error"
            self.emit(Failed(error))
