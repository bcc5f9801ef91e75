"""Names the config accepts for registries that live in higher layers, and a did-you-mean helper.

``config`` imports nothing of ours (DESIGN: imports only go down), yet ``validate`` must refuse
``format: alpacca`` with its dotted path. The registries themselves (``data/formats``,
``data/templates``) hold code and import ``data``; these plain tuples copy their names, and
``tests/unit/config/test_names.py`` fails when a registry and its copy differ.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

FORMAT_NAMES: tuple[str, ...] = (
    "alpaca",
    "sharegpt",
    "openai",
    "llava",
    "xtuner",
    "query_response",
    "text",
    "preference",
    "kto",
)
"""``data.datasets.N.format`` values besides ``auto``: the keys of ``data.formats.FORMATS``."""

TEMPLATE_NAMES: tuple[str, ...] = (
    "chatml",
    "qwen2.5",
    "qwen3",
    "qwen3-nothink",
    "llama2",
    "llama3",
    "llama3.1",
    "mistral",
    "mistral-v3",
    "gemma",
    "gemma2",
    "gemma3",
    "phi3",
    "phi4",
    "internlm2",
    "deepseek",
    "yi",
    "vicuna",
    "alpaca",
    "zephyr",
    "chatglm3",
    "glm4",
    "baichuan2",
    "default",
)
"""``model.template`` values: ``data.templates.builtin_template_names()``, in registry order."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice nearest to ``word`` (case-insensitive), or None when none is close."""
    options = list(choices)
    lowered = {c.lower(): c for c in options}
    near = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.5)
    return lowered[near[0]] if near else None


def unknown_encoding(encoding: str) -> str:
    """The message for an encoding Python does not know (config schema and data readers)."""
    return (
        f"unknown encoding {encoding!r}; use a Python codec name such as utf-8, cp1252, "
        "latin-1 or gb18030"
    )
