"""What the Run tab shows, read from a run directory alone (so a reloaded page loses nothing):
the job state (``board.json``), progress from the log's ``step N/M`` lines, the loss curves from
``metrics.jsonl`` (plotted by the same code as ``tunesmith compare``) and the log's tail."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.board.jobs import STATE_FILE, read_state
from tunesmith.runs import is_run_dir, read_jsonl

STEP_LINE = re.compile(r"^step (\d+)/(\d+)\b", re.MULTILINE)
"""The plain progress line of ``tunesmith train --no-progress`` (``step 3/6  loss 8.36 ...``)."""
LOG_NAMES = ("board.log", "board-eval.log", "board-export.log")
TAIL_BYTES = 16_000


def list_runs(root: Path, extra: Sequence[Path] = ()) -> list[Path]:
    """Run directories under ``root`` (and ``extra``, the board's own jobs), newest first."""
    found = set(extra)
    if root.is_dir():
        for child in root.iterdir():
            if child.is_dir() and (is_run_dir(child) or (child / STATE_FILE).is_file()):
                found.add(child.resolve())
    return sorted(found, key=lambda p: p.stat().st_mtime if p.exists() else 0, reverse=True)


def tail(path: Path, limit: int = TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a text file ('' when it does not exist)."""
    if not path.is_file():
        return ""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - limit))
        data = f.read()
    text = data.decode("utf-8", errors="replace")
    return text if size <= limit else text.split("\n", 1)[-1]


@dataclass(frozen=True)
class RunStatus:
    """One run directory as the Run tab shows it."""

    dir: Path
    state: str
    kind: str | None
    returncode: int | None
    step: int | None
    total: int | None
    last: dict[str, Any] | None
    log: str
    error: str | None = None
    evals: tuple[tuple[str, dict[str, float]], ...] = ()

    def headline(self) -> str:
        """``train running: step 3/6, loss 8.3608`` (Markdown)."""
        what = f"**{self.kind or 'run'} {self.state}**"
        if self.returncode not in (None, 0):
            what += f" (exit code {self.returncode})"
        parts = [what]
        if self.step is not None:
            parts.append(f"step {self.step}/{self.total}")
        if self.last and "loss" in self.last:
            parts.append(f"loss {self.last['loss']:.4f}")
        if self.last and "val_loss" in self.last:
            parts.append(f"val_loss {self.last['val_loss']:.4f}")
        lines = [", ".join(parts)]
        if self.error:
            lines.append(f"`{self.error}`")
        lines += [
            f"eval {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            for name, metrics in self.evals
        ]
        return "\n\n".join(lines)

    @property
    def fraction(self) -> float:
        """Training progress in [0, 1] (0 before the first logged step)."""
        if not self.step or not self.total:
            return 0.0
        return min(1.0, self.step / self.total)


def last_error(log: str) -> str | None:
    """The CLI's last one-line ``error: ...`` in a job's log, if any."""
    found = [line for line in log.splitlines() if line.startswith("error: ")]
    return found[-1] if found else None


def eval_results(run_dir: Path) -> tuple[tuple[str, dict[str, float]], ...]:
    """``(task name, metrics)`` of each ``eval/<name>.json`` that ``tunesmith eval`` wrote."""
    import json

    out = []
    for f in sorted((run_dir / "eval").glob("*.json")):
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
            out.append((str(data["name"]), {k: float(v) for k, v in data["metrics"].items()}))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # a file being written, or not an eval result: nothing to show yet
    return tuple(out)


def run_status(run_dir: Path) -> RunStatus:
    """Read a run directory's state, progress, last metrics and log tail."""
    state = read_state(run_dir) or {}
    kind = state.get("kind")
    log_name = state.get("log") or "board.log"
    log = tail(run_dir / log_name)
    train_log = log if log_name == "board.log" else tail(run_dir / "board.log")
    steps = STEP_LINE.findall(train_log)
    step, total = (int(steps[-1][0]), int(steps[-1][1])) if steps else (None, None)
    metrics = read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").is_file() else []
    if metrics and step is None:
        step = int(metrics[-1].get("step", 0)) or None
    shown = state.get("state")
    if shown is None:
        shown = "finished" if (run_dir / "train_summary.json").is_file() else "not started here"
    return RunStatus(
        dir=run_dir,
        state=shown,
        kind=kind,
        returncode=state.get("returncode"),
        step=step,
        total=total,
        last=metrics[-1] if metrics else None,
        log=log,
        error=last_error(log) if shown in ("failed", "lost") else None,
        evals=eval_results(run_dir),
    )


def progress_html(status: RunStatus) -> str:
    """A progress bar (plain HTML: the test reads ``data-step`` / ``data-total``)."""
    pct = 100 * status.fraction
    return (
        f'<div class="ts-progress" data-step="{status.step or 0}" data-total="{status.total or 0}">'
        f'<div class="ts-bar" style="width:{pct:.1f}%"></div></div>'
    )


def curve_html(run_dir: Path) -> str:
    """Every logged metric of the run as the ``tunesmith compare`` SVG plots (loss first).

    The wrapper's ``data-points`` is the number of loss points plotted (what the test watches
    grow while the run trains).
    """
    if not is_run_dir(run_dir):
        return '<div class="ts-curves" data-points="0"><p>No metrics yet.</p></div>'
    from tunesmith.evaluate.compare import curves
    from tunesmith.evaluate.compare_html import plot_svg
    from tunesmith.runs import load_run

    try:
        record = load_run(run_dir)
    except Exception as exc:  # a run whose config no longer validates: say why, plot nothing
        return f'<div class="ts-curves" data-points="0"><p>{html.escape(str(exc))}</p></div>'
    found = curves([record])
    if not found:
        return '<div class="ts-curves" data-points="0"><p>No metrics yet.</p></div>'
    label = [run_dir.name]
    loss = found.get("loss", (None,))[0]
    points = len(loss.steps) if loss is not None else 0
    xmax = max((max(c.steps) for (c,) in found.values() if c is not None and c.steps), default=1)
    plots = [
        f"<figure>{plot_svg(name, series, label, xmax)}</figure>"
        for name, series in list(found.items())[:4]
    ]
    return f'<div class="ts-curves" data-points="{points}">{"".join(plots)}</div>'
