"""DataEngine: sources -> canonical examples -> identity substitution -> render -> mix.

Each unique row is rendered once; mixing then draws indices, so resampling a small identity set
50 times costs nothing. Every row that does not make it into the mix is counted by reason in the
report — nothing is dropped without a number next to it.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config.schema import DataConfig, DatasetConfig
from tunesmith.data.mixing import draw, interleave, plan_mix
from tunesmith.data.render import Rendered, Renderer, SkipSample
from tunesmith.data.types import Conversation, KTOExample, PreferencePair, TextDoc
from tunesmith.errors import DataError


@dataclass
class SourceReport:
    """Per-source accounting for the mix report."""

    name: str
    rows_read: int = 0
    rows_kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    truncated: int = 0
    samples_in_mix: int = 0
    resampled: int = 0
    val_samples: int = 0
    trained_tokens: int = 0

    @property
    def rows_skipped(self) -> int:
        """Rows that were read but are not usable."""
        return sum(self.skipped.values())


@dataclass
class DataReport:
    """The whole mix: per source, and totals."""

    sources: list[SourceReport]
    seconds: float = 0.0
    packing_efficiency: float | None = None

    @property
    def samples(self) -> int:
        """Training samples in the final mix."""
        return sum(s.samples_in_mix for s in self.sources)

    @property
    def trained_tokens(self) -> int:
        """Trained (labelled) tokens in the final mix."""
        return sum(s.trained_tokens for s in self.sources)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``tunesmith data stats --json``)."""
        return {
            "datasets": [
                {
                    "name": s.name,
                    "rows_read": s.rows_read,
                    "rows_kept": s.rows_kept,
                    "rows_skipped": s.rows_skipped,
                    "skipped_by_reason": dict(s.skipped),
                    "truncated": s.truncated,
                    "samples_in_mix": s.samples_in_mix,
                    "resampled": s.resampled,
                    "val_samples": s.val_samples,
                    "trained_tokens": s.trained_tokens,
                }
                for s in self.sources
            ],
            "samples": self.samples,
            "trained_tokens": self.trained_tokens,
            "packing_efficiency": self.packing_efficiency,
            "seconds": round(self.seconds, 3),
        }

    def markdown(self) -> str:
        """The report as a Markdown table (``data_report.md`` in the run directory)."""
        total_s = max(self.samples, 1)
        total_t = max(self.trained_tokens, 1)
        lines = [
            "# Data report",
            "",
            "| source | rows read | kept | skipped | truncated | in mix | resampled | val "
            "| share (samples) | share (trained tokens) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in self.sources:
            lines.append(
                f"| {s.name} | {s.rows_read} | {s.rows_kept} | {s.rows_skipped} | {s.truncated} "
                f"| {s.samples_in_mix} | {s.resampled} | {s.val_samples} "
                f"| {100 * s.samples_in_mix / total_s:.1f}% "
                f"| {100 * s.trained_tokens / total_t:.1f}% |"
            )
        lines += ["", f"Samples: {self.samples}; trained tokens: {self.trained_tokens}."]
        if self.packing_efficiency is not None:
            lines.append(f"Packing efficiency: {100 * self.packing_efficiency:.1f}%.")
        skipped = [(s.name, r, n) for s in self.sources for r, n in s.skipped.items()]
        if skipped:
            lines += ["", "Skipped rows by reason:", ""]
            lines += [f"- {name}: {reason} — {n}" for name, reason, n in skipped]
        lines.append(f"\nPrepared in {self.seconds:.1f} s.")
        return "\n".join(lines) + "\n"


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
    }


def load_source(ds: DatasetConfig, cfg: DataConfig, index: int) -> tuple[list[Any], SourceReport]:
    """Read and convert one source; substitute identity placeholders."""
    from tunesmith.data.selfcog import has_placeholders, substitute
    from tunesmith.data.sources import load_examples

    report = SourceReport(name=ds.display_name)
    kwargs = resolve_source(ds)
    result = load_examples(
        **kwargs,
        max_rows=ds.max_samples,
        on_error=cfg.on_error,
        source=ds.display_name,
    )
    report.rows_read = result.rows_read
    report.skipped.update(result.skipped)
    examples = list(result.examples)
    for i, ex in enumerate(examples):
        if isinstance(ex, Conversation) and has_placeholders(ex):
            if cfg.identity is None:
                raise DataError(
                    f"data.datasets.{index} ({ds.display_name}): samples contain {{{{name}}}}/"
                    "{{author}} placeholders; set data.identity.name and data.identity.author"
                )
            examples[i] = substitute(ex, cfg.identity.name, cfg.identity.author)
    return examples, report


def prepare(cfg: DataConfig, renderer: Renderer, *, stage: str = "sft") -> PreparedData:
    """Run the whole pipeline for a training stage (``sft`` or ``pt``)."""
    t0 = time.perf_counter()
    rng = random.Random(cfg.seed)
    reports: list[SourceReport] = []
    pools: list[list[Rendered]] = []
    val: list[dict[str, Any]] = []
    for index, ds in enumerate(cfg.datasets):
        examples, report = load_source(ds, cfg, index)
        rendered = _render_all(examples, renderer, report, stage, index, ds)
        report.rows_kept = len(rendered)
        if ds.shuffle:
            rng.shuffle(rendered)
        n_val = round(len(rendered) * cfg.val_size) if cfg.val_size else 0
        n_val = min(n_val, max(len(rendered) - 1, 0))
        val += [r.as_dict() for r in rendered[:n_val]]
        report.val_samples = n_val
        pools.append(rendered[n_val:])
        reports.append(report)
    for i, (pool, rep) in enumerate(zip(pools, reports)):
        if not pool:
            raise DataError(
                f"data.datasets.{i} ({rep.name}): no usable samples "
                f"({rep.rows_read} rows read, skipped: {dict(rep.skipped) or 'none'})"
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
    train: list[dict[str, Any]] = []
    for g, idx in interleave(groups, rng):
        sample = pools[g][idx]
        train.append(sample.as_dict())
        reports[g].trained_tokens += sum(1 for lab in sample.labels[1:] if lab != -100)
    for i, rep in enumerate(reports):
        rep.samples_in_mix = plan.counts[i]
        rep.resampled = plan.resampled(i)
    return PreparedData(train, val, DataReport(reports, seconds=time.perf_counter() - t0))


def _render_all(
    examples: list[Any],
    renderer: Renderer,
    report: SourceReport,
    stage: str,
    index: int,
    ds: DatasetConfig,
) -> list[Rendered]:
    out: list[Rendered] = []
    for ex in examples:
        if isinstance(ex, (PreferencePair, KTOExample)):
            raise DataError(
                f"data.datasets.{index} ({ds.display_name}): preference/KTO data cannot train "
                f"the {stage!r} stage; use an SFT dataset or a preference stage"
            )
        try:
            if isinstance(ex, TextDoc):
                if stage != "pt":
                    raise SkipSample("plain text in an SFT mix (use stage pt)")
                out.extend(renderer.render_text(ex))
                continue
            r = renderer.render(ex)
        except SkipSample as skip:
            report.skipped[skip.reason] += 1
            continue
        report.truncated += int(r.truncated)
        out.append(r)
    return out


def write_report(report: DataReport, run_dir: Path) -> Path:
    """Write ``data_report.md`` into the run directory."""
    path = run_dir / "data_report.md"
    path.write_text(report.markdown(), encoding="utf-8")
    return path
