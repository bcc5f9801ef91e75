"""One inference engine behind chat, sample generation, evaluation and the server.

It renders prompts with the chat template the model was trained with (saved beside the weights),
stops on the template's end-of-turn tokens, generates batches left-padded, and streams text.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunesmith.errors import ConfigError

Messages = list[dict[str, Any]]


@dataclass
class GenParams:
    """Generation parameters; ``temperature == 0`` means greedy."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


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
            return Loaded(base, adapter or str(p / "adapter"), str(p / "adapter"), run_cfg)
        if (p / "model").is_dir():
            return Loaded(str(p / "model"), adapter, str(p / "model"), run_cfg)
        raise ConfigError(f"{p}: run directory has no adapter/ or model/; did training finish?")
    return Loaded(path_or_run, adapter, adapter if adapter and _has_tokenizer(adapter) else None)


def _has_tokenizer(path: str) -> bool:
    return (Path(path) / "tokenizer_config.json").is_file()


class Engine:
    """A Hugging Face ``generate`` backend with template-aware stopping."""

    def __init__(self, model: Any, tokenizer: Any, *, run_config: dict[str, Any] | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.run_config = run_config or {}
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.stop_ids = self._stop_token_ids()

    @classmethod
    def load(cls, path_or_run: str, *, adapter: str | None = None, dtype: str = "auto") -> Engine:
        """Load a run directory, a merged model, or a base model with an adapter."""
        from tunesmith.model.loader import load_model, load_tokenizer

        where = locate(path_or_run, adapter)
        tokenizer = load_tokenizer(where.tokenizer or where.base)
        model = load_model(where.base, dtype=dtype)
        if where.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, where.adapter)
        return cls(model, tokenizer, run_config=where.run_config)

    def _stop_token_ids(self) -> list[int]:
        ids: set[int] = set()
        gen = getattr(self.model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None) if gen is not None else None
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        for text in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>"):
            tid = self.tokenizer.convert_tokens_to_ids(text)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id and tid >= 0:
                ids.add(tid)
        return sorted(ids)

    def prompt_ids(
        self, messages: Messages, tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """Token ids of ``messages`` rendered with the generation prompt."""
        text = self.tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, tokenize=False
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _gen_kwargs(self, params: GenParams) -> dict[str, Any]:
        import torch

        if params.seed is not None:
            torch.manual_seed(params.seed)
        kw: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "eos_token_id": self.stop_ids,
            "pad_token_id": self.tokenizer.pad_token_id,
            "repetition_penalty": params.repetition_penalty,
        }
        if params.temperature > 0:
            kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
            if params.top_k:
                kw["top_k"] = params.top_k
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kw.update(stop_strings=params.stop, tokenizer=self.tokenizer)
        return kw

    def generate(self, batch: Sequence[Messages], params: GenParams | None = None) -> list[str]:
        """Answer several conversations at once (left-padded batch)."""
        import torch

        params = params or GenParams()
        prompts = [self.prompt_ids(m) for m in batch]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), **self._gen_kwargs(params)
            )
        return [self._clean(row[width:].tolist(), params) for row in out]

    def _clean(self, ids: list[int], params: GenParams) -> str:
        for i, t in enumerate(ids):
            if t in self.stop_ids:
                ids = ids[:i]
                break
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        for s in params.stop:
            if s in text:
                text = text[: text.index(s)]
        return text.strip()

    def stream(self, messages: Messages, params: GenParams | None = None) -> Iterator[str]:
        """Yield the answer piece by piece as tokens are generated."""
        import torch
        from transformers import TextIteratorStreamer

        params = params or GenParams()
        device = next(self.model.parameters()).device
        ids = torch.tensor([self.prompt_ids(messages)], device=device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer)
        kwargs.update(self._gen_kwargs(params))
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with torch.no_grad():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced in the caller's thread below
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        buffered = ""
        for piece in streamer:
            buffered += piece
            hit = next((s for s in params.stop if s in buffered), None)
            if hit:
                yield piece[: len(piece) - (len(buffered) - buffered.index(hit))]
                break
            yield piece
        thread.join()
        if errors:
            raise errors[0]
