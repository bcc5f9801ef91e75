"""Whether a run may start in its directory, and what it replaces there.

A run directory that holds an earlier run is never replaced silently:

- with a checkpoint to resume from (``--resume`` / ``train.resume``), the run continues it;
- otherwise a *finished* run (its result or ``train_summary.json``) or a *started* one (metrics,
  samples or checkpoints) is replaced only with ``--overwrite`` (``output.overwrite: true``), and
  the error without it names both ways out;
- ``--resume`` in a directory whose run stopped before its first checkpoint starts it again,
  and says so (what a job that is always launched with ``--resume`` needs after an early kill).

A directory with only the files a run writes before training (``config.yaml``,
``data_report.md``: a setup that failed) holds nothing worth keeping. Files of the user's own in
the directory are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config.load import check_output_dir, dump_config
from tunesmith.errors import ConfigError

Say = Callable[[str], Any]

RUN_FILES = (
    "metrics.jsonl",
    "samples.jsonl",
    "loss.png",
    "rewards.png",
    "data_report.md",
    "model",
    "adapter",
    "train_summary.json",
    "template.json",
    "identity_eval.json",
    "trackers",
    "checkpoints",
)
"""Everything a run (and ``tunesmith eval``) writes into its directory besides ``config.yaml``."""

FINISHED = ("model", "adapter", "train_summary.json")
STARTED = ("metrics.jsonl", "samples.jsonl", "loss.png", "rewards.png")
FLAG = "--overwrite (output.overwrite=true)"


def prepare_run_dir(cfg: Any, *, resume_step: int | None = None, say: Any = None) -> Path:
    """Create the run directory and write the resolved config.

    When resuming, checkpoints are kept and ``metrics.jsonl`` is cut back to the resumed step;
    otherwise an earlier run there is replaced only when asked to (see ``start_fresh``).
    """
    from tunesmith.train.callbacks import MetricsLog

    run_dir = Path(cfg.output.run_dir)
    check_output_dir(run_dir)  # again: a file may have appeared there since validation
    if resume_step is not None:
        MetricsLog(run_dir / "metrics.jsonl").trim(resume_step)
    else:
        start_fresh(cfg, run_dir, say)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
    return run_dir


def checkpoint_step(path: Path) -> int:
    return int(json.loads((path / "state.json").read_text(encoding="utf-8"))["step"])


def open_run(cfg: Any, say: Say) -> tuple[Path | None, Path]:
    """Resolve the checkpoint to resume from and prepare the run directory, saying what happens.

    Returns ``(checkpoint or None, run directory)``. Notices go to the main process's ``say``
    only (every process of a multi-process run calls this before their group exists).
    """
    from tunesmith.train.checkpoint import resolve_resume

    say = main_only(say)
    ckpt = resolve_resume(Path(cfg.output.run_dir), cfg.train.resume, say=say)
    resume_step = checkpoint_step(ckpt) if ckpt is not None else None
    return ckpt, prepare_run_dir(cfg, resume_step=resume_step, say=say)


def main_only(say: Say) -> Say:
    """``say`` on the main process (by the launcher's ``RANK``); a no-op on the others."""
    return say if os.environ.get("RANK", "0") == "0" else (lambda *_: None)


def previous_run(run_dir: Path) -> tuple[str, list[str]] | None:
    """``("finished" | "unfinished", evidence)`` for a run in ``run_dir``, or None."""
    if not run_dir.is_dir():
        return None
    finished = [name for name in FINISHED if (run_dir / name).exists()]
    if finished:
        return "finished", finished
    started = [name for name in STARTED if (run_dir / name).exists()]
    steps = _checkpoint_names(run_dir)
    if steps:
        started.append(f"checkpoints up to {steps[-1]}")
    return ("unfinished", started) if started else None


def _checkpoint_names(run_dir: Path) -> list[str]:
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))


def start_fresh(cfg: Any, run_dir: Path, say: Say | None = None) -> None:
    """Make ``run_dir`` ready for a run from step 0: refuse, or replace an earlier run's files.

    Raises:
        ConfigError: the directory holds a run and neither overwrite nor a fitting resume was
            asked for; the message names the flags and keys that would proceed.
    """
    found = previous_run(run_dir)
    if found is not None:
        _allow_replacing(cfg, run_dir, *found, say or (lambda *_: None))
    for name in RUN_FILES:  # also what a failed setup left, and leftovers of a replaced run
        target = run_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)  # other processes may be clearing too
        elif target.exists() or target.is_symlink():
            target.unlink(missing_ok=True)


def _allow_replacing(cfg: Any, run_dir: Path, kind: str, evidence: list[str], say: Say) -> None:
    where = f"output.dir {run_dir}: holds a{'n' if kind == 'unfinished' else ''} {kind} run"
    if cfg.output.overwrite:
        say(f"output.overwrite: replacing the {kind} run in {run_dir}")
        return
    resuming = cfg.train.resume is True or cfg.train.resume == "auto"
    has_checkpoints = bool(_checkpoint_names(run_dir))
    if resuming and kind == "unfinished" and not has_checkpoints:
        return  # stopped before its first checkpoint: resolve_resume said it starts fresh
    other = "or choose another output.dir"
    if resuming and has_checkpoints:  # every checkpoint was damaged (each named above)
        raise ConfigError(
            f"{where} and none of its checkpoints is intact (see above); pass {FLAG} to start "
            f"it again, {other}"
        )
    if resuming:
        raise ConfigError(
            f"{where} without checkpoints, so --resume has nothing to continue; pass {FLAG} to "
            f"train it again, {other}"
        )
    detail = ", ".join(sorted(evidence))
    if kind == "finished":
        raise ConfigError(f"{where} ({detail}); pass {FLAG} to replace it, {other}")
    resume = "pass --resume to continue it, " if has_checkpoints else "pass "
    raise ConfigError(f"{where} ({detail}); {resume}{FLAG} to start it again, {other}")
