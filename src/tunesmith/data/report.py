"""The mix report: per source rows read / kept / skipped by reason / resampled, shares of the mix.

Written to the run directory as ``data_report.md``, printed by ``tunesmith data preview`` and given
as JSON by ``tunesmith data stats --json``. ``warnings`` are the console lines for sources of which
more than ``WARN_SHARE`` was cut or dropped; ``refusal`` is why ``train`` will not start (a source
losing more than ``REFUSE_SHARE`` of its rows without ``data.allow_drop``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

WARN_SHARE = 0.01
"""A source with more than this share of its rows truncated or dropped gets a console warning."""
REFUSE_SHARE = 0.5
"""``train`` refuses a source that loses more than this share, unless ``data.allow_drop``."""
LENGTH_REASONS = frozenset(
    {
        "longer than max_length",
        "no trained tokens left after truncation",
        "image tokens alone exceed max_length",
    }
)
"""Skip reasons that ``data.max_length`` / ``data.truncation`` decide (the others are bad rows)."""


@dataclass
class SourceReport:
    """Per-source accounting for the mix report.

    ``cache`` is ``"hit"`` (samples read from the on-disk cache), ``"miss"`` (rendered and
    stored) or ``"off"``; ``seconds`` is this run's time for the source and ``time_saved`` the
    preprocessing time a cache hit avoided.
    """

    name: str
    rows_read: int = 0
    rows_kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    truncated: int = 0
    samples_in_mix: int = 0
    resampled: int = 0
    val_samples: int = 0
    trained_tokens: int = 0
    cache: str = "off"
    seconds: float = 0.0
    time_saved: float = 0.0

    @property
    def rows_skipped(self) -> int:
        """Rows that were read but are not usable."""
        return sum(self.skipped.values())

    @property
    def rows_total(self) -> int:
        """Rows considered: those read, or more where one row gives several samples (a pair
        split into two KTO examples)."""
        return max(self.rows_read, self.rows_kept + self.rows_skipped)

    def _length_skips(self) -> int:
        return sum(n for r, n in self.skipped.items() if r in LENGTH_REASONS)

    def warning(self, max_length: int | None, truncation: str | None) -> str | None:
        """The console line when more than ``WARN_SHARE`` of the rows were cut or dropped."""
        total, cut, long = self.rows_total, self.truncated, self._length_skips()
        bad = self.rows_skipped - long
        if not total or (cut + long + bad) / total <= WARN_SHARE:
            return None
        parts = []
        if cut:
            parts.append(f"{cut} truncated to data.max_length {max_length}")
        for n, for_length in ((long, True), (bad, False)):
            if n:
                why = ", ".join(
                    f"{r}: {k}"
                    for r, k in self.skipped.items()
                    if (r in LENGTH_REASONS) == for_length
                )
                parts.append(f"{n} {'dropped' if for_length else 'skipped as bad'} ({why})")
        fixes = []
        if long and truncation == "drop":
            fixes.append(
                "set data.truncation: truncate_right to keep them cut to fit, or raise "
                f"data.max_length (now {max_length})"
            )
        elif cut or long:
            fixes.append(f"raise data.max_length (now {max_length}) to keep them whole")
        if bad:
            fixes.append("fix those rows (data_report.md lists them by reason)")
        affected = cut + long + bad
        return (
            f"warning: {self.name}: {affected} of {total} rows ({_pct(affected, total)}) not "
            f"trained whole: {', '.join(parts)}; {'; '.join(fixes)}"
        )

    def refusal(self, index: int, max_length: int | None, truncation: str | None) -> str | None:
        """Why ``train`` will not start on this source (it loses most of its rows), or None."""
        total, lost = self.rows_total, self.rows_skipped
        if not total or lost / total <= REFUSE_SHARE:
            return None
        why = ", ".join(f"{r}: {n}" for r, n in self.skipped.items())
        if self._length_skips() * 2 < lost:
            fix = "fix the data"
        elif truncation == "drop":
            fix = f"set data.truncation: truncate_right or raise data.max_length (now {max_length})"
        else:
            fix = f"raise data.max_length (now {max_length})"
        return (
            f"data.datasets.{index} ({self.name}): {lost} of {total} rows ({_pct(lost, total)}) "
            f"would not train ({why}); {fix}, or set data.allow_drop: true to train on the "
            f"{total - lost} left"
        )


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%"


@dataclass
class DataReport:
    """The whole mix: per source, and totals."""

    sources: list[SourceReport]
    seconds: float = 0.0
    packing_efficiency: float | None = None
    packed_rows: int | None = None
    max_length: int | None = None
    lengths: list[int] = field(default_factory=list, repr=False)
    truncation: str | None = None
    allow_drop: bool = False

    @property
    def samples(self) -> int:
        """Training samples in the final mix."""
        return sum(s.samples_in_mix for s in self.sources)

    @property
    def trained_tokens(self) -> int:
        """Trained (labelled) tokens in the final mix."""
        return sum(s.trained_tokens for s in self.sources)

    @property
    def time_saved(self) -> float:
        """Preprocessing seconds the cache saved in this run."""
        return sum(s.time_saved for s in self.sources)

    def warnings(self) -> list[str]:
        """One console line per source with more than ``WARN_SHARE`` of its rows cut or dropped."""
        lines = [s.warning(self.max_length, self.truncation) for s in self.sources]
        return [line for line in lines if line]

    def refusal(self) -> str | None:
        """Why ``train`` refuses to start (a source loses most of its rows), or None; always None
        with ``data.allow_drop``."""
        if self.allow_drop:
            return None
        why = (s.refusal(i, self.max_length, self.truncation) for i, s in enumerate(self.sources))
        return next((w for w in why if w), None)

    def set_lengths(self, lengths: list[int]) -> None:
        """Record the token lengths of the training samples (for stats and the histogram)."""
        self.lengths = list(lengths)

    def length_stats(self) -> dict[str, float]:
        """Min / mean / median / p95 / max sample length in tokens (empty without samples)."""
        if not self.lengths:
            return {}
        xs = sorted(self.lengths)

        def pct(q: float) -> int:
            return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))]

        return {
            "min": xs[0],
            "mean": round(sum(xs) / len(xs), 1),
            "p50": pct(0.5),
            "p95": pct(0.95),
            "max": xs[-1],
        }

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
                    "cache": s.cache,
                    "seconds": round(s.seconds, 3),
                    "time_saved": round(s.time_saved, 3),
                }
                for s in self.sources
            ],
            "samples": self.samples,
            "trained_tokens": self.trained_tokens,
            "packing_efficiency": self.packing_efficiency,
            "packed_rows": self.packed_rows,
            "length": self.length_stats(),
            "seconds": round(self.seconds, 3),
            "time_saved": round(self.time_saved, 3),
            "warnings": self.warnings(),
            "refusal": self.refusal(),
        }

    def summary_lines(self) -> list[str]:
        """Totals, lengths and packing, one sentence each."""
        out = [f"Samples: {self.samples}; trained tokens: {self.trained_tokens:,}."]
        stats = self.length_stats()
        if stats:
            out.append(
                f"Sample length (tokens): min {stats['min']}, mean {stats['mean']}, "
                f"median {stats['p50']}, p95 {stats['p95']}, max {stats['max']}"
                + (f" (max_length {self.max_length})." if self.max_length else ".")
            )
        if self.packing_efficiency is not None:
            out.append(
                f"Packing: {self.packed_rows} rows, efficiency "
                f"{100 * self.packing_efficiency:.1f}%."
            )
        return out

    def markdown(self) -> str:
        """The report as Markdown (``data_report.md`` in the run directory)."""
        total_s = max(self.samples, 1)
        total_t = max(self.trained_tokens, 1)
        lines = [
            "# Data report",
            "",
            "| source | rows read | kept | skipped | truncated | in mix | resampled | val "
            "| share (samples) | share (trained tokens) | cache |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for s in self.sources:
            lines.append(
                f"| {s.name} | {s.rows_read} | {s.rows_kept} | {s.rows_skipped} | {s.truncated} "
                f"| {s.samples_in_mix} | {s.resampled} | {s.val_samples} "
                f"| {100 * s.samples_in_mix / total_s:.1f}% "
                f"| {100 * s.trained_tokens / total_t:.1f}% | {s.cache} |"
            )
        lines += ["", *[f"- {line}" for line in self.summary_lines()]]
        skipped = [(s.name, r, n) for s in self.sources for r, n in s.skipped.items()]
        if skipped:
            lines += ["", "Skipped rows by reason:", ""]
            lines += [f"- {name}: {reason} — {n}" for name, reason, n in skipped]
        notes = self.warnings()
        refusal = self.refusal()
        if refusal:
            notes.append(f"`tunesmith train` refuses to start: {refusal}")
        if notes:
            lines += ["", "Warnings:", "", *[f"- {line}" for line in notes]]
        hits = [s for s in self.sources if s.cache == "hit"]
        done = f"\nPrepared in {self.seconds:.1f} s."
        if hits:
            done += (
                f" {len(hits)} of {len(self.sources)} source(s) from the cache, "
                f"saving {self.time_saved:.1f} s of preprocessing."
            )
        lines.append(done)
        return "\n".join(lines) + "\n"
