"""Shared pieces of the converters: the registry, the conversion context and field helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.types import Example


class Invalid(Exception):
    """A problem with one record, located (file:line) by ``convert``.

    Attributes:
        problem: What is wrong, e.g. ``"empty assistant turn (message 2)"``.
        fix: How to fix it, e.g. ``"give every assistant turn some text"``.
        reason: A short fixed label used to count skipped records.
    """

    def __init__(self, problem: str, fix: str, reason: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix
        self.reason = reason


ROLE_NAMES: dict[str, str] = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
    "tool": "tool",
    "observation": "tool",
    "function": "tool",
    "ipython": "tool",
    "function_call": "call",
}
"""Role names found in the wild -> our roles (``call`` is an assistant turn holding tool calls)."""

TAG_KEYS: dict[str, str] = {
    "user_tag": "user",
    "assistant_tag": "assistant",
    "system_tag": "system",
    "observation_tag": "tool",
    "function_tag": "call",
}
"""LLaMA-Factory's ``tags`` keys that rename roles, besides ``role_tag`` and ``content_tag``."""


@dataclass(frozen=True)
class Tags:
    """How message dicts name their fields and roles.

    ``role_key``/``content_key`` of ``None`` mean "guess per message": ``from``/``value`` when
    present (ShareGPT), else ``role``/``content`` (OpenAI).
    """

    role_key: str | None = None
    content_key: str | None = None
    names: Mapping[str, str] = field(default_factory=lambda: dict(ROLE_NAMES))

    @classmethod
    def from_mapping(cls, tags: Mapping[str, str] | None) -> Tags:
        """Build from LLaMA-Factory style ``tags`` (keys are checked by ``check_options``)."""
        if not tags:
            return cls()
        names = dict(ROLE_NAMES)
        for key, role in TAG_KEYS.items():
            if key in tags:
                names[str(tags[key])] = role
        return cls(tags.get("role_tag"), tags.get("content_tag"), names)


@dataclass(frozen=True)
class Context:
    """Everything a converter needs besides the record."""

    fmt: str
    tags: Tags
    media_dir: Path
    source: str
    columns: Mapping[str, str]


Converter = Callable[[dict[str, Any], Context], Example]
FORMATS: dict[str, Converter] = {}
"""Format name -> converter. Add one with ``@register("name")``."""


def register(name: str) -> Callable[[Converter], Converter]:
    """Register a converter under ``name``."""

    def deco(fn: Converter) -> Converter:
        FORMATS[name] = fn
        return fn

    return deco


def present(rec: Mapping[str, Any], *names: str) -> str | None:
    """The first of ``names`` present in ``rec`` with a non-null value."""
    return next((n for n in names if rec.get(n) is not None), None)


def need(rec: Mapping[str, Any], ctx: Context, *names: str) -> Any:
    """The value of the first present field among ``names``, or an ``Invalid`` naming the first."""
    name = present(rec, *names)
    if name is not None:
        return rec[name]
    wanted = names[0]
    fields = ", ".join(sorted(rec)) or "none"
    if wanted in ctx.columns:
        fix = f"columns maps {wanted} to {ctx.columns[wanted]!r}, which this record lacks"
    else:
        fix = f"add it or map your column with `columns: {{{wanted}: <your column>}}`"
    raise Invalid(
        f"missing field {wanted!r} for format {ctx.fmt} (fields: {fields})", fix, "missing column"
    )


def as_text(value: Any, what: str) -> str:
    """A string field (``None`` counts as empty), or ``Invalid`` for any other type."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Invalid(
            f"{what} must be a string, got {type(value).__name__}",
            "write it as text (quote numbers)",
            "wrong type",
        )
    return value


def short(value: Any, limit: int = 40) -> str:
    """A short one-line repr of a value for messages."""
    text = repr(value).replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."
