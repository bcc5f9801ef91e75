"""The end-of-turn strings generation stops on, as chat, serve and export share them.

A run that saved ``template.json`` (see :mod:`tunesmith.runs`) names its template's stop strings
there; older runs and plain models have them derived from the tokenizer's chat template exactly
as training did (:func:`template_stops`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.runs import RunRecord

# Last resort, for a tokenizer with no chat template at all: the usual end-of-turn tokens.
END_OF_TURN = (
    "<|im_end|>",
    "<|eot_id|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
    "<|eom_id|>",
)


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


def run_stops(tokenizer: Any, run: RunRecord | None) -> tuple[str, ...]:
    """The stop strings of ``run`` (``None``: a plain model) for generation with ``tokenizer``.

    ``template.json`` wins when the run wrote one (the template's own stops, saved by training);
    otherwise they are read off the tokenizer's template (:func:`template_stops`).
    """
    if run is not None and run.template is not None:
        return run.template.stops
    return template_stops(tokenizer, run.config.model.template if run is not None else None)


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


def stop_token_ids(model: Any, tokenizer: Any, stops: Sequence[str]) -> list[int]:
    """End-of-answer ids: the generation config's eos, the tokenizer's, and those of the
    template's end-of-turn strings ``stops`` that are one token (see :func:`run_stops`).
    """
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    ids.update(split_stops(tokenizer, stops)[0])
    return sorted(ids)
