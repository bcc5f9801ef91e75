"""``tunesmith compare``: several runs side by side, as one HTML page and a Markdown summary.

:func:`collect` reads every run once (:func:`tunesmith.runs.load_run`) into a
:class:`Comparison`: the config keys that differ, the data mixes, the logged curves, a metrics
table with the best value of each row marked, and answers side by side (the same prompts
answered greedily by every run through the inference engine, plus the predictions of every
evaluation task that generated text, matched by example id: ``compare_answers.py``).
``compare_md.render_markdown`` writes it as Markdown, ``compare_html.render_html`` as a
self-contained page (``compare_html.write_report`` writes the files). Nothing but the one
"generated" line depends on the time, so the same runs give the same report.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.evaluate.compare_answers import (
    Answerer,
    AnswerTable,
    engine_answer,
    prediction_tables,
    prompt_answers,
    read_prompt_file,
)
from tunesmith.runs import RunRecord, load_run

#: ``metrics.jsonl`` keys that are bookkeeping, not curves worth comparing.
NOT_CURVES = frozenset(
    {"step", "epoch", "lr", "grad_norm", "trained_tokens", "tokens_per_s", "elapsed_s"}
    | {"rss_peak_mib", "val_ppl", "steps_in_epoch"}
)


#: Metrics where lower is better (matched on the metric's first name segment); higher otherwise.
LOWER_IS_BETTER = frozenset({"loss", "perplexity", "contradiction_rate", "false_claim_rate"})


#: Config paths that always differ between runs and say nothing about them.
CONFIG_NOISE = frozenset({"output.dir"})


ABSENT = "—"


@dataclass(frozen=True)
class Curve:
    """One run's logged values of one metric."""

    steps: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class MetricRow:
    """One row of the metrics table: a value per run and which runs are best.

    Attributes:
        name: What is measured (``train loss (final)``, ``<eval name>/<metric>``).
        values: One value per run (``None``: that run has none).
        lower_is_better: Direction of "best"; ``None`` for rows that are no score (steps).
        best: Indices of the runs with the best value (empty when fewer than two runs have a
            value or all are equal).
    """

    name: str
    values: tuple[float | None, ...]
    lower_is_better: bool | None
    best: frozenset[int]


@dataclass(frozen=True)
class DataMix:
    """The runs' data sources side by side: ``cells[source][run]``."""

    sources: tuple[str, ...]
    cells: tuple[tuple[str, ...], ...]
    totals: tuple[str, ...]  # per run: "32 samples, 591 trained tokens" (from data_report.md)


@dataclass(frozen=True)
class Comparison:
    """Everything the report shows, in display order."""

    labels: tuple[str, ...]
    runs: tuple[RunRecord, ...]
    config_diff: tuple[tuple[str, tuple[str, ...]], ...]
    data_mix: DataMix
    curves: dict[str, tuple[Curve | None, ...]]
    metrics: tuple[MetricRow, ...]
    answers: tuple[AnswerTable, ...]
    notes: tuple[str, ...] = field(default=())


def collect(
    paths: Sequence[str | Path],
    *,
    prompts: Sequence[str] = (),
    prompts_file: str | None = None,
    max_new_tokens: int | None = None,
    answer: Answerer | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Comparison:
    """Read the runs at ``paths`` and answer the prompts with each.

    Args:
        paths: Two or more run directories.
        prompts: Prompts to answer (with ``prompts_file``'s); none given: the runs' own
            ``eval.prompts`` (their union, in order).
        prompts_file: A ``.txt`` file (one prompt a line) or a JSONL/JSON/CSV/Parquet file
            with a prompt column and optionally a reference column.
        max_new_tokens: Answer length; default the largest ``eval.max_new_tokens`` of the runs.
        answer: How a run answers (default: greedy through the inference engine).
        say: Progress lines.

    Raises:
        ConfigError: fewer than two runs, a path that is not a run directory, a bad prompts
            file.
    """
    if len(paths) < 2:
        raise ConfigError("compare: give at least two run directories (RUN_A RUN_B ...)")
    runs = tuple(load_run(p) for p in paths)
    labels = run_labels([r.dir for r in runs])
    items = [{"prompt": p, "reference": None} for p in prompts]
    if prompts_file:
        items += read_prompt_file(prompts_file)
    if not items:
        own = dict.fromkeys(p for r in runs for p in r.config.eval.prompts)
        items = [{"prompt": p, "reference": None} for p in own]
    tokens = max_new_tokens or max(r.config.eval.max_new_tokens for r in runs)
    tables = []
    notes = []
    if items:
        table, missing = prompt_answers(runs, labels, items, tokens, answer or engine_answer, say)
        tables.append(table)
        notes += missing
    tables += prediction_tables(runs)
    return Comparison(
        labels=labels,
        runs=runs,
        config_diff=config_diff(runs),
        data_mix=data_mix(runs),
        curves=curves(runs),
        metrics=metric_rows(runs),
        answers=tuple(tables),
        notes=tuple(notes),
    )


def run_labels(dirs: Sequence[Path]) -> tuple[str, ...]:
    """Short unique names: the folder name, with parent folders added while two clash."""
    parts = [d.resolve().parts for d in dirs]
    depth = 1
    while True:
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels) or depth >= max(len(p) for p in parts):
            break
        depth += 1
    if len(set(labels)) < len(labels):  # the same directory twice: number the folder names
        labels = [f"{p[-1]} ({i + 1})" for i, p in enumerate(parts)]
    return tuple(labels)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths of a config dict; lists of dicts are indexed (``data.datasets.0.path``)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, list) and tree and all(isinstance(v, dict) for v in tree):
        out = {}
        for i, value in enumerate(tree):
            out.update(flatten(value, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): tree}


def show_value(value: Any) -> str:
    """A config value as text: strings as they are, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def config_diff(runs: Sequence[RunRecord]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``(dotted path, value per run)`` for every config key whose value differs between runs.

    Keys set to null wherever present are left out when some runs lack them (the unset fields of
    a list entry only some runs have)."""
    flat = [flatten(r.config.model_dump(mode="json")) for r in runs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    missing = object()
    out = []
    for key in keys:
        if key in CONFIG_NOISE:
            continue
        values = [f.get(key, missing) for f in flat]
        if all(v == values[0] for v in values[1:]):
            continue
        # A list entry only some runs have (a second dataset, an extra eval task) shows the
        # fields it sets, not a row of nulls per unset field.
        if all(v is missing or v is None for v in values):
            continue
        out.append((key, tuple(ABSENT if v is missing else show_value(v) for v in values)))
    return tuple(out)


def _report_table(text: str) -> tuple[dict[str, dict[str, str]], str]:
    """The source table of a ``data_report.md`` (source -> column -> cell) and its totals."""
    rows: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    totals = ""
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not all(set(c) <= set("-:") for c in cells):  # not the |---| line
                rows[cells[0]] = dict(zip(header, cells))
        elif header is not None and rows and not totals:
            m = re.match(r"- Samples: ([\d,]+); trained tokens: ([\d,]+)", line)  # 12,345
            if m:
                totals = f"{m.group(1)} samples, {m.group(2)} trained tokens"
    return rows, totals


def _configured(ds: Any) -> str:
    """What the config asks of one source (the report's counts are better, when there)."""
    if ds.samples is not None:
        return f"{ds.samples} samples"
    if ds.weight is not None:
        return f"weight {ds.weight:g}"
    return f"first {ds.max_samples} rows" if ds.max_samples else "all rows"


def data_mix(runs: Sequence[RunRecord]) -> DataMix:
    """Each run's sources: the counts and shares of its ``data_report.md`` (else its config)."""
    per_run: list[dict[str, str]] = []
    totals = []
    for r in runs:
        text = r.data_report_text()
        table, total = _report_table(text) if text else ({}, "")
        cells = {}
        for ds in r.config.data.datasets:
            name = ds.display_name
            row = table.get(name)
            if row and "in mix" in row:
                shares = [
                    f"{row[col]} of {what}"
                    for col, what in (
                        ("share (samples)", "samples"),
                        ("share (trained tokens)", "tokens"),
                    )
                    if row.get(col)
                ]
                cells[name] = f"{row['in mix']} ({', '.join(shares)})" if shares else row["in mix"]
            else:
                cells[name] = _configured(ds)
        per_run.append(cells)
        totals.append(total or ABSENT)
    sources = tuple(dict.fromkeys(s for cells in per_run for s in cells))
    grid = tuple(tuple(cells.get(s, ABSENT) for cells in per_run) for s in sources)
    return DataMix(sources=sources, cells=grid, totals=tuple(totals))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def curves(runs: Sequence[RunRecord]) -> dict[str, tuple[Curve | None, ...]]:
    """Metric -> one curve per run (``None``: not logged by that run); ``loss``, ``val_loss`` first.

    Evaluation results appended once at the end of training (``eval/<name>/<metric>``) are left
    to the metrics table; logged at several steps, they are curves too.
    """
    points: list[dict[str, tuple[list[int], list[float]]]] = []
    for r in runs:
        got: dict[str, tuple[list[int], list[float]]] = {}
        for record in r.metrics():
            step = record.get("step")
            if not _number(step):
                continue
            for key, value in record.items():
                if key in NOT_CURVES or not _number(value):
                    continue
                steps, values = got.setdefault(key, ([], []))
                steps.append(int(step))
                values.append(float(value))
        points.append(got)
    # An evaluation logged once per run is a row of the metrics table, not a curve.
    names = sorted(
        (
            k
            for k in {k for got in points for k in got}
            if not k.startswith("eval/") or any(len(got.get(k, ((), ()))[0]) > 1 for got in points)
        ),
        key=_curve_order,
    )
    return {
        name: tuple(
            Curve(tuple(got[name][0]), tuple(got[name][1])) if name in got else None
            for got in points
        )
        for name in names
    }


def _curve_order(name: str) -> tuple[int, str]:
    first = {"loss": 0, "val_loss": 1}
    return (first.get(name, 3 if name.startswith("eval/") else 2), name)


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better (losses, perplexity, error rates)."""
    return metric.split("/")[0] in LOWER_IS_BETTER or "loss" in metric


def best_of(values: Sequence[float | None], lower: bool) -> frozenset[int]:
    """Indices of the best values (ties all count); none when fewer than two differ."""
    known = {i: round(v, 9) for i, v in enumerate(values) if v is not None}
    if len(known) < 2 or len(set(known.values())) < 2:
        return frozenset()
    best = min(known.values()) if lower else max(known.values())
    return frozenset(i for i, v in known.items() if v == best)


def _row(name: str, values: Sequence[float | None], lower: bool | None) -> MetricRow:
    best = best_of(values, lower) if lower is not None else frozenset()
    return MetricRow(name, tuple(values), lower, best)


def metric_rows(runs: Sequence[RunRecord]) -> tuple[MetricRow, ...]:
    """Final train and val loss, steps, then every ``eval/*.json`` metric, one row each."""
    train, val, steps = [], [], []
    for r in runs:
        logged = r.metrics()
        summary = r.summary() or {}
        losses = [m["loss"] for m in logged if _number(m.get("loss"))]
        vals = [m["val_loss"] for m in logged if _number(m.get("val_loss"))]
        last = summary.get("last_loss")
        train.append(float(last) if _number(last) else (losses[-1] if losses else None))
        val.append(vals[-1] if vals else None)
        n = summary.get("steps")
        logged_steps = [m["step"] for m in logged if _number(m.get("step"))]
        steps.append(float(n) if _number(n) else (max(logged_steps) if logged_steps else None))
    rows = [
        _row("train loss (final)", train, True),
        _row("val loss (final)", val, True),
        _row("steps", steps, None),
    ]
    evals = [r.evals() for r in runs]
    for name in sorted({n for e in evals for n in e}):
        metrics = [e.get(name, {}).get("metrics") or {} for e in evals]
        for metric in dict.fromkeys(k for m in metrics for k in m):
            values = [float(m[metric]) if _number(m.get(metric)) else None for m in metrics]
            rows.append(_row(f"{name}/{metric}", values, lower_is_better(metric)))
    return tuple(rows)
