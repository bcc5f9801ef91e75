"""The data preview of the Configure tab: ``tunesmith data preview``'s code path (config ->
tokenizer -> renderer -> the prepared mix), shown as highlighted text plus the mix report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

TRAINED = "trained"


def highlighted(sample: dict[str, Any], tokenizer: Any) -> list[tuple[str, str | None]]:
    """One sample as ``(text, label)`` runs: ``trained``, ``trained xW`` (a loss weight other
    than 1) or ``None`` (context, not trained). A preference pair / KTO example shows its prompt
    then each reply, headed like ``tunesmith data preview`` does."""
    from tunesmith.data.preview import _decode, _parts, segments

    out: list[tuple[str, str | None]] = []
    parts = _parts(sample)
    for i, (heading, part) in enumerate(parts):
        if heading:
            out.append((("\n" if i else "") + heading + "\n", None))
        for ids, state in segments(part):
            label = None if state is None else TRAINED if state == 1.0 else f"{TRAINED} x{state:g}"
            out.append((_decode(tokenizer, ids), label))
    return out


def preview(config_file: Path, n: int = 3) -> tuple[list[list[tuple[str, str | None]]], str]:
    """``n`` samples of the mix the config trains on, and the mix report as Markdown.

    Raises:
        TunesmithError: what ``tunesmith data preview`` would print for this config.
    """
    from tunesmith.data.commands import _prepare
    from tunesmith.data.preview import _counts_line, title

    data, tokenizer, renderer = _prepare(argparse.Namespace(config=str(config_file), overrides=[]))
    samples = [highlighted(dict(s), tokenizer) for s in data.train[:n]]
    report = data.report
    lines = [
        f"Template: **{renderer.template_name}**. Trained tokens are highlighted.",
        "",
        *(f"- {title(s, i + 1)}" for i, s in enumerate(data.train[:n])),
        "",
        report.markdown(),  # with the skipped rows, warnings and a refusal, as data stats
        f"- {_counts_line(report)}",
    ]
    return samples, "\n".join(lines)
