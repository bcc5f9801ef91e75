"""Canonical data types every source format converts into.

A ``Conversation`` is the one form the rest of the engine understands: the renderer turns it into
tokens and a loss mask, the mixer counts it, the preview shows it. Preference, KTO and plain-text
examples wrap or sit beside it so that the same template renders every stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


@dataclass
class Message:
    """One turn of a conversation.

    Attributes:
        role: ``system``, ``user``, ``assistant`` or ``tool`` (a tool/function result).
        content: The text. For multimodal samples, ``<image>`` placeholders mark image positions.
        loss: Whether this turn is trained on. ``None`` means "the default for its role"
            (assistant turns trained, everything else not). ``False`` on an assistant turn keeps
            it in the context but out of the loss (ms-swift's ``loss``, XTuner's
            ``output_with_loss``, ``mask_history``).
        weight: Loss weight for this turn's tokens (1.0 by default).
        tool_calls: OpenAI-style tool calls made by an assistant turn:
            ``[{"type": "function", "function": {"name": ..., "arguments": {...}}}]``.
        name: Optional tool name for ``tool`` messages.
    """

    role: Role
    content: str
    loss: bool | None = None
    weight: float = 1.0
    tool_calls: list[dict[str, Any]] | None = None
    name: str | None = None

    @property
    def trained(self) -> bool:
        """Whether this message contributes to the loss under the default policy."""
        return self.role == "assistant" if self.loss is None else self.loss


@dataclass
class Conversation:
    """A multi-turn conversation, the canonical SFT sample.

    Attributes:
        messages: The turns, optionally starting with one ``system`` message.
        tools: OpenAI-style tool (function) definitions available in this conversation.
        images: Paths (already resolved) of images referenced by ``<image>`` placeholders, in order.
        source: Name of the dataset this sample came from (for reports).
        meta: Free-form extras carried through (e.g. the language tag of identity data).
    """

    messages: list[Message]
    tools: list[dict[str, Any]] | None = None
    images: list[str] = field(default_factory=list)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreferencePair:
    """A prompt conversation with a preferred and a dispreferred assistant reply."""

    prompt: Conversation
    chosen: Message
    rejected: Message
    source: str = ""


@dataclass
class KTOExample:
    """A conversation whose last assistant turn is labelled desirable or undesirable."""

    conversation: Conversation
    desirable: bool
    source: str = ""


@dataclass
class TextDoc:
    """A plain-text document for continued pre-training."""

    text: str
    source: str = ""


Example = Conversation | PreferencePair | KTOExample | TextDoc
