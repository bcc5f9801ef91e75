"""The Python API: the objects the CLI uses, for notebooks and scripts.

::

    import tunesmith

    cfg = tunesmith.load_config("identity", "train.max_steps=50", output={"dir": "runs/nb"})
    result = tunesmith.train(cfg)                      # the stage picks the recipe, as the CLI does
    print(tunesmith.chat(result.run_dir, "Who are you?"))
    tunesmith.export(result.run_dir, "exports/nb")     # merged Hugging Face folder + Modelfile

``tunesmith train`` runs :func:`train` too (one stage -> recipe dispatch, :func:`recipe_for`).
Every user mistake raises :class:`tunesmith.errors.ConfigError` (or another
``TunesmithError``) with a one-line message. Heavy libraries load on first use, not on import.
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.recipes import resolve_config_arg

if TYPE_CHECKING:
    from tunesmith.config.schema import RunConfig
    from tunesmith.export.merge import ExportResult
    from tunesmith.infer.engine import Engine
    from tunesmith.train.recipes.sft import TrainResult

#: ``method.stage`` -> the recipe module under ``tunesmith.train.recipes`` that trains it.
RECIPES: dict[str, str] = {
    "sft": "sft",
    "pt": "sft",
    "dpo": "preference",
    "orpo": "preference",
    "simpo": "preference",
    "kto": "preference",
    "vlm_pretrain": "vlm",
    "vlm_sft": "vlm",
    "rm": "rm",
    "grpo": "grpo",
    "distill": "distill",
}


def recipe_for(stage: str) -> types.ModuleType:
    """The recipe module (with its ``run(cfg, console=, show_progress=)``) for a stage.

    Args:
        stage: a ``method.stage`` value (``sft``, ``pt``, ``dpo``, ``orpo``, ``simpo``, ``kto``,
            ``vlm_pretrain``, ``vlm_sft``).

    Raises:
        ConfigError: an unknown stage.
    """
    if stage not in RECIPES:
        raise ConfigError(f"method.stage {stage!r}: unknown; choose one of {', '.join(RECIPES)}")
    return importlib.import_module(f"tunesmith.train.recipes.{RECIPES[stage]}")


def load_config(
    path_or_recipe: str | Path | dict[str, Any],
    *overrides: str | Iterable[str],
    **sections: Any,
) -> RunConfig:
    """A validated run config from a YAML file, a shipped recipe name or a dict, plus overrides.

    Args:
        path_or_recipe: a config file, the name of a shipped recipe (``identity``, ``sft-lora``;
            see ``tunesmith recipes``) or the config as a dict.
        *overrides: dotted ``key=value`` strings as on the command line (``"train.lr=2e-4"``),
            or lists of them.
        **sections: Python values by key: a section's dict is merged key by key
            (``train={"lr": 2e-4}``), and ``__`` stands for a dot (``train__lr=2e-4``).

    Returns:
        The ``RunConfig`` the CLI would train with.

    Raises:
        ConfigError: one line per problem, each naming its dotted key.
    """
    from tunesmith.config.load import load_config as load

    texts: list[str] = []
    for item in overrides:
        texts.extend([item] if isinstance(item, str) else list(item))
    for key, value in sections.items():
        texts.extend(_as_overrides(key.replace("__", "."), value))
    if isinstance(path_or_recipe, dict):
        return load(None, texts, tree=path_or_recipe)
    return load(resolve_config_arg(str(path_or_recipe)), texts)


def _as_overrides(key: str, value: Any) -> list[str]:
    """``key=value`` strings for a Python value (dicts merge key by key; JSON is valid YAML)."""
    if isinstance(value, dict) and value:
        return [text for k, v in value.items() for text in _as_overrides(f"{key}.{k}", v)]
    return [f"{key}={json.dumps(value, default=str, ensure_ascii=False)}"]


def check_model_names(cfg: RunConfig) -> None:
    """Fail at once, naming the key, when ``model.name`` or ``model.tokenizer`` is not there.

    Runs before a run directory or any data is touched. (Vision-language stages name run
    directories in ``model.name``; their own loader checks those.)
    """
    from tunesmith.model.loader import damaged_file, resolve_model_path

    model = cfg.model
    if model.tokenizer:
        path = Path(resolve_model_path(model.tokenizer, what="model.tokenizer", tokenizer=True))
        problem = damaged_file(path) if path.is_dir() else None
        if problem:
            raise ConfigError(f"model.tokenizer {model.tokenizer!r}: {problem}")
    if not cfg.method.stage.startswith("vlm_"):
        resolve_model_path(model.name, what="model.name", revision=model.revision)


def train(
    cfg: RunConfig | str | Path | dict[str, Any],
    *overrides: str | Iterable[str],
    progress: bool = True,
    console: Any = None,
    **sections: Any,
) -> TrainResult:
    """Train one run in this process, with the recipe its ``method.stage`` calls for.

    Args:
        cfg: a ``RunConfig`` (from :func:`load_config`), or what :func:`load_config` takes.
        *overrides: ``key=value`` strings, when ``cfg`` is not a ``RunConfig`` yet.
        progress: show a progress bar.
        console: a ``rich`` console for the run's messages (default: ``print``).
        **sections: Python-valued overrides, when ``cfg`` is not a ``RunConfig`` yet.

    Returns:
        A ``TrainResult``: ``run_dir`` (what :func:`chat` and :func:`export` take), the trained
        ``model`` and ``tokenizer`` (in memory), ``first_loss``, ``last_loss`` and ``steps``.

    Raises:
        ConfigError: a bad config, a missing model or tokenizer, unusable data.
    """
    from tunesmith.config.schema import RunConfig

    if not isinstance(cfg, RunConfig):
        cfg = load_config(cfg, *overrides, **sections)
    elif overrides or sections:
        raise ConfigError("train: overrides go to load_config, not with a loaded RunConfig")
    from tunesmith.quiet import quiet_third_party

    quiet_third_party()  # as the CLI: deprecations inside libraries are not the user's to fix
    recipe = recipe_for(cfg.method.stage)
    check_model_names(cfg)
    check_eval_files(cfg.eval.tasks)  # before training, not after it
    result = recipe.run(cfg, console=console, show_progress=progress)
    if cfg.eval.tasks and _is_main_process():
        say = console.print if console is not None else print
        evaluate_after_training(result.run_dir, cfg.eval.tasks, step=result.steps, say=say)
    return result


def check_eval_files(tasks: list[Any]) -> None:
    """Raise ``ConfigError`` for an ``eval.tasks`` data file that is not there."""
    from tunesmith.evaluate.datafile import resolve

    for i, task in enumerate(tasks):
        for key in ("data", "dev"):
            path = getattr(task, key, None)
            if isinstance(path, str) and not resolve(path).is_file():
                raise ConfigError(f"eval.tasks.{i}.{key}: {path} not found; give a local file")


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def run_eval(
    target: str | Path,
    tasks: list[Any] | None = None,
    *,
    out_dir: str | Path | None = None,
    batch_size: int = 16,
    seed: int = 0,
    say: Any = None,
    engine: Engine | None = None,
) -> list[Any]:
    """Run evaluation tasks on a run directory or a model; results land in ``<run>/eval/``.

    Args:
        target: a run directory, a model folder or ``builtin:tiny-qwen2``-style name.
        tasks: task specs (``config.schema`` ``*Spec`` objects or dicts with ``type``);
            default: the run's ``eval.tasks``.
        out_dir: where ``<name>.json`` and ``<name>.predictions.jsonl`` go (default:
            ``<run>/eval`` for a run directory, nowhere for a bare model).
        batch_size: prompts (or sequences) per forward pass.
        seed: seed of sampled generations.
        say: progress messages (default: none).
        engine: an already loaded engine for ``target``.

    Returns:
        The ``TaskResult`` of each task, in order.

    Raises:
        ConfigError: no tasks, a bad task spec, unreadable data.
    """
    from pydantic import ValidationError

    from tunesmith.config.schema import EvalConfig
    from tunesmith.evaluate.base import EvalContext
    from tunesmith.evaluate.registry import run_tasks
    from tunesmith.infer.engine import Engine
    from tunesmith.runs import is_run_dir, load_run

    run = load_run(target) if is_run_dir(target) else None
    engine = engine or Engine.load(str(target))
    if tasks is None:
        tasks = list(run.config.eval.tasks) if run is not None else []
        if not tasks:
            raise ConfigError(
                f"{target}: no eval.tasks in the run's config; give a CONFIG with eval.tasks "
                "or --task NAME (with --data FILE)"
            )
    try:
        given = [t if isinstance(t, dict) else t.model_dump() for t in tasks]
        specs = EvalConfig.model_validate({"tasks": given}).tasks
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in ("eval", *err["loc"]))
        raise ConfigError(f"{where}: {err['msg']}") from None
    if out_dir is None and run is not None:
        out_dir = run.dir / "eval"
    ctx = EvalContext(
        engine,
        run=run,
        seed=seed,
        batch_size=batch_size,
        say=say or (lambda _: None),
        model=str(target),
    )
    return run_tasks(specs, ctx, out_dir)


def evaluate_after_training(
    run_dir: str | Path, tasks: list[Any], *, step: int, say: Any = print
) -> list[Any]:
    """Run ``eval.tasks`` on a finished run and append their metrics to ``metrics.jsonl``.

    Each task adds one record ``{"step": step, "eval/<name>/<metric>": value, ...}``.
    """
    try:
        results = run_eval(run_dir, tasks, say=say)
    except TunesmithError as exc:
        raise type(exc)(f"training finished ({run_dir}), but eval.tasks failed: {exc}") from exc
    with (Path(run_dir) / "metrics.jsonl").open("a", encoding="utf-8") as f:
        for r in results:
            record = {"step": step, **{f"eval/{r.name}/{k}": v for k, v in r.metrics.items()}}
            f.write(json.dumps(record) + "\n")
            shown = ", ".join(f"{k} {v:.4g}" for k, v in r.metrics.items())
            say(f"eval {r.name}: {shown} ({run_dir}/eval/{r.name}.json)")
    return results


def chat(
    run: str | Path | Engine,
    prompt: str,
    *,
    system: str | None = None,
    images: list[Any] | None = None,
    **gen: Any,
) -> str:
    """One answer from a run directory, a model folder, a hub id or a loaded ``Engine``.

    As ``tunesmith chat RUN --prompt PROMPT``: the run's chat template and its ``data.system``
    prompt (unless ``system`` is given). Load an :class:`~tunesmith.infer.engine.Engine` once
    (``tunesmith.Engine.load(run)``) and pass it to ask many questions without reloading.

    Args:
        run: what to answer with (``builtin:tiny-qwen2`` works too).
        prompt: the user message.
        system: system prompt (default: the run's ``data.system``).
        images: image paths or PIL images, for a vision-language run.
        **gen: generation settings (``GenParams`` fields): ``max_new_tokens`` (default 256),
            ``temperature`` (0 = greedy), ``top_p``, ``top_k``, ``repetition_penalty``, ``stop``,
            ``seed``.

    Returns:
        The answer text.
    """
    from tunesmith.infer.chat import answer_once
    from tunesmith.infer.engine import Engine, GenParams

    try:
        params = GenParams(**gen).check()
    except TypeError as exc:
        raise ConfigError(f"chat: {exc}") from None
    engine = run if isinstance(run, Engine) else Engine.load(str(run))
    if system is None:
        system = engine.system_prompt
    if images:
        from tunesmith.data.images import load_image

        images = [
            load_image(p, where=f"image {p}") if isinstance(p, str | Path) else p for p in images
        ]
    return answer_once(engine, prompt, params, system, images=images)


def export(
    run: str | Path,
    out: str | Path | None = None,
    *,
    adapter: str | None = None,
    dtype: str | None = None,
    max_shard_size: str | None = None,
    adapter_only: bool | None = None,
    force: bool = False,
) -> ExportResult:
    """Write a run as a standard Hugging Face folder (LoRA merged), as ``tunesmith export``.

    Unset arguments come from the run's ``export`` section, then the defaults.

    Args:
        run: run directory (or a base model with ``adapter``).
        out: destination folder (default: the run's ``export.dir``).
        adapter: LoRA adapter folder when ``run`` is a base model.
        dtype: ``float32``, ``bfloat16`` or ``float16`` (default: as trained).
        max_shard_size: largest safetensors shard, e.g. ``"500MB"``.
        adapter_only: copy the adapter instead of merging it.
        force: replace a non-empty ``out``.

    Returns:
        An ``ExportResult``: ``out``, ``merged`` and the ``files`` written.
    """
    from tunesmith.config.load import run_section
    from tunesmith.export.merge import export as write

    given = {
        "dir": None if out is None else str(out),
        "dtype": dtype,
        "max_shard_size": max_shard_size,
        "adapter_only": adapter_only,
    }
    opts: Any = run_section(str(run), "export", given)
    if opts.dir is None:
        raise ConfigError("export: give out (or set export.dir in the run's config)")
    return write(
        str(run),
        opts.dir,
        adapter=adapter,
        dtype=opts.dtype,
        max_shard_size=opts.max_shard_size,
        adapter_only=opts.adapter_only,
        force=force,
    )


class _CallablePackage(types.ModuleType):
    """A package that is also a function: ``tunesmith.train(cfg)`` beside ``tunesmith.train.loop``.

    Importing a submodule sets ``tunesmith.train`` to the package, so the package itself calls
    the API function of its name.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return globals()[self.__name__.rsplit(".", 1)[1]](*args, **kwargs)


def callable_package(name: str) -> None:
    """Make package ``name`` (``tunesmith.train``, ``tunesmith.export``) call the API function."""
    sys.modules[name].__class__ = _CallablePackage
