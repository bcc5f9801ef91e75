"""Back-tuning: the vertical model's confident predictions as SFT conversations for the LLM.

The SFT recipe itself trains (``tunesmith.api.train`` with a config generated from the run's
own ``model``/``data``/``method``/``train`` sections); the result is exported as a merged model
folder, the next iteration's LLM.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunesmith.serval.noisy import confidence


def conversations(
    texts: Sequence[str],
    probs: Sequence[float],
    *,
    prompt: str,
    label_words: tuple[str, str],
    threshold: float,
    max_rows: int,
    seed: int,
) -> list[dict[str, Any]]:
    """One ``messages`` row per confident prediction (the most confident ``max_rows``), the
    answer being the predicted label's word; shuffled with ``seed``."""
    ranked = sorted(
        (i for i, p in enumerate(probs) if confidence(p) >= threshold),
        key=lambda i: (-confidence(probs[i]), i),
    )[:max_rows]
    rows = [
        {
            "messages": [
                {"role": "user", "content": prompt.replace("{text}", texts[i])},
                {"role": "assistant", "content": label_words[int(probs[i] >= 0.5)]},
            ]
        }
        for i in ranked
    ]
    random.Random(seed).shuffle(rows)
    return rows


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows as JSON lines (written whole, then renamed: a crash leaves no half file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    tmp.replace(path)


def sft_tree(
    base: dict[str, Any],
    *,
    model: str,
    task_file: Path | None,
    task_rows: int,
    general_share: float,
    out_dir: Path,
    max_steps: int | None,
    lr: float | None = None,
    method_type: str | None = None,
    extra_sources: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The SFT config (as a dict for ``load_config``) of one back-tuning or the warm-up.

    Args:
        base: the serval run's config as a dict (its ``serval`` section is dropped).
        model: the LLM to start from (a model folder or ``builtin:`` name).
        task_file: the conversations file (``None``: the warm-up, on ``data.datasets`` alone).
        task_rows: rows in ``task_file``.
        general_share: the share of the mix taken from ``data.datasets``.
        out_dir: the SFT run directory.
        max_steps: steps (``None``: the run's ``train`` section decides).
        lr: the learning rate (``None``: ``train.lr``).
        method_type: ``method.type`` instead of the run's (the warm-up's ``full``).
        extra_sources: ``data.datasets`` entries added to the mix (the warm-up's
            ``serval.warmup_data``).
    """
    tree = json.loads(json.dumps(base))  # a deep copy
    tree.pop("serval", None)
    tree["eval"] = {}  # serval measures the task itself; the run's eval.tasks are not repeated
    tree["model"]["name"] = model
    tree["output"] = {"dir": str(out_dir), "overwrite": True}
    if max_steps is not None:
        tree["train"]["max_steps"] = max_steps
    if lr is not None:
        tree["train"]["lr"] = lr
    if method_type is not None:
        tree["method"]["type"] = method_type
    tree["data"]["datasets"] = [*tree["data"]["datasets"], *(dict(d) for d in extra_sources)]
    if task_file is not None:
        general = [dict(d) for d in tree["data"]["datasets"]]
        n_general = round(task_rows * general_share / (1 - general_share))
        sources = [{"path": str(task_file), "format": "auto", "name": "serval-backtune"}]
        if n_general and general:
            for d in general:
                d.pop("weight", None)
                d["samples"] = max(n_general // len(general), 1)
            sources += general
        tree["data"]["datasets"] = sources
        tree["data"]["val_size"] = 0
    return tree


def train_and_export(tree: dict[str, Any], llm_dir: Path, say: Any) -> Path:
    """Train ``tree`` with the SFT recipe and export it merged into ``llm_dir``."""
    from tunesmith.api import export, load_config, train

    cfg = load_config(tree)
    result = train(cfg, progress=False)
    say(f"back-tune: {result.steps} steps, loss {result.first_loss:.3f} -> {result.last_loss:.3f}")
    export(result.run_dir, llm_dir, force=True)
    return llm_dir
