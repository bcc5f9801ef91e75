"""``data.augment`` -> generated sources in the mix.

Each entry's samples are generated once into a JSON-lines file in the cache, named by a digest of
the entry, the input files and this package's code, and then appended to ``data.datasets`` as an
ordinary source: rendering, the token cache, ``samples``/``weight`` mixing, validation split and
the data report treat it like any other file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from tunesmith.config.schema import AugmentConfig, DataConfig, DatasetConfig
from tunesmith.errors import DataError

CONVERSATION_STAGES: tuple[str, ...] = ("sft",)


def expand(cfg: DataConfig, stage: str) -> DataConfig:
    """``cfg`` with each ``data.augment`` entry as one more dataset (``cfg`` if there is none).

    Raises:
        DataError: augment is used with a stage that does not train conversations, or an entry's
            facts cannot be read (the message names the file and line).
    """
    if not cfg.augment:
        return cfg
    if stage not in CONVERSATION_STAGES:
        raise DataError(
            f"data.augment: generated samples are conversations, which method.stage {stage!r} "
            "does not train; use method.stage sft or remove data.augment"
        )
    extra: list[DatasetConfig] = []
    for i, aug in enumerate(cfg.augment):
        path, summary = materialise(aug, i)
        name = aug.name or f"augment {i}: {aug.triples} ({summary})"
        extra.append(
            DatasetConfig(path=str(path), name=name, samples=aug.samples, weight=aug.weight)
        )
    return cfg.model_copy(update={"datasets": [*cfg.datasets, *extra], "augment": []})


def options_of(aug: AugmentConfig) -> Any:  # graph.Options (lazy import: networkx)
    """The generator options of one ``data.augment`` entry."""
    from tunesmith.data.augment.graph import Options

    return Options(
        kinds=tuple(aug.kinds),
        max_hops=aug.max_hops,
        langs=tuple(aug.langs),
        negatives=aug.negatives,
        hop_inverse=aug.hop_inverse,
        seed=aug.seed,
    )


def materialise(aug: AugmentConfig, index: int) -> tuple[Path, str]:
    """The cached samples file of ``data.augment.<index>`` (written if missing) and a one-line
    summary for the report (kinds, samples, facts, duplicates removed)."""
    from tunesmith.model.tiny import cache_root

    digest = _digest(aug)
    folder = cache_root() / "augment"
    final = folder / f"{digest}.jsonl"
    info = folder / f"{digest}.json"
    if final.is_file() and info.is_file():
        return final, json.loads(info.read_text(encoding="utf-8"))["summary"]
    rows, summary = generate_rows(aug, index)
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in (
        (final, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)),
        (info, json.dumps({"summary": summary})),
    ):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)  # atomic: racing processes all end with one whole file
    return final, summary


def build(aug: AugmentConfig, where: str = "data.augment") -> tuple[Any, list[Any], Counter[str]]:
    """Read an entry's facts, build the graph and generate: ``(graph, samples, removed)``.

    ``where`` prefixes errors that are not about one file line (a config path or a CLI flag).
    """
    from tunesmith.data.augment.graph import build_graph, generate
    from tunesmith.data.augment.relations import load_table
    from tunesmith.data.augment.triples import read_facts

    table = load_table(_local(aug.relations) if aug.relations else None)
    facts = read_facts(aug.triples, table, columns=aug.columns)
    fg = build_graph(facts, table)
    try:
        samples, removed = generate(fg, options_of(aug))
    except DataError as e:
        raise DataError(f"{where}: {e}") from None
    return fg, samples, removed


def generate_rows(aug: AugmentConfig, index: int) -> tuple[list[dict[str, Any]], str]:
    """The conversation rows of one entry and its summary line."""
    fg, samples, removed = build(aug, f"data.augment.{index}")
    if not samples:
        raise DataError(
            f"data.augment.{index} ({aug.triples}): no samples of kinds {', '.join(aug.kinds)} "
            "(no relation has an inverse, or no path is long enough); check kinds and relations"
        )
    dupes = fg.duplicates + fg.stated_both_ways
    summary = (
        f"{', '.join(aug.kinds)}; {len(samples)} samples from {len(fg.facts)} facts, "
        f"{dupes} duplicate facts and {sum(removed.values())} duplicate questions removed"
    )
    return [s.conversation() for s in samples], summary


def _local(path: str) -> Path:
    if path.startswith("builtin:"):
        from tunesmith.data.builtin import builtin_path

        return builtin_path(path.removeprefix("builtin:"))
    return Path(path)


def _digest(aug: AugmentConfig) -> str:
    h = hashlib.sha256(json.dumps(aug.model_dump(), sort_keys=True).encode())
    for path in (aug.triples, aug.relations):
        if path is None:
            continue
        p = _local(path)
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(str(f).encode())
            h.update(f.read_bytes() if f.is_file() else b"missing")
    for f in sorted(Path(__file__).parent.glob("*.py")):  # changed code: regenerate
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
