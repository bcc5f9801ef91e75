"""What a run directory (or a model path) holds, and the pieces chat, serve and export share.

A run directory has ``config.yaml`` (the resolved config; ``model.name`` is the base) and either
``adapter/`` (peft LoRA + the tokenizer with the training chat template) or ``model/`` (a full
fine-tune + tokenizer).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunesmith.errors import ConfigError

# Last resort, for a tokenizer with no chat template at all: the usual end-of-turn tokens.
END_OF_TURN = (
    "<|im_end|>",
    "<|eot_id|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
    "<|eom_id|>",
)


@dataclass
class Loaded:
    """Where a model comes from: base weights plus an optional adapter."""

    base: str
    adapter: str | None = None
    tokenizer: str | None = None
    run_config: dict[str, Any] | None = None


def locate(path_or_run: str, adapter: str | None = None) -> Loaded:
    """Resolve a run directory, a model path/hub id, or ``builtin:...`` into what to load."""
    p = Path(path_or_run)
    cfg_file = p / "config.yaml"
    if p.is_dir() and cfg_file.is_file() and not (p / "config.json").is_file():
        run_cfg = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
        if (p / "adapter").is_dir():
            base = run_cfg["model"]["name"]
            saved = str(p / "adapter")  # holds the tokenizer with the training template
            tok = saved if has_tokenizer(saved) else None
            return Loaded(base, adapter or saved, tok, run_cfg)
        if (p / "model").is_dir():
            return Loaded(str(p / "model"), adapter, str(p / "model"), run_cfg)
        raise ConfigError(f"{p}: run directory has no adapter/ or model/; did training finish?")
    if adapter and not Path(adapter).expanduser().is_dir():
        raise ConfigError(f"--adapter {adapter}: folder not found")
    from tunesmith.model.loader import resolve_model_path

    resolve_model_path(path_or_run, what=None)  # a missing path fails here, before any hub call
    return Loaded(path_or_run, adapter, adapter if adapter and has_tokenizer(adapter) else None)


def has_tokenizer(path: str) -> bool:
    """Whether a folder holds a saved tokenizer."""
    return (Path(path) / "tokenizer_config.json").is_file()


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


def template_stops(tokenizer: Any, template: str | None = None) -> tuple[str, ...]:
    """The end-of-turn strings of the chat template ``tokenizer`` carries, as training had them.

    The same code as training (``resolve_chat_template``) reads them off the template: a run's
    tokenizer holds the exact template it was trained with. ``template`` is the run's
    ``model.template``; it is used when the saved template is that built-in's (as training did),
    so the stop strings are the ones the labels were verified against. A tokenizer with no
    template at all falls back to :data:`END_OF_TURN`.
    """
    from tunesmith.data.templates import (
        builtin_template_names,
        get_template,
        resolve_chat_template,
    )

    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):
        own = own.get("default") or next(iter(own.values()), None)
    if template in builtin_template_names() and (
        not own or own.strip() == get_template(template).jinja.strip()
    ):
        return resolve_chat_template(tokenizer, template)[1]
    try:
        return resolve_chat_template(tokenizer, None)[1]
    except ConfigError:  # no template: nothing to read the stops from
        return END_OF_TURN


def split_stops(tokenizer: Any, stops: Sequence[str]) -> tuple[list[int], list[str]]:
    """``(token ids, texts)``: stop strings that are one token stop on its id, others as text."""
    ids: list[int] = []
    texts: list[str] = []
    for text in stops:
        tid = _single_token(tokenizer, text)
        if tid is not None:
            ids.append(tid)
        else:
            texts.append(text)
    return ids, texts


def _single_token(tokenizer: Any, text: str) -> int | None:
    tid = tokenizer.convert_tokens_to_ids(text)
    if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id:
        return tid
    try:
        enc = tokenizer(text, add_special_tokens=False)["input_ids"]
    except Exception:
        return None
    return enc[0] if len(enc) == 1 and enc[0] != tokenizer.unk_token_id else None


def stop_token_ids(model: Any, tokenizer: Any, template: str | None = None) -> list[int]:
    """End-of-answer ids: the generation config's eos, the tokenizer's, and the template's
    end-of-turn tokens (see :func:`template_stops`; ``template``: the run's ``model.template``).
    """
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    ids.update(split_stops(tokenizer, template_stops(tokenizer, template))[0])
    return sorted(ids)


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence peft's deprecation notice about transformers' renamed checkpointing flag."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*is_gradient_checkpointing", category=FutureWarning
        )
        yield
