"""What a run directory is: its config, what training produced there, and its logs.

A run directory holds ``config.yaml`` (the resolved config; ``model.name`` is the base) and, once
training finished, either ``adapter/`` (a peft adapter saved with the training tokenizer) or
``model/`` (a full fine-tune with its tokenizer). Beside them: ``metrics.jsonl``,
``samples.jsonl``, ``train_summary.json``, ``data_report.md``, ``template.json`` (the chat
template's stop strings and system policy) and ``eval/<name>.json`` (evaluation results).

:func:`load_run` reads a directory once into a :class:`RunRecord` whose config is validated with
the schema, so every consumer (chat, serve, export, eval, the board) reads typed fields instead of
walking YAML. This module is a leaf: it imports only ``tunesmith.config`` and ``tunesmith.errors``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tunesmith.config.load import format_error, read_yaml
from tunesmith.config.schema import RunConfig
from tunesmith.errors import ConfigError

CONFIG = "config.yaml"
TEMPLATE = "template.json"
EVAL_DIR = "eval"


@dataclass(frozen=True)
class TemplateInfo:
    """A run's ``template.json``: how its chat template ends turns and what system it uses.

    Attributes:
        template: The run's ``model.template``, or ``"tokenizer"`` for the tokenizer's own.
        stops: The template's end-of-turn strings, in order.
        system: The run's ``data.system`` (``None``: none was set).
        default_system: The system prompt the template injects when none is given, if any.
    """

    template: str
    stops: tuple[str, ...]
    system: str | None
    default_system: str | None


@dataclass(frozen=True)
class RunRecord:
    """One run directory, read once (see :func:`load_run`).

    Attributes:
        dir: The run directory.
        config: The run's resolved config, validated with the schema.
        base: The base model it was trained from (``model.name``).
        weights: The ``model/`` folder of a full fine-tune, if present.
        adapter: The ``adapter/`` folder of an adapter run, if present.
        tokenizer_dir: The saved folder that holds the training tokenizer, if any.
        finished: Whether training saved its result (``model/`` or ``adapter/``).
        template: ``template.json``, if the run wrote one.
    """

    dir: Path
    config: RunConfig
    base: str
    weights: Path | None
    adapter: Path | None
    tokenizer_dir: Path | None
    finished: bool
    template: TemplateInfo | None

    @property
    def system(self) -> str | None:
        """The run's system prompt: ``template.json``'s, else ``data.system``."""
        if self.template is not None:
            return self.template.system or None
        return self.config.data.system or None

    def metrics(self) -> list[dict[str, Any]]:
        """``metrics.jsonl``, one dict per logged step; a torn last line (a kill) is left out."""
        return read_jsonl(self.dir / "metrics.jsonl")

    def samples(self) -> list[dict[str, Any]]:
        """``samples.jsonl``, the sample generations logged during training."""
        return read_jsonl(self.dir / "samples.jsonl")

    def summary(self) -> dict[str, Any] | None:
        """``train_summary.json`` (``None``: training has not finished)."""
        path = self.dir / "train_summary.json"
        return _read_json(path) if path.is_file() else None

    def evals(self) -> dict[str, dict[str, Any]]:
        """Every ``eval/<name>.json`` result, keyed by ``<name>`` (sorted)."""
        folder = self.dir / EVAL_DIR
        if not folder.is_dir():
            return {}
        return {p.stem: _read_json(p) for p in sorted(folder.glob("*.json")) if p.is_file()}

    def data_report_text(self) -> str | None:
        """``data_report.md`` as written at the start of training, if present."""
        path = self.dir / "data_report.md"
        return path.read_text(encoding="utf-8") if path.is_file() else None


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a run directory (``config.yaml``, and not a model's ``config.json``)."""
    p = Path(path)
    return p.is_dir() and (p / CONFIG).is_file() and not (p / "config.json").is_file()


def has_tokenizer(path: str | Path) -> bool:
    """Whether a folder holds a saved tokenizer."""
    return (Path(path) / "tokenizer_config.json").is_file()


def load_run(path: str | Path) -> RunRecord:
    """Read the run directory ``path`` into a :class:`RunRecord`.

    Raises:
        ConfigError: ``path`` is not a run directory, or its ``config.yaml`` or
            ``template.json`` is invalid; one line per problem naming the file.
    """
    p = Path(path)
    if not is_run_dir(p):
        what = "not found" if not p.exists() else f"is not a run directory (no {CONFIG})"
        raise ConfigError(f"{p}: {what}; give the folder a training run wrote (output.dir)")
    cfg_file = p / CONFIG
    try:
        config = RunConfig.model_validate(read_yaml(cfg_file))
    except ValidationError as exc:
        fix = "fix the key there (was the run written by another tunesmith version?)"
        raise ConfigError(
            "\n".join(f"{cfg_file}: {format_error(e)}; {fix}" for e in exc.errors())
        ) from None
    weights = p / "model" if (p / "model").is_dir() else None
    adapter = p / "adapter" if (p / "adapter").is_dir() else None
    saved = adapter or weights
    return RunRecord(
        dir=p,
        config=config,
        base=config.model.name,
        weights=weights,
        adapter=adapter,
        tokenizer_dir=saved if saved is not None and has_tokenizer(saved) else None,
        finished=saved is not None,
        template=read_template(p / TEMPLATE) if (p / TEMPLATE).is_file() else None,
    )


def read_template(path: Path) -> TemplateInfo:
    """Parse a ``template.json`` (see :class:`TemplateInfo`).

    Raises:
        ConfigError: not JSON, or a field missing or of the wrong type, naming the field.
    """
    raw = _read_json(path)
    fix = "delete the file to fall back to the tokenizer's template"

    def text(key: str, *, optional: bool) -> str | None:
        value = raw.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            need = "a string or null" if optional else "a string"
            raise ConfigError(f"{path}: {key!r} must be {need} (got {value!r}); {fix}")
        return value

    stops = raw.get("stops")
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise ConfigError(
            f"{path}: 'stops' must be a list of non-empty strings (got {stops!r}); {fix}"
        )
    template = text("template", optional=False)
    assert template is not None  # for the type checker: required above
    return TemplateInfo(
        template=template,
        stops=tuple(stops),
        system=text("system", optional=True),
        default_system=text("default_system", optional=True),
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects in a ``.jsonl`` file (``[]`` when it is missing).

    A last line without its newline that does not parse is a record torn by a kill while
    appending, and is left out.

    Raises:
        ConfigError: an earlier line is not a JSON object, naming ``file:line``.
    """
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif number < len(lines):  # followed by a newline: written whole, so not torn
            raise ConfigError(f"{path}:{number}: not a JSON object; delete the line")
    return records


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); delete or rewrite the file") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a JSON object; delete or rewrite the file")
    return value
