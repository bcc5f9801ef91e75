"""One configured source -> canonical examples, and the pieces every stage's preparation shares.

``engine.prepare`` (SFT / pretraining) and ``pairs.prepare_pairs`` (the preference stages) both
use these, so ``pairs`` does not import ``engine``, which hands the preference stages to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


__all__ = ["PreparedData", "load_source", "new_report", "resolve_source", "val_count"]
