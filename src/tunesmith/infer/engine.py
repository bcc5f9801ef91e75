"""One inference engine behind chat, sample generation, evaluation and the server.

It renders prompts with the chat template the model was trained with (saved beside the weights),
stops on the template's end-of-turn tokens and on stop strings, and generates with a KV cache in
left-padded batches whose rows each keep their own sampling parameters and adapter. Synchronous
calls (:meth:`Engine.generate`, :meth:`Engine.stream`) batch what they are given; the server
submits to :attr:`Engine.worker`, which batches concurrent requests continuously.

Vision-language models (LLaVA) load with their processor (:attr:`Engine.takes_images`): a
prompt's ``<image>`` placeholders are expanded into image tokens exactly as in training, and its
images travel with the request into the prefill, so image and text rows share one batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.export.stops import run_stops, split_stops, stop_token_ids
from tunesmith.infer.decode import Delta, Event, Failed, Finished, Request
from tunesmith.infer.loading import attach_adapters, load_base
from tunesmith.infer.sampling import GenParams
from tunesmith.model.source import Loaded, has_tokenizer, load_tokenizer_from, locate
from tunesmith.runs import RunRecord

__all__ = [
    "Completion",
    "Engine",
    "GenParams",
    "Loaded",
    "Messages",
    "load_tokenizer_from",
    "locate",
    "stop_token_ids",
]

Messages = list[dict[str, Any]]


@dataclass
class Completion:
    """A finished answer with its token counts."""

    text: str = ""
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Engine:
    """A model (plus named LoRA adapters) with template-aware, batched, streaming generation.

    Args:
        model: a causal LM, or a ``PeftModel`` whose adapters are listed in ``adapters``.
        tokenizer: tokenizer carrying the chat template used in training.
        run: the run directory's record, when loaded from one (its config, template stops
            and system prompt).
        adapters: public name -> peft adapter name inside ``model``.
        default_adapter: public name used when a request names no model (``None``: the base).
        base_name: public name of the base model without adapters.
        max_batch: most sequences decoded together.
        processor: a vision-language model's processor (its chat template wins); ``None`` for
            text models.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        run: RunRecord | None = None,
        adapters: dict[str, str] | None = None,
        default_adapter: str | None = None,
        base_name: str = "base",
        max_batch: int = 32,
        processor: Any = None,
    ) -> None:
        from tunesmith.infer.runner import ModelRunner

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.processor = processor
        self.image_seq_length = 0
        if processor is not None:
            from tunesmith.model.multimodal import image_seq_length

            template = getattr(processor, "chat_template", None)
            if template:
                tokenizer.chat_template = template  # the template the model was trained with
            self.image_seq_length = image_seq_length(processor)
        self.run = run
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if adapters is None and hasattr(model, "peft_config"):
            # A PeftModel handed over directly (e.g. during training): its active adapter.
            active = model.active_adapter
            adapters, default_adapter = {active: active}, default_adapter or active
        self.adapters: dict[str, str] = dict(adapters or {})
        self.default_adapter = default_adapter
        self.base_name = base_name
        self.max_batch = max_batch
        stops = run_stops(tokenizer, run)
        self.stop_ids = stop_token_ids(model, tokenizer, stops)
        # The template's end-of-turn strings that are no single token stop as text.
        self.stop_texts = split_stops(tokenizer, stops)[1]
        self.max_positions = _context_length(model, tokenizer)
        self.runner = ModelRunner(model, tokenizer, self.stop_ids, max_positions=self.max_positions)
        self._worker: Any = None
        self._worker_lock = threading.Lock()
        self._tool_format: Any = False  # probed lazily; None means "template has no tools"

    @property
    def takes_images(self) -> bool:
        """Whether this is a vision-language model (prompts may carry images)."""
        return self.processor is not None

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path_or_run: str,
        *,
        adapter: str | None = None,
        dtype: str = "auto",
        adapters: dict[str, str] | None = None,
        bits: int | None = None,
        device: str = "auto",
        max_batch: int = 32,
        threads: int | None = None,
    ) -> Engine:
        """Load a run directory, a merged model, or a base model with adapters.

        Vision-language targets (``builtin:tiny-llava``, a ``vlm_pretrain`` / ``vlm_sft`` run
        directory, a LLaVA checkpoint folder) load with their processor; a LoRA adapter is
        merged into the base.

        Args:
            path_or_run: run directory, model folder, hub id, ``builtin:tiny-qwen2`` or
                ``builtin:tiny-llava``.
            adapter: LoRA adapter folder used by default (a run directory brings its own).
            dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
            adapters: more LoRA adapters on the same base, by the name requests use.
            bits: 4 or 8 to quantise the base weights with bitsandbytes.
            device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
            max_batch: most sequences decoded together.
            threads: torch CPU threads (on a busy machine, 1 is often fastest for small models).
        """
        if threads:
            import torch

            torch.set_num_threads(threads)
        from tunesmith.infer.vision import is_vlm_target

        if is_vlm_target(path_or_run, adapter):
            return cls._load_vlm(
                path_or_run,
                adapter=adapter,
                dtype=dtype,
                adapters=adapters,
                bits=bits,
                device=device,
                max_batch=max_batch,
            )
        where = locate(path_or_run, adapter)
        named: dict[str, str] = {}
        if where.adapter:
            named[_adapter_public_name(path_or_run, where)] = where.adapter
        for name, path in (adapters or {}).items():
            if name in named:
                raise ConfigError(f"--adapter {name}=...: the name {name!r} is used twice")
            if not Path(path).is_dir():
                raise ConfigError(f"--adapter {name}={path}: folder not found")
            named[name] = path
        is_run = where.run is not None
        base_name = where.base if is_run and where.adapter else path_or_run
        if is_run and not where.adapter:
            base_name = Path(path_or_run).resolve().name
        if base_name in named:
            raise ConfigError(f"adapter name {base_name!r} is also the base model's name")
        tok_source = where.tokenizer or next(
            (p for p in named.values() if has_tokenizer(p)), where.base
        )
        tokenizer = load_tokenizer_from(tok_source)
        model = load_base(where.base, dtype=dtype, bits=bits, device=device)
        keys: dict[str, str] = {}
        if named:
            model, keys = attach_adapters(model, named)
        default = next(iter(named)) if where.adapter else None
        return cls(
            model,
            tokenizer,
            run=where.run,
            adapters=keys,
            default_adapter=default,
            base_name=base_name,
            max_batch=max_batch,
        )

    @classmethod
    def _load_vlm(cls, path_or_run: str, *, max_batch: int, **kw: Any) -> Engine:
        from tunesmith.infer.vision import load_vlm_target

        model, processor, run, name = load_vlm_target(path_or_run, **kw)
        return cls(
            model,
            processor.tokenizer,
            run=run,
            base_name=name,
            max_batch=max_batch,
            processor=processor,
        )

    @property
    def system_prompt(self) -> str | None:
        """The run's system prompt (what training put before conversations without one)."""
        return self.run.system if self.run is not None else None

    def with_stops(self, params: GenParams) -> GenParams:
        """``params`` that also stop on the template's end-of-turn strings written as text."""
        extra = [s for s in self.stop_texts if s not in params.stop]
        return replace(params, stop=[*params.stop, *extra]) if extra else params

    # -- names -----------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        """Names a request may use: the default first, then the base and every adapter."""
        names = [self.default_adapter or self.base_name, self.base_name, *self.adapters]
        return list(dict.fromkeys(names))

    def adapter_key(self, name: str | None) -> str | None:
        """The peft adapter for a public model name (``None``: the default; base: ``None``)."""
        if name is None:
            name = self.default_adapter or self.base_name
        if name == self.base_name:
            return None
        if name in self.adapters:
            return self.adapters[name]
        raise ConfigError(f"model {name!r} not found; available: {', '.join(self.model_names())}")

    # -- prompts ---------------------------------------------------------------------------
    def render(
        self, messages: Messages, tools: list[dict[str, Any]] | None = None, prefix: str = ""
    ) -> str:
        """The prompt text: ``messages`` with the generation prompt, then ``prefix``."""
        text = self.tokenizer.apply_chat_template(
            messages, tools=tools or None, add_generation_prompt=True, tokenize=False
        )
        return text + prefix

    def prompt_ids(
        self, messages: Messages, tools: list[dict[str, Any]] | None = None, prefix: str = ""
    ) -> list[int]:
        """Token ids of ``messages`` rendered with the generation prompt (and ``prefix``)."""
        return self.prompt_inputs(messages, tools, prefix)[0]

    def prompt_inputs(
        self,
        messages: Messages,
        tools: list[dict[str, Any]] | None = None,
        prefix: str = "",
        images: Sequence[Any] | None = None,
    ) -> tuple[list[int], Any]:
        """``(prompt ids, pixel_values or None)`` for ``messages`` and their images.

        ``images`` (PIL images or local references) fill the ``<image>`` placeholders in order;
        when the messages hold none, the first user turn gets one per image at its start. The
        ids hold the expanded image tokens, as the processor writes them in training.

        Raises:
            ConfigError: images for a text model, or placeholders and images that differ.
        """
        images = list(images or [])
        if images and not self.takes_images:
            raise ConfigError("images given, but this model is text-only")
        if not self.takes_images:
            return self.encode(self.render(messages, tools, prefix), special=False), None
        from tunesmith.infer.vision import attach_placeholders, encode_with_images, to_images

        token = self.processor.image_token
        text = self.render(attach_placeholders(messages, len(images), token), tools, prefix)
        if images or token in text:
            return encode_with_images(
                self.processor, text, to_images(images), per_image=self.image_seq_length
            )
        return self.encode(text, special=False), None

    def encode(self, text: str, *, special: bool = True) -> list[int]:
        """Token ids of plain text (``special``: add BOS etc. as the tokenizer does)."""
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    @property
    def tool_format(self) -> Any:
        """How the template writes tool calls (a ``ToolFormat``), or ``None``."""
        if self._tool_format is False:
            from tunesmith.infer.tools import probe_tool_format

            self._tool_format = probe_tool_format(self.tokenizer)
        return self._tool_format

    def check_prompt(self, ids: Sequence[int]) -> None:
        """Raise ``ConfigError`` when a prompt leaves no room to answer."""
        if len(ids) >= self.max_positions:
            raise ConfigError(
                f"the prompt is {len(ids)} tokens; the model's context is {self.max_positions}"
            )

    # -- generation ------------------------------------------------------------------------
    def complete(self, items: Sequence[tuple[Any, ...]]) -> list[Completion]:
        """Generate for ``(prompt ids, params, adapter key[, pixel_values])`` items, batched.

        Results come back in order.
        """
        from tunesmith.infer.batching import Scheduler, make_request

        results = [Completion() for _ in items]
        errors: list[BaseException] = []

        def collect(i: int, ev: Event) -> None:
            if isinstance(ev, Delta):
                results[i].text += ev.text
            elif isinstance(ev, Finished):
                r = results[i]
                r.finish_reason, r.prompt_tokens, r.completion_tokens = (
                    ev.reason,
                    ev.prompt_tokens,
                    ev.completion_tokens,
                )
            else:
                errors.append(ev.error)

        sched = Scheduler(self.runner, max_batch=self.max_batch)
        for i, item in enumerate(items):
            self.check_prompt(item[0])
            item[1].check()
            item = (item[0], self.with_stops(item[1]), *item[2:])
            sched.add(make_request(item, lambda ev, i=i: collect(i, ev)))
        while sched.busy:
            sched.step()
        if errors:
            raise errors[0]
        return results

    def generate(
        self,
        batch: Sequence[Messages],
        params: GenParams | None = None,
        *,
        adapter: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        images: Sequence[Sequence[Any] | None] | None = None,
    ) -> list[str]:
        """Answer several conversations at once (left-padded batch); texts are stripped.

        ``images``: per conversation, its images (see :meth:`prompt_inputs`), or ``None``.
        """
        params = params or GenParams()
        key = self.adapter_key(adapter)
        per = list(images) if images is not None else [None] * len(batch)
        if len(per) != len(batch):
            raise ConfigError(f"{len(per)} image lists for {len(batch)} conversations")
        items = []
        for m, ims in zip(batch, per):
            ids, pixels = self.prompt_inputs(m, tools, images=ims)
            items.append((ids, params, key, pixels))
        return [c.text.strip() for c in self.complete(items)]

    def events(
        self,
        messages: Messages,
        params: GenParams | None = None,
        *,
        adapter: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        images: Sequence[Any] | None = None,
    ) -> Iterator[Event]:
        """Yield ``Delta`` events as tokens are generated, then one ``Finished``."""
        from tunesmith.infer.batching import Scheduler

        params = (params or GenParams()).check()
        ids, pixels = self.prompt_inputs(messages, tools, images=images)
        self.check_prompt(ids)
        out: list[Event] = []
        sched = Scheduler(self.runner, max_batch=1)
        key = self.adapter_key(adapter)
        req = Request(ids, self.with_stops(params), out.append, adapter=key, pixel_values=pixels)
        sched.add(req)
        try:
            while sched.busy:
                sched.step()
                for ev in out:
                    if isinstance(ev, Failed):
                        raise ev.error
                    yield ev
                out.clear()
        finally:
            if not req.done:  # the consumer stopped early
                req.abort()

    def stream(
        self,
        messages: Messages,
        params: GenParams | None = None,
        *,
        adapter: str | None = None,
        images: Sequence[Any] | None = None,
    ) -> Iterator[str]:
        """Yield the answer piece by piece as tokens are generated."""
        for ev in self.events(messages, params, adapter=adapter, images=images):
            if isinstance(ev, Delta):
                yield ev.text

    @property
    def worker(self) -> Any:
        """The background :class:`BatchWorker` (started on first use)."""
        with self._worker_lock:
            if self._worker is None:
                from tunesmith.infer.batching import BatchWorker

                self._worker = BatchWorker(self.runner, max_batch=self.max_batch)
            return self._worker

    def close(self) -> None:
        """Stop the background worker, if any."""
        with self._worker_lock:
            if self._worker is not None:
                self._worker.close()
                self._worker = None


# -- loading helpers -------------------------------------------------------------------------
def _adapter_public_name(path_or_run: str, where: Loaded) -> str:
    if where.run is not None:
        return Path(path_or_run).resolve().name
    p = Path(where.adapter or "adapter").resolve()
    return p.parent.name if p.name == "adapter" and p.parent.name else p.name


def _context_length(model: Any, tokenizer: Any) -> int:
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    n = getattr(cfg or model.config, "max_position_embeddings", None)
    if not n:
        n = getattr(tokenizer, "model_max_length", 0)
    return int(n) if n and n < 10**8 else 1 << 30
