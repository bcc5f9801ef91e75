"""Where a model to load comes from: a run directory, a model folder, a hub id or a built-in.

Chat, serve, eval and export all start here: :func:`locate` turns what the user named into the
base weights, the adapter (if any), the folder holding the training tokenizer and, for a run
directory, its :class:`~tunesmith.runs.RunRecord`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.runs import RunRecord, has_tokenizer, is_run_dir, load_run


@dataclass
class Loaded:
    """Where a model comes from: base weights plus an optional adapter.

    Attributes:
        base: Base weights to load (a path, hub id or ``builtin:...``).
        adapter: Adapter folder to put on top, if any.
        tokenizer: Folder holding the tokenizer to use (``None``: the base's).
        run: The run directory's record, when a run was named.
    """

    base: str
    adapter: str | None = None
    tokenizer: str | None = None
    run: RunRecord | None = None


def locate(path_or_run: str, adapter: str | None = None) -> Loaded:
    """Resolve a run directory, a model path/hub id, or ``builtin:...`` into what to load.

    Raises:
        ConfigError: a run without ``adapter/`` or ``model/``, a missing ``--adapter`` folder,
            or a model path that does not exist.
    """
    if is_run_dir(path_or_run):
        run = load_run(path_or_run)
        if run.adapter is not None:  # its folder holds the tokenizer with the training template
            tok = str(run.tokenizer_dir) if run.tokenizer_dir is not None else None
            return Loaded(run.base, adapter or str(run.adapter), tok, run)
        if run.weights is not None:
            return Loaded(str(run.weights), adapter, str(run.weights), run)
        raise ConfigError(
            f"{run.dir}: run directory has no adapter/ or model/; did training finish?"
        )
    if adapter and not Path(adapter).expanduser().is_dir():
        raise ConfigError(f"--adapter {adapter}: folder not found")
    from tunesmith.model.loader import resolve_model_path

    resolve_model_path(path_or_run, what=None)  # a missing path fails here, before any hub call
    return Loaded(path_or_run, adapter, adapter if adapter and has_tokenizer(adapter) else None)


def load_tokenizer_from(source: str) -> Any:
    """A tokenizer from a model, or from an adapter folder saved with its tokenizer."""
    from tunesmith.model.loader import load_tokenizer, quiet_transformers

    if not has_tokenizer(source):
        return load_tokenizer(source)  # built-ins, model folders, hub ids
    from transformers import AutoTokenizer

    quiet_transformers()
    tok = AutoTokenizer.from_pretrained(source)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence peft's deprecation notice about transformers' renamed checkpointing flag."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*is_gradient_checkpointing", category=FutureWarning
        )
        yield
