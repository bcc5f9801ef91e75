"""Conversation -> ``input_ids`` and ``labels`` through the model's own chat template.

Assistant spans come from the rendering itself: ``{% generation %}`` markers where the template has
them, otherwise prefix rendering (turn *i* starts where the turns ``< i`` plus the generation
prompt end; where a template renders history unlike a final turn, as Qwen3 does, the turn's content
is found in context). A span ends at the **first** end-of-turn string after the turn's content, so
Phi-3's ``<|end|>`` is trained and the ``<|endoftext|>`` its template writes after the last turn is
not. A turn ended by the next role token (GLM) takes that token; a final turn with no end string
gets the first stop string appended, so the model always learns to stop.

Templates whose rendering of earlier turns depends on what follows (Mistral v0.3 writes the system
message only into the *last* user turn) have no prompt that is a prefix of the conversation. The
whole conversation's rendering is what is trained, so each turn is found in it: its content where
two renderings with stand-in contents differ, its start where the tail of its generation prompt
matches just before. The training context of such a turn then differs from the prompt chat and
serve build for it (for Mistral v0.3 a sample ending on an answer has no system message at all);
``Renderer.notes`` records that and it is warned once.

The whole text is tokenised at once (in batches) and characters map to tokens through offsets.
Every span is **verified**: the prompt renders as a prefix of the conversation (or the turn is
found in context as above), the span holds the assistant content (and its tool calls) followed by
nothing but whitespace and one end-of-turn string, and the trained tokens decode back to it. A
failure raises a one-line ``DataError`` naming the sample and the template; nothing is ever masked
silently. Unusable samples raise ``SkipSample`` with a reason the engine counts. Span loss weights:
``spans.marker_weights``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tunesmith.data import images as img
from tunesmith.data.spans import (
    Tokens,
    check_span,
    check_tool_support,
    common_prefix,
    common_suffix,
    drop_exchange,
    exchanges,
    first_stop,
    marker_weights,
    template_kwargs,
    to_template_dict,
    weight_at,
)
from tunesmith.data.types import Conversation, Message, TextDoc
from tunesmith.errors import DataError

IGNORE_INDEX = -100
_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")
_SHOW = 60  # characters of text shown in error messages
# Two stand-ins for an assistant turn's content that differ in their first and last characters
# (private-use code points, untouched by trim/upper): where two renderings with them differ is
# exactly where the content goes.
_PLACEHOLDERS = ("\ue000\ue001", "\ue002\ue003")


@dataclass
class RenderOptions:
    """How labels are assigned and long samples are handled."""

    max_length: int = 512
    truncation: str = "drop"  # drop | truncate_left | truncate_right
    train_on_prompt: bool = False
    mask_history: bool = False
    system: str | None = None
    loss_weights: dict[str, float] | None = None
    image_token: str | None = None  # set for vision-language models: <image> gets expanded
    image_seq_length: int = 1  # tokens per image
    allow_remote_images: bool = False


@dataclass
class Rendered:
    """A tokenised sample. ``weights`` is ``None`` when every trained token weighs 1."""

    input_ids: list[int]
    labels: list[int]
    weights: list[float] | None = None
    truncated: bool = False
    images: list[str] | None = None  # image references, in the order of their tokens

    @property
    def trained_tokens(self) -> int:
        """Labels that enter the loss (position 0 predicts nothing after the shift)."""
        labels = self.labels
        if len(labels) < 2:
            return 0
        return len(labels) - 1 - labels.count(IGNORE_INDEX) + (labels[0] == IGNORE_INDEX)

    def as_dict(self) -> dict[str, Any]:
        """The plain-dict form collation works on."""
        out = {"input_ids": self.input_ids, "labels": self.labels, "weights": self.weights}
        return {**out, "images": self.images} if self.images else out


class SkipSample(Exception):
    """A sample that cannot be used under the current policy (counted by reason, never hidden)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Span:
    """Characters ``[start, end)`` of one assistant turn in the rendered text."""

    start: int
    end: int
    trained: bool
    index: int
    message: Message


@dataclass
class Plan:
    """A rendered conversation before tokenisation."""

    text: str
    spans: list[Span]
    messages: list[Message]
    conv: Conversation
    where: str
    loss_weights: dict[str, float] | None
    images: list[str] = field(default_factory=list)  # those whose placeholders are in messages


@dataclass
class Renderer:
    """Renders canonical samples with one tokenizer and one chat template."""

    tokenizer: Any
    chat_template: str
    stop: tuple[str, ...]
    options: RenderOptions = field(default_factory=RenderOptions)
    template_name: str = "tokenizer"

    def __post_init__(self) -> None:
        self._backend = getattr(self.tokenizer, "backend_tokenizer", None)
        self._markers = bool(_GENERATION.search(self.chat_template))
        self._kwargs = template_kwargs(self.tokenizer, self.template_name)
        self._notes: set[str] = set()

    # ---- public ----------------------------------------------------------------------------
    def render(
        self,
        conv: Conversation,
        where: str | None = None,
        loss_weights: dict[str, float] | None = None,
    ) -> Rendered:
        """Tokenise one conversation with labels on its trained turns; applies the length policy.

        Raises:
            SkipSample: the sample is unusable under the policy (too long, nothing trained).
            DataError: the template fails on the sample, or the label self-check fails.
        """
        out = self.render_many([conv], [where] if where else None, loss_weights)[0]
        if isinstance(out, SkipSample):
            raise out
        return out

    def render_many(
        self,
        convs: Sequence[Conversation],
        wheres: Sequence[str] | None = None,
        loss_weights: dict[str, float] | None = None,
    ) -> list[Rendered | SkipSample]:
        """Render a batch: templates per sample, one batched tokenisation for all of them.

        Args:
            convs: The conversations.
            wheres: Their locations (``file:line``) for error messages.
            loss_weights: Span weights overriding ``options.loss_weights`` for this batch.
        """
        weights = loss_weights if loss_weights is not None else self.options.loss_weights
        plans = [
            self.plan(c, wheres[i] if wheres else _where(c), weights) for i, c in enumerate(convs)
        ]
        encoded = self._encode([p.text for p in plans])
        out: list[Rendered | SkipSample] = []
        for plan, tokens in zip(plans, encoded):
            try:
                r = self._labels(plan, tokens)
                if len(r.input_ids) > self.options.max_length:
                    r = self._truncate(plan, r)
                if r.trained_tokens == 0:
                    raise SkipSample("no trained tokens")
                out.append(r)
            except SkipSample as skip:
                out.append(skip)
        return out

    def plan(
        self,
        conv: Conversation,
        where: str,
        loss_weights: dict[str, float] | None = None,
        messages: list[Message] | None = None,
    ) -> Plan:
        """Render the text of a conversation and locate (and check) its assistant spans."""
        if messages is None:
            messages = list(conv.messages)
            if self.options.system and not (messages and messages[0].role == "system"):
                messages.insert(0, Message("system", self.options.system))
        check_tool_support(self.chat_template, self.template_name, conv, messages, where)
        dicts = [to_template_dict(m) for m in messages]
        assistant = [i for i, m in enumerate(messages) if m.role == "assistant"]
        last = assistant[-1] if assistant else -1
        wanted = {i: self._trained(messages[i], i, last) for i in assistant}
        if not self.options.train_on_prompt:
            wanted = {i: t for i, t in wanted.items() if t}
        text, spans = (None, None)
        if self._markers:
            text, spans = self._spans_from_markers(dicts, conv, where, messages, wanted)
        if spans is None:
            text, spans = self._spans_from_prefixes(dicts, conv, where, messages, wanted)
        assert text is not None
        for sp in spans:
            check_span(text, sp, where, self.stop, self.template_name)
        system = messages[0].content.strip() if messages and messages[0].role == "system" else ""
        if system and system not in text:
            self._note(
                f"template {self.template_name!r} leaves the system message out of the trained "
                "text of some samples (Mistral v0.3 writes it only into a last user turn, so a "
                "sample ending on an answer has none), while chat and serve send it; put standing "
                "instructions into the user turns, or use a template that keeps the system message"
            )
        return Plan(
            text, spans, messages, conv, where, loss_weights, img.kept_images(conv, messages)
        )

    def render_text(self, doc: TextDoc) -> list[Rendered]:
        """Tokenise a document for pre-training, split into ``max_length`` chunks, eos appended."""
        return self.render_texts([doc])[0]

    def render_texts(self, docs: Sequence[TextDoc]) -> list[list[Rendered]]:
        """Batched ``render_text``."""
        eos = self.tokenizer.eos_token_id
        n = self.options.max_length
        out = []
        for tokens in self._encode([d.text for d in docs]):
            ids = [*tokens.ids, eos] if eos is not None else list(tokens.ids)
            chunks = [ids[i : i + n] for i in range(0, len(ids), n)]
            out.append([Rendered(c, list(c)) for c in chunks if len(c) > 1])
        return out

    # ---- spans -----------------------------------------------------------------------------
    def _trained(self, msg: Message, i: int, last_assistant: int) -> bool:
        if msg.loss is False or msg.weight == 0:
            return False
        if self.options.mask_history and i != last_assistant:
            return False
        return msg.trained

    def _spans_from_prefixes(
        self,
        dicts: list[dict[str, Any]],
        conv: Conversation,
        where: str,
        messages: list[Message],
        wanted: dict[int, bool],
    ) -> tuple[str, list[Span]]:
        full = self._apply(dicts, conv, where, gen=False)
        spans: list[Span] = []
        floor = 0  # a turn's span starts after the previous one ends
        for i, trained in wanted.items():
            last = i == len(dicts) - 1
            msg = messages[i]
            prompt = self._apply(dicts[:i], conv, where, gen=True)
            start = len(prompt)
            turn = full if last else self._apply(dicts[: i + 1], conv, where)
            if not full.startswith(prompt):
                # Some templates render a turn in the history unlike a final turn (Qwen3 without
                # thinking opens a final turn with an empty <think> block). Accept that only when
                # the turn alone does start with the prompt and the history renders identically.
                history = self._apply(dicts[:i], conv, where)
                agree = common_prefix(full, prompt)
                if turn.startswith(prompt) and full.startswith(history) and agree >= len(history):
                    # Back off to the end of the header ("<think>" and "<tool_call>" share "<t").
                    head = full[len(history) : agree]
                    start = len(history) + max(head.rfind(c) + 1 for c in "\n >]:")
                else:
                    # Earlier turns render differently once later ones follow (Mistral v0.3 writes
                    # the system message into the last user turn only): find the turn in context.
                    full, span = self._in_context(
                        dicts, conv, where, full, (prompt, history), floor, i
                    )
                    spans.append(Span(*span, trained, i, msg))
                    floor = span[1]
                    continue
            cut = common_prefix(full, turn)
            after = self._content_end(full, start, cut, msg)
            full, end = self._end_of_turn(full, start if after is None else after, cut, last)
            if end is None or after is None:
                # History rendered unlike a final turn (Qwen3 drops reasoning from earlier
                # turns): find the content in context, then its end-of-turn string.
                found = self._content_end(full, start, len(full), msg)
                stop_end = None
                if found is not None:
                    stop_end = first_stop(full, found, len(full), self.stop)
                if stop_end is not None and full[start:stop_end] in turn:
                    end = stop_end
                elif end is None:
                    raise DataError(
                        f"{where}: template {self.template_name!r} renders assistant turn {i} "
                        "differently alone than in context, so its labels cannot be derived; "
                        "use another model.template"
                    )
                # else: keep the span; the self-check names what the template dropped
            spans.append(Span(start, end, trained, i, msg))
            floor = end
        return full, spans

    def _in_context(
        self,
        dicts: list[dict[str, Any]],
        conv: Conversation,
        where: str,
        full: str,
        prompts: tuple[str, str],
        floor: int,
        i: int,
    ) -> tuple[str, tuple[int, int]]:
        """The span of assistant turn ``i`` found in the whole conversation's rendering.

        The whole rendering is what gets trained, so the span is located there: two renderings
        with the turn's content replaced by different placeholders differ exactly where the
        content goes; the span starts where the tail of the turn's generation prompt (its header
        and at least one character before it) last matches before the content, and ends at the
        first end-of-turn string after the content. The training context before the span then
        differs from the prompt chat and serve send for this turn; a note says so.

        Args:
            prompts: The turn's generation prompt and the same turns rendered without one.
        """
        prompt, history = prompts
        marked = [self._apply(_with_content(dicts, i, m), conv, where) for m in _PLACEHOLDERS]
        a = common_prefix(marked[0], marked[1])  # where the content starts (and, below, ends)
        b = len(marked[0]) - common_suffix(marked[0], marked[1])
        content_end = len(full) - (len(marked[0]) - b)
        header = len(prompt) - common_prefix(prompt, history)  # what the generation prompt adds
        best, start = 0, -1
        located = a < b and a <= content_end and full.startswith(marked[0][:a])
        if prompt and located and full.endswith(marked[0][b:]):
            # Candidate starts: after each occurrence of the prompt's last character; the one
            # where most of the prompt's tail matches wins (the nearest to the content on ties).
            k = full.rfind(prompt[-1], floor, a)
            while k >= 0:
                n = common_suffix(full, prompt, k + 1)
                if n > best:
                    best, start = n, k + 1
                k = full.rfind(prompt[-1], floor, k)
        if start < 0 or best <= header:
            raise DataError(
                f"{where}: template {self.template_name!r} renders the generation prompt "
                f"of assistant turn {i} differently from the turn in context, so its "
                "labels cannot be derived; use another model.template"
            )
        last = i == len(dicts) - 1
        turn = full if last else self._apply(dicts[: i + 1], conv, where)
        cut = max(common_prefix(full, turn), content_end)
        full, end = self._end_of_turn(full, content_end, cut, last)
        if end is None:
            raise DataError(
                f"{where}: template {self.template_name!r} renders assistant turn {i} "
                "differently alone than in context, so its labels cannot be derived; "
                "use another model.template"
            )
        self._note(
            f"template {self.template_name!r} renders the context of an assistant turn unlike "
            "its generation prompt (Mistral v0.3 moves the system message to the last user "
            "turn): turns are trained as the whole conversation renders them, so the training "
            "context differs from the prompt chat and serve send"
        )
        return full, (start, end)

    def _spans_from_markers(
        self,
        dicts: list[dict[str, Any]],
        conv: Conversation,
        where: str,
        messages: list[Message],
        wanted: dict[int, bool],
    ) -> tuple[str, list[Span] | None]:
        from transformers.utils.chat_template_utils import render_jinja_template

        try:
            texts, indices = render_jinja_template(
                conversations=[dicts],
                tools=conv.tools,
                chat_template=self.chat_template,
                return_assistant_tokens_mask=True,
                **self._kwargs,
            )
        except Exception as exc:  # jinja raise_exception / TemplateError
            raise self._template_error(exc, where, conv) from None
        full, blocks = texts[0], indices[0]
        assistant = [i for i, m in enumerate(messages) if m.role == "assistant"]
        if len(blocks) != len(assistant):
            return full, None  # markers do not wrap exactly the assistant turns: use prefixes
        spans: list[Span] = []
        for i, (start, end) in zip(assistant, blocks):
            if i in wanted:
                after = self._content_end(full, start, end, messages[i])
                last = i == len(dicts) - 1
                full, stop_end = self._end_of_turn(
                    full, start if after is None else after, end, last
                )
                spans.append(
                    Span(start, end if stop_end is None else stop_end, wanted[i], i, messages[i])
                )
        return full, spans

    def _end_of_turn(self, full: str, after: int, end: int, last: bool) -> tuple[str, int | None]:
        """Train up to the first end-of-turn string after the content, not what follows it.

        ``after`` is where the turn's content (and its tool calls) ends, ``end`` where the turn's
        own rendering stops agreeing with the whole conversation. Phi-3 writes ``<|endoftext|>``
        after the final ``<|end|>``: the span stops at ``<|end|>``. Returns the (possibly
        extended) text and the span end, or ``None`` when no end-of-turn string belongs to the
        turn.
        """
        if not self.stop:
            return full, end
        hit = first_stop(full, after, end, self.stop)
        if hit is not None:
            return full, hit
        rest = full[end:].lstrip(" ")
        for s in self.stop:
            if s and rest.startswith(s):  # GLM style: the next role token ends the turn
                return full, len(full) - len(rest) + len(s)
        if last and not full[end:].strip():
            return full[:end] + self.stop[0], end + len(self.stop[0])
        return full, None

    def _content_end(self, full: str, start: int, end: int, msg: Message) -> int | None:
        """Where the message's content and its tool calls end in ``full[start:end]``."""
        content = msg.content.strip()
        pos = full.find(content, start, end) if content else start
        if pos < 0:
            return None
        after = pos + len(content)
        for call in msg.tool_calls or []:
            name = (call.get("function") or call).get("name", "")
            found = full.find(name, after, end) if name else -1
            after = found + len(name) if found >= 0 else after
        return after

    def _note(self, note: str) -> None:
        """Warn once per renderer about a train/inference difference the template causes."""
        if note not in self._notes:
            self._notes.add(note)
            warnings.warn(note, UserWarning, stacklevel=2)

    @property
    def notes(self) -> list[str]:
        """The train/inference differences met so far (each also warned once)."""
        return sorted(self._notes)

    # ---- tokens and labels -----------------------------------------------------------------
    def _encode(self, texts: list[str]) -> list[Tokens]:
        if not texts:
            return []
        if self._backend is not None:
            encs = self._backend.encode_batch(texts, add_special_tokens=False)
            return [Tokens(e.ids, encoding=e) for e in encs]
        out = []
        for text in texts:
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = [tuple(o) for o in enc["offset_mapping"]]
            out.append(Tokens(list(enc["input_ids"]), offsets=offsets))
        return out

    def _decode(self, ids: list[int]) -> str:
        if self._backend is not None:
            return self._backend.decode(ids, skip_special_tokens=False)
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _labels(self, plan: Plan, tokens: Tokens) -> Rendered:
        ids = tokens.ids
        n = len(ids)
        labels = list(ids) if self.options.train_on_prompt else [IGNORE_INDEX] * n
        weights: list[float] | None = None
        for sp in plan.spans:
            first, last = tokens.token_range(sp.start, sp.end)
            if not sp.trained:
                labels[first:last] = [IGNORE_INDEX] * (last - first)
                continue
            self._check_tokens(plan, sp, tokens, first, last)
            points = marker_weights(plan.text, sp.start, sp.end, plan.loss_weights, self.stop)
            if not points and sp.message.weight == 1.0:
                labels[first:last] = ids[first:last]
                continue
            if weights is None:
                weights = [1.0] * n
            for t in range(first, last):
                w = sp.message.weight * weight_at(points, max(tokens.chars(t)[0], sp.start))
                labels[t] = ids[t] if w != 0 else IGNORE_INDEX
                weights[t] = w
        if weights is not None and all(
            w == 1.0 for w, lab in zip(weights, labels) if lab != IGNORE_INDEX
        ):
            weights = None
        if self.options.image_token and plan.conv.images:
            return self._expand_images(plan, list(ids), labels, weights)
        return Rendered(list(ids), labels, weights)

    def _image_id(self) -> int:
        token = self.options.image_token
        return self.tokenizer.convert_tokens_to_ids(token) if token else -1

    def _expand_images(
        self, plan: Plan, ids: list[int], labels: list[int], weights: list[float] | None
    ) -> Rendered:
        ids, labels, weights = img.expand_image_tokens(
            ids,
            labels,
            weights,
            image_id=self._image_id(),
            per_image=self.options.image_seq_length,
            n_images=len(plan.images),
            where=plan.where,
        )
        return Rendered(ids, labels, weights, images=list(plan.images))

    def _check_tokens(
        self,
        plan: Plan,
        sp: Span,
        tokens: Tokens,
        first: int,
        last: int,
    ) -> None:
        """The trained tokens decode to the span text (and cover all of it)."""
        want = plan.text[sp.start : sp.end]
        got = self._decode(tokens.ids[first:last])
        covered = ""
        if last > first:
            covered = plan.text[tokens.chars(first)[0] : tokens.chars(last - 1)[1]]
        if got.strip() != covered.strip() or want.strip() not in covered:
            raise DataError(
                f"{plan.where}: label self-check failed with template {self.template_name!r}: "
                f"assistant turn {sp.index} trained tokens decode to {got[:_SHOW]!r}, expected "
                f"{want[:_SHOW]!r}"
            )

    # ---- length policy ---------------------------------------------------------------------
    def _truncate(self, plan: Plan, out: Rendered) -> Rendered:
        policy = self.options.truncation
        if policy == "drop":
            raise SkipSample("longer than max_length")
        messages = plan.messages
        head = 1 if messages and messages[0].role == "system" else 0
        body = messages[head:]
        # Whole turns first: drop the oldest (left) or newest (right) exchange while >1 remain.
        while exchanges(body) > 1:
            body = drop_exchange(body, left=policy == "truncate_left")
            p = self.plan(plan.conv, plan.where, plan.loss_weights, messages[:head] + body)
            candidate = self._labels(p, self._encode([p.text])[0])
            if len(candidate.input_ids) <= self.options.max_length:
                candidate.truncated = True
                return candidate
            out = candidate
        kept = img.truncate_keeping_images(  # image tokens are reserved: only text is cut
            out.input_ids,
            out.labels,
            out.weights,
            image_id=self._image_id(),
            max_length=self.options.max_length,
            left=policy == "truncate_left",
        )
        if kept is None:
            raise SkipSample("image tokens alone exceed max_length")
        cut = Rendered(*kept, truncated=True, images=out.images)
        if cut.trained_tokens == 0:
            raise SkipSample("no trained tokens left after truncation")
        return cut

    # ---- templates -------------------------------------------------------------------------
    def _apply(
        self, dicts: list[dict[str, Any]], conv: Conversation, where: str, *, gen: bool = False
    ) -> str:
        from transformers.utils.chat_template_utils import render_jinja_template

        try:
            texts, _ = render_jinja_template(
                conversations=[dicts],
                tools=conv.tools,
                chat_template=self.chat_template,
                add_generation_prompt=gen,
                **self._kwargs,
            )
        except Exception as exc:  # jinja raise_exception / TemplateError / undefined names
            raise self._template_error(exc, where, conv) from None
        return texts[0]

    def _template_error(self, exc: Exception, where: str, conv: Conversation) -> DataError:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = ""
        if conv.tools or any(m.role == "tool" or m.tool_calls for m in conv.messages):
            hint = "; tool data needs a tool-capable template (see `tunesmith data templates`)"
        return DataError(f"{where}: template {self.template_name!r}: {msg}{hint}")


def _with_content(dicts: list[dict[str, Any]], i: int, content: str) -> list[dict[str, Any]]:
    return [*dicts[:i], {**dicts[i], "content": content}, *dicts[i + 1 :]]


def _where(conv: Conversation) -> str:
    return conv.meta.get("where") or conv.source or "sample"


def build_renderer(
    tokenizer: Any,
    data: Any,
    template: str | None = None,
    *,
    stage: str = "sft",
    image_token: str | None = None,
    image_seq_length: int = 1,
    allow_remote_images: bool = False,
) -> Renderer:
    """The finished renderer for a tokenizer, a template name and a ``DataConfig``.

    The one place a renderer is configured: training, ``tunesmith data``, evaluation and the
    tests build it here and never patch its options afterwards.

    Args:
        tokenizer: The model's tokenizer.
        data: The run's ``DataConfig`` (length policy, label policy, system, loss weights).
        template: A built-in template name, or ``None`` for the tokenizer's own.
        stage: ``pt`` trains on every token (as ``data.train_on_prompt``).
        image_token: For vision-language models: the placeholder expanded into image tokens.
        image_seq_length: Tokens per image (the tower's count).
        allow_remote_images: Whether ``http(s)`` images may be fetched.

    Raises:
        ConfigError: unknown template name, or no template at all.
    """
    from tunesmith.data.templates import resolve_chat_template

    jinja, stop = resolve_chat_template(tokenizer, template)
    options = RenderOptions(
        max_length=data.max_length,
        truncation=data.truncation,
        train_on_prompt=data.train_on_prompt or stage == "pt",
        mask_history=data.mask_history,
        system=data.system,
        loss_weights=dict(data.loss_weights) if data.loss_weights else None,
        image_token=image_token,
        image_seq_length=image_seq_length,
        allow_remote_images=allow_remote_images,
    )
    return Renderer(tokenizer, jinja, stop, options, template or "tokenizer")


def template_json(renderer: Renderer) -> dict[str, Any]:
    """What a run saves as ``template.json``: its template, stop strings and system policy."""
    from tunesmith.data.templates import default_system_of

    name = renderer.template_name
    return {
        "template": name,
        "stops": list(renderer.stop),
        "system": renderer.options.system,
        "default_system": default_system_of(
            renderer.chat_template, None if name == "tokenizer" else name
        ),
    }
