"""What ``tunesmith eval`` runs (from flags or a config) and how it prints the results."""

from __future__ import annotations

import json
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.evaluate.base import TaskResult

NEEDS_DATA = ("generation", "multiple_choice", "consistency")


def eval_specs(args: Any) -> list[dict[str, Any]] | None:
    """Task specs from ``--task``/``--data`` or CONFIG's ``eval.tasks`` (``None``: the run's).

    Raises:
        ConfigError: ``--task`` without the ``--data`` it needs, a CONFIG without ``eval.tasks``.
    """
    specs: list[dict[str, Any]] | None
    if args.task:
        specs = []
        for kind in args.task:
            spec: dict[str, Any] = {"type": kind}
            if kind in NEEDS_DATA:
                if not args.data:
                    raise ConfigError(
                        f"--task {kind} needs --data FILE (JSONL, JSON, CSV, Parquet)"
                    )
                spec["data"] = args.data
            elif kind == "perplexity" and args.data:
                spec["datasets"] = [{"path": args.data}]
            if kind == "identity":
                spec.update(identity_name=args.name, heldout=args.heldout, general=args.general)
            specs.append(spec)
    elif args.config:
        from tunesmith.config.load import load_config
        from tunesmith.recipes import resolve_config_arg

        cfg = load_config(resolve_config_arg(args.config), [])
        specs = [t.model_dump() for t in cfg.eval.tasks]
        if not specs:
            raise ConfigError(f"{args.config}: no eval.tasks; add an eval.tasks list")
    else:
        return None
    for spec in specs:
        if args.max_samples and spec["type"] != "identity":
            spec["max_samples"] = args.max_samples
        if args.max_new_tokens and spec["type"] in ("generation", "identity"):
            spec["max_new_tokens"] = args.max_new_tokens
    return specs


def print_results(results: list[TaskResult], *, as_json: bool) -> None:
    """A table of every task's metrics (rich), or one JSON list (``as_json``)."""
    if as_json:
        print(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="evaluation")
    for col, justify in (("task", "left"), ("metric", "left"), ("value", "right"), ("n", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in results:
        for i, (metric, value) in enumerate(r.metrics.items()):
            table.add_row(
                r.name if i == 0 else "", metric, f"{value:.4f}", str(r.n) if i == 0 else ""
            )
    Console().print(table)
