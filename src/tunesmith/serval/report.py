"""The per-iteration report: ``serval_report.json``, ``metrics.jsonl`` (one record per
iteration, read by ``tunesmith compare`` as curves), ``eval/serval.json`` (the last iteration,
a row of compare's metrics table), a Markdown table and a plot."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS: tuple[tuple[str, str], ...] = (
    ("iteration", "iter"),
    ("llm_acc", "LLM acc"),
    ("llm_acc_cal", "LLM acc (centred)"),
    ("llm_auc", "LLM AUC"),
    ("vertical_acc", "vertical acc"),
    ("vertical_auc", "vertical AUC"),
    ("agreement", "agreement"),
    ("kept", "kept"),
    ("clean", "clean"),
    ("backtune_rows", "back-tune rows"),
)


#: What ``eval/serval.json`` holds of the last iteration (compare's metrics table).
SCORES: tuple[str, ...] = (
    "llm_acc",
    "llm_acc_cal",
    "llm_auc",
    "vertical_acc",
    "vertical_auc",
    "agreement",
    "kept",
    "kept_acc",
    "final_llm_acc",
    "final_llm_acc_cal",
    "final_llm_auc",
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.3f}"
    return "—" if value is None else str(value)


def markdown(rows: Sequence[dict[str, Any]], upper: dict[str, float] | None) -> str:
    """The iterations as a Markdown table, the supervised upper bound below it."""
    lines = [
        "| " + " | ".join(h for _, h in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(_cell(r.get(k)) for k, _ in COLUMNS) + " |" for r in rows]
    last = rows[-1] if rows else {}
    if "final_llm_acc" in last:
        lines.append(
            f"\nLLM after the last back-tuning: acc {_cell(last['final_llm_acc'])}, "
            f"acc (centred) {_cell(last.get('final_llm_acc_cal'))}, "
            f"AUC {_cell(last.get('final_llm_auc'))}"
        )
    if upper:
        lines.append(
            f"\nfully supervised vertical model (upper bound): acc {upper['acc']:.3f}, "
            f"AUC {upper['auc']:.3f}"
        )
    return "\n".join(lines) + "\n"


def write(run_dir: Path, rows: Sequence[dict[str, Any]], upper: dict[str, float] | None) -> None:
    """Write every report file of ``run_dir`` from the finished iterations ``rows``."""
    clean = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in rows
    ]
    report = {"iterations": clean, "upper_bound": upper}
    (run_dir / "serval_report.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    (run_dir / "serval_report.md").write_text(markdown(rows, upper), "utf-8")
    with (run_dir / "metrics.jsonl").open("w", encoding="utf-8") as f:
        for r in clean:
            record = {"step": r["iteration"]}
            record.update({f"serval/{k}": v for k, v in r.items() if k != "iteration"})
            f.write(json.dumps(record) + "\n")
    if clean:
        last = clean[-1]
        # Scores only (higher is better for each): compare marks the best run per row.
        metrics = {k: last[k] for k in SCORES if isinstance(last.get(k), int | float)}
        if upper:
            metrics.update({f"upper_{k}": v for k, v in upper.items()})
        (run_dir / "eval").mkdir(exist_ok=True)
        result = {"task": "serval", "name": "serval", "metrics": metrics, "n": last.get("test")}
        (run_dir / "eval" / "serval.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(run_dir / "serval.png", rows, upper)


def plot(path: Path, rows: Sequence[dict[str, Any]], upper: dict[str, float] | None) -> None:
    """Test accuracy (and the LLM's AUC) of the LLM and of the vertical model per iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    its = [r["iteration"] for r in rows]
    lines = (
        ("llm_acc", "LLM zero-shot acc"),
        ("llm_acc_cal", "LLM acc (centred)"),
        ("llm_auc", "LLM AUC"),
        ("vertical_acc", "vertical acc"),
    )
    for key, label in lines:
        ys = [r.get(key) for r in rows]
        pts = [(i, y) for i, y in zip(its, ys) if y is not None and not math.isnan(y)]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
    if upper:
        ax.axhline(upper["acc"], linestyle="--", color="grey", label="supervised (upper bound)")
    ax.axhline(0.5, linestyle=":", color="lightgrey")
    ax.set_xticks(its)
    ax.set_xlabel("iteration")
    ax.set_ylabel("test accuracy / AUC")
    ax.set_ylim(0.3, 1.0)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
