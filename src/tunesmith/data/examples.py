"""One configured source -> canonical examples, and the pieces every stage's preparation shares.

``engine.prepare`` (SFT / pretraining) and ``pairs.prepare_pairs`` (the preference stages) both
use these, so ``pairs`` does not import ``engine``, which hands the preference stages to it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tunesmith.config.schema import DataConfig, DatasetConfig
from tunesmith.data.report import DataReport, SourceReport
from tunesmith.data.types import TextDoc
from tunesmith.errors import DataError


@dataclass
class PreparedData:
    """Rendered training and validation samples plus the report."""

    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    report: DataReport


def resolve_source(ds: DatasetConfig) -> dict[str, Any]:
    """Keyword arguments for ``load_examples`` from one dataset entry (incl. dataset_info)."""
    from tunesmith.data.dataset_info import read_dataset_info

    if ds.from_info is not None:
        entry = read_dataset_info(ds.from_info, ds.name or "")
        return {
            "path": entry.file,
            "fmt": entry.fmt if ds.format == "auto" else ds.format,
            "columns": {**(entry.columns or {}), **(ds.columns or {})} or None,
            "tags": {**(entry.tags or {}), **(ds.tags or {})} or None,
            "ranking": entry.ranking,
            "media_dir": ds.media_dir or entry.media_dir,
            "split": entry.split or ds.split,
            "encoding": ds.encoding,
        }
    path: Any = ds.path
    if ds.path and ds.path.startswith("builtin:"):
        from tunesmith.data.builtin import builtin_path

        path = builtin_path(ds.path.removeprefix("builtin:"))
    return {
        "path": path,
        "fmt": ds.format,
        "columns": ds.columns,
        "tags": ds.tags,
        "ranking": False,
        "media_dir": ds.media_dir,
        "split": ds.split,
        "encoding": ds.encoding,
    }


def load_source(
    ds: DatasetConfig, cfg: DataConfig, index: int
) -> tuple[list[Any], SourceReport, list[str]]:
    """Read and convert one source; substitute identity placeholders.

    Returns:
        The examples, the source's report so far, and each example's ``file:line``.
    """
    from tunesmith.data.selfcog import has_placeholders, substitute
    from tunesmith.data.sources import load_examples

    report = SourceReport(name=ds.display_name)
    result = load_examples(
        **resolve_source(ds),
        max_rows=ds.max_samples,
        on_error=cfg.on_error,
        source=ds.display_name,
    )
    report.rows_read = result.rows_read
    report.skipped.update(result.skipped)
    examples = list(result.examples)
    for i, ex in enumerate(examples):
        if not isinstance(ex, TextDoc) and has_placeholders(ex):
            if cfg.identity is None:
                raise DataError(
                    f"data.datasets.{index} ({ds.display_name}): samples contain {{{{name}}}}/"
                    "{{author}} placeholders; set data.identity.name and data.identity.author"
                )
            examples[i] = substitute(ex, cfg.identity.name, cfg.identity.author)
    return examples, report, result.wheres


def new_report(sources: list[SourceReport], cfg: DataConfig, refuse: bool) -> DataReport:
    """The mix report; raises ``DataError`` when ``refuse`` and a source loses most of its rows."""
    report = DataReport(
        sources, max_length=cfg.max_length, truncation=cfg.truncation, allow_drop=cfg.allow_drop
    )
    why = report.refusal()
    if refuse and why:
        raise DataError(why)
    return report


def val_count(n: int, val_size: float | int) -> int:
    """Rows of a source held out: a share when below 1, else a count."""
    if not val_size:
        return 0
    return int(val_size) if val_size >= 1 else round(n * val_size)


T = TypeVar("T")


def split_and_mix(
    cfg: DataConfig,
    sources: Sequence[Sequence[T]],
    reports: list[SourceReport],
    *,
    what: str = "samples",
    hint: str = "check max_length and the data",
) -> tuple[list[tuple[int, T]], list[T]]:
    """Hold out each source's validation rows, then mix the rest as ``data.datasets`` plan it.

    Every stage's preparation ends here, so SFT and preference data split and mix alike. One
    seeded RNG (``data.seed``) shuffles each source (where ``shuffle``), then draws and
    interleaves the mix, in that order.

    Returns:
        ``(mix, val)``: the mix as ``(source index, sample)`` in training order (a resampled
        sample appears more than once), and the held-out samples. ``reports`` get their counts.

    Raises:
        DataError: a source has no usable ``what`` left; the message adds ``hint``.
    """
    from tunesmith.data.mixing import draw, interleave, plan_mix

    rng = random.Random(cfg.seed)
    pools: list[list[T]] = []
    val: list[T] = []
    for items, ds, report in zip(sources, cfg.datasets, reports):
        report.rows_kept = len(items)
        items = list(items)  # a copy: a cached source stays in its order
        if ds.shuffle:
            rng.shuffle(items)
        n_val = min(val_count(len(items), cfg.val_size), max(len(items) - 1, 0))
        val += items[:n_val]
        report.val_samples = n_val
        pools.append(items[n_val:])
    for i, (pool, rep) in enumerate(zip(pools, reports)):
        if not pool:
            reasons = ", ".join(f"{r}: {n}" for r, n in rep.skipped.items()) or "none"
            raise DataError(
                f"data.datasets.{i} ({rep.name}): no usable {what} "
                f"({rep.rows_read} rows read; skipped {reasons}); {hint}"
            )
    plan = plan_mix(
        [len(p) for p in pools],
        [ds.samples for ds in cfg.datasets],
        [ds.weight for ds in cfg.datasets],
        cfg.total_samples,
    )
    groups = [
        draw(len(pool), plan.counts[i], rng, shuffle=ds.shuffle)
        for i, (pool, ds) in enumerate(zip(pools, cfg.datasets))
    ]
    mix = [(g, pools[g][idx]) for g, idx in interleave(groups, rng)]
    for i, rep in enumerate(reports):
        rep.samples_in_mix = plan.counts[i]
        rep.resampled = plan.resampled(i)
    return mix, val


__all__ = [
    "PreparedData",
    "load_source",
    "new_report",
    "resolve_source",
    "split_and_mix",
    "val_count",
]
