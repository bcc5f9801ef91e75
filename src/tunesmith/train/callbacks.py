"""What a run shows and records: progress bar, ``metrics.jsonl``, ``loss.png``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any


class MetricsLog:
    """Appends one JSON object per logged step to ``metrics.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        """Append a record (flushed at once so a killed run keeps its history)."""
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """All records written so far; a torn last line (a kill while appending) is left out.

        Raises:
            ConfigError: a line before the last is not a JSON object (the file was edited).
        """
        from tunesmith.runs import read_jsonl

        return read_jsonl(self.path)

    def trim(self, step: int) -> None:
        """Keep the records up to ``step`` (a resumed run logs the later ones again).

        Rewritten whole and atomically: every kept record ends with a newline, so the next
        append starts a line of its own even after a torn one.
        """
        if not self.path.is_file():
            return
        keep = [r for r in self.read() if r.get("step", 0) <= step]
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)


def plot_loss(records: list[dict[str, Any]], out: Path) -> Path | None:
    """Draw training (and validation, when present) loss against the step."""
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(*zip(*train), label="train loss", linewidth=1.5)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss", linewidth=1.5)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss (per trained token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _clock(seconds: float) -> str:
    """``H:MM:SS``, as the progress bar shows times."""
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def format_stats(stats: dict[str, float]) -> str:
    """The latest numbers of a step, as the bar and the plain lines show them."""
    text = "loss {loss:.4f}  lr {lr:.2e}  {tokens_per_s:,.0f} tok/s".format(**stats)
    if "rewards/accuracies" in stats:
        text += "  acc {:.2f}".format(stats["rewards/accuracies"])
    if "rewards/margins" in stats:
        text += "  margin {:.3f}".format(stats["rewards/margins"])
    if "reward" in stats:  # GRPO: the step's mean combined reward and completion length
        text += "  reward {:.3f}".format(stats["reward"])
        text += "  len {:.1f}".format(stats.get("completion_length", 0.0))
    return text


class ProgressBar:
    """A rich progress bar showing loss, learning rate, tokens/s and ETA.

    ``plain``: instead of the bar (which a log file or CI shows as nothing or as escape codes),
    one line per update — the loop updates every ``train.log_every`` steps — with the same
    numbers, the time elapsed and an ETA from this session's pace. ``start``: the step the loop
    starts from (a resumed run), so the ETA counts only the steps timed here.
    """

    def __init__(
        self,
        total: int,
        *,
        enabled: bool = True,
        plain: bool = False,
        start: int = 0,
        stream: IO[str] | None = None,
    ) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.enabled, self.plain = enabled, plain
        self.total, self.start_step = total, start
        self.stream = stream
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            disable=not enabled or plain,
            transient=False,
        )
        self.task = self.progress.add_task("train", total=total, completed=start, stats="")
        self.start = time.perf_counter()

    def __enter__(self) -> ProgressBar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def update(self, step: int, stats: dict[str, float]) -> None:
        """Move to ``step`` and show the latest numbers."""
        text = format_stats(stats)
        if not self.plain:
            self.progress.update(self.task, completed=step, stats=text)
        elif self.enabled:
            elapsed = time.perf_counter() - self.start
            done = step - self.start_step
            eta = elapsed / done * (self.total - step) if done > 0 else 0.0
            line = f"step {step}/{self.total}  {text}  elapsed {_clock(elapsed)}  eta {_clock(eta)}"
            print(line, file=self.stream or sys.stderr, flush=True)


def memory_mib() -> dict[str, float]:
    """Peak resident memory of this process (and peak GPU memory when on CUDA), in MiB."""
    import resource

    import torch

    out = {"rss_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available():
        out["gpu_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


class SampleGenerations:
    """Answers fixed prompts with the model being trained (XTuner's EvaluateChatHook).

    Uses the same inference engine and chat template as ``tunesmith chat``; each round is shown
    and appended to ``samples.jsonl`` with its step.
    """

    def __init__(
        self,
        prompts: list[str],
        path: Path,
        *,
        max_new_tokens: int,
        system: str | None = None,
        show: Any = None,
    ) -> None:
        self.prompts, self.path = prompts, path
        self.max_new_tokens, self.system = max_new_tokens, system
        self.show = show

    def __call__(self, model: Any, tokenizer: Any, step: int) -> list[dict[str, Any]]:
        """Generate greedily for every prompt at ``step``; the model is left in train mode."""
        from tunesmith.infer.engine import Engine, GenParams

        if not self.prompts:
            return []
        was_training = model.training
        engine = Engine(model, tokenizer)
        convs = [
            ([{"role": "system", "content": self.system}] if self.system else [])
            + [{"role": "user", "content": p}]
            for p in self.prompts
        ]
        answers = engine.generate(convs, GenParams(max_new_tokens=self.max_new_tokens))
        if was_training:
            model.train()
        rows = [{"step": step, "prompt": p, "answer": a} for p, a in zip(self.prompts, answers)]
        with self.path.open("a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        if self.show is not None:
            for row in rows:
                self.show(f"[step {step}] {row['prompt']!r} -> {row['answer'][:120]!r}")
        return rows


class EarlyStopping:
    """Stops when validation loss has not improved for ``patience`` evaluations."""

    def __init__(self, patience: int | None, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best = float("inf")
        self.bad = 0

    def update(self, val_loss: float) -> bool:
        """Record a validation loss; True when training should stop."""
        if val_loss < self.best - self.min_delta:
            self.best, self.bad = val_loss, 0
            return False
        self.bad += 1
        return self.patience is not None and self.bad >= self.patience

    def state(self) -> dict[str, Any]:
        """For checkpoints (so a resumed run keeps counting)."""
        return {"best": self.best, "bad": self.bad}

    def load(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state`."""
        self.best, self.bad = state.get("best", float("inf")), state.get("bad", 0)
