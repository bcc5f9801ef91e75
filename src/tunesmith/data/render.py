"""Conversation -> ``input_ids`` and ``labels`` through the model's own chat template.

Assistant spans are derived from the rendering itself: the text before assistant turn *i* is the
rendering of turns ``< i`` with the generation prompt, and the turn ends where the rendering of
turns ``<= i`` ends. Characters map to tokens through offsets, and every sample is **verified**:
the decoded trained tokens must equal the assistant contents plus their end-of-turn text. A
mismatch raises with the sample and the template named; no sample is ever masked silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunesmith.data.types import Conversation, Message, TextDoc
from tunesmith.errors import DataError

IGNORE_INDEX = -100


@dataclass
class RenderOptions:
    """How labels are assigned and long samples are handled."""

    max_length: int = 512
    truncation: str = "drop"  # drop | truncate_left | truncate_right
    train_on_prompt: bool = False
    mask_history: bool = False
    system: str | None = None


@dataclass
class Rendered:
    """A tokenised sample. ``weights`` is ``None`` when every trained token weighs 1."""

    input_ids: list[int]
    labels: list[int]
    weights: list[float] | None = None
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The plain-dict form collation works on."""
        return {"input_ids": self.input_ids, "labels": self.labels, "weights": self.weights}


class SkipSample(Exception):
    """A sample that cannot be used under the current policy (counted by reason, never hidden)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Renderer:
    """Renders canonical samples with one tokenizer and one chat template."""

    tokenizer: Any
    chat_template: str
    stop: tuple[str, ...]
    options: RenderOptions = field(default_factory=RenderOptions)
    template_name: str = "tokenizer"

    # ---- conversations -------------------------------------------------------------------
    def render(self, conv: Conversation) -> Rendered:
        """Tokenise a conversation with labels on its trained turns; applies the length policy."""
        messages = list(conv.messages)
        if self.options.system and not (messages and messages[0].role == "system"):
            messages.insert(0, Message("system", self.options.system))
        out = self._render_messages(messages, conv)
        if len(out.input_ids) <= self.options.max_length:
            return out
        return self._truncate(messages, conv, out)

    def _render_messages(self, messages: list[Message], conv: Conversation) -> Rendered:
        dicts = [_to_template_dict(m) for m in messages]
        full = self._apply(dicts, conv, add_generation_prompt=False)
        last_assistant = max(
            (i for i, m in enumerate(messages) if m.role == "assistant"), default=-1
        )
        spans: list[tuple[int, int, float, str]] = []  # char start, end, weight, expected text
        for i, msg in enumerate(messages):
            if msg.role != "assistant" or not self._trained(msg, i, last_assistant):
                continue
            start = len(self._apply(dicts[:i], conv, add_generation_prompt=True))
            end_text = self._apply(dicts[: i + 1], conv, add_generation_prompt=False)
            if not full.startswith(end_text) or start > len(end_text):
                raise DataError(
                    f"{_where(conv)}: template {self.template_name!r} renders turn {i} differently "
                    "in context; assistant spans cannot be derived (use another model.template)"
                )
            end = self._end_of_turn(full, start, len(end_text))
            spans.append((start, end, msg.weight, full[start:end]))
        return self._tokenise(full, spans, conv)

    def _trained(self, msg: Message, i: int, last_assistant: int) -> bool:
        if msg.loss is False:
            return False
        if self.options.mask_history and i != last_assistant:
            return False
        return msg.trained

    def _end_of_turn(self, full: str, start: int, end: int) -> int:
        """Train the content and its end-of-turn string, not the separator after it."""
        seg = full[start:end]
        hits = [seg.rfind(s) + len(s) for s in self.stop if s and seg.rfind(s) >= 0]
        return start + max(hits) if hits else end

    def _apply(self, dicts: list[dict[str, Any]], conv: Conversation, **kw: Any) -> str:
        try:
            return self.tokenizer.apply_chat_template(
                dicts, tools=conv.tools, chat_template=self.chat_template, tokenize=False, **kw
            )
        except Exception as exc:  # jinja raise_exception / TemplateError
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{_where(conv)}: template {self.template_name!r}: {msg}") from None

    def _tokenise(
        self, full: str, spans: list[tuple[int, int, float, str]], conv: Conversation
    ) -> Rendered:
        enc = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids: list[int] = enc["input_ids"]
        offsets = enc["offset_mapping"]
        labels = [IGNORE_INDEX] * len(ids)
        weights = [0.0] * len(ids)
        if self.options.train_on_prompt:
            labels = list(ids)
            weights = [1.0] * len(ids)
        for start, end, weight, expected in spans:
            picked = [t for t, (a, _b) in enumerate(offsets) if start <= a < end]
            for t in picked:
                labels[t] = ids[t]
                weights[t] = weight
            got = self.tokenizer.decode([ids[t] for t in picked], skip_special_tokens=False)
            if got != expected and got.strip() != expected.strip():
                raise DataError(
                    f"{_where(conv)}: label self-check failed with template "
                    f"{self.template_name!r}: trained tokens decode to {got[:60]!r}, expected "
                    f"{expected[:60]!r}"
                )
        if not self.options.train_on_prompt and not spans:
            raise SkipSample("no trained tokens")
        uniform = all(w == 1.0 for w, lab in zip(weights, labels) if lab != IGNORE_INDEX)
        return Rendered(ids, labels, None if uniform else weights)

    # ---- length policy ---------------------------------------------------------------------
    def _truncate(self, messages: list[Message], conv: Conversation, out: Rendered) -> Rendered:
        policy = self.options.truncation
        if policy == "drop":
            raise SkipSample("longer than max_length")
        head = 1 if messages and messages[0].role == "system" else 0
        body = messages[head:]
        # Whole turns first: drop the oldest (left) or newest (right) exchange while >1 remain.
        while _exchanges(body) > 1:
            body = _drop_exchange(body, left=policy == "truncate_left")
            candidate = self._render_messages(messages[:head] + body, conv)
            if len(candidate.input_ids) <= self.options.max_length:
                candidate.truncated = True
                return candidate
            out = candidate
        n = self.options.max_length
        ids, labels = out.input_ids, out.labels
        weights = out.weights
        sl = slice(-n, None) if policy == "truncate_left" else slice(0, n)
        ids, labels = ids[sl], labels[sl]
        weights = weights[sl] if weights is not None else None
        if all(lab == IGNORE_INDEX for lab in labels):
            raise SkipSample("no trained tokens left after truncation")
        return Rendered(ids, labels, weights, truncated=True)

    # ---- plain text ------------------------------------------------------------------------
    def render_text(self, doc: TextDoc) -> list[Rendered]:
        """Tokenise a document for pre-training, split into ``max_length`` chunks, eos appended."""
        ids = self.tokenizer(doc.text, add_special_tokens=False)["input_ids"]
        eos = self.tokenizer.eos_token_id
        if eos is not None:
            ids = [*ids, eos]
        n = self.options.max_length
        chunks = [ids[i : i + n] for i in range(0, len(ids), n)]
        return [Rendered(c, list(c)) for c in chunks if len(c) > 1]


def _to_template_dict(m: Message) -> dict[str, Any]:
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        d["tool_calls"] = m.tool_calls
    if m.name:
        d["name"] = m.name
    return d


def _exchanges(body: list[Message]) -> int:
    return sum(1 for m in body if m.role == "user")


def _drop_exchange(body: list[Message], *, left: bool) -> list[Message]:
    """Remove one user turn and everything up to the next user turn (oldest or newest)."""
    users = [i for i, m in enumerate(body) if m.role == "user"]
    if left:
        return body[users[1] :]
    return body[: users[-1]]


def _where(conv: Conversation) -> str:
    return conv.meta.get("where") or conv.source or "sample"
