"""The registry of evaluation tasks and the loop that runs configured ones."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tunesmith.errors import ConfigError
from tunesmith.evaluate.base import EvalContext, Task, TaskResult

T = TypeVar("T", bound=type[Task])

TASKS: dict[str, type[Task]] = {}
"""Registry name (a spec's ``type``) -> task class."""


def register(cls: T) -> T:
    """Class decorator: make ``cls`` runnable by its ``kind``."""
    if cls.kind in TASKS and TASKS[cls.kind] is not cls:
        raise ValueError(f"evaluation task {cls.kind!r} registered twice")
    TASKS[cls.kind] = cls
    return cls


def _load_builtin_tasks() -> None:
    # Importing the task modules registers them; missing optional ones are simply absent.
    import importlib

    for module in (
        "perplexity",
        "generation",
        "multiple_choice",
        "identity",
        "consistency",
        "judge",
    ):
        try:
            importlib.import_module(f"tunesmith.evaluate.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tunesmith.evaluate.{module}":
                raise


def make_task(spec: Any) -> Task:
    """The task for one spec (a pydantic class with ``type``)."""
    _load_builtin_tasks()
    kind = getattr(spec, "type", None)
    if kind not in TASKS:
        known = ", ".join(sorted(TASKS))
        raise ConfigError(f"eval.tasks: unknown task type {kind!r}; known: {known}")
    return TASKS[kind](spec)


def run_tasks(
    specs: Sequence[Any],
    ctx: EvalContext,
    out_dir: str | Path | None,
    *,
    on_result: Callable[[TaskResult], None] | None = None,
) -> list[TaskResult]:
    """Run every spec's task, save each result in ``out_dir`` (``None``: nowhere), in order.

    Raises:
        ConfigError: two tasks with the same name (their files would overwrite each other).
    """
    names = [getattr(s, "name", None) or s.type for s in specs]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ConfigError(f"eval.tasks: two tasks are named {dup!r}; give one a distinct name")
    results = []
    for spec in specs:
        task = make_task(spec)
        ctx.say(f"eval {task.name} ({task.kind}) ...")
        t0 = time.perf_counter()
        result = task.run(ctx)
        result.seconds = result.seconds or time.perf_counter() - t0
        result.model = result.model or ctx.model
        result.config = result.config or spec.model_dump(mode="json")
        if out_dir is not None:
            result.save(out_dir)
        if on_result:
            on_result(result)
        results.append(result)
    return results
