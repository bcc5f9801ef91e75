"""Forward passes for the scheduler: left-padded prefill, one-token decode, adapter routing.

Vision-language models (LLaVA): a prefill may carry the images of its rows. Their prompt ids
already hold the expanded image tokens, and the rows' pixel values are concatenated in row order,
which is the order the model scatters image features into the image tokens of the batch. Decode
steps pass no images (the image features already sit in the KV cache).

Adapters are routed per row: a batch that uses one adapter (or only the base) runs with that
adapter active; a mixed batch passes peft's ``adapter_names`` so every row gets its own LoRA
(peft cannot mix DoRA adapters, so then the scheduler keeps batches to one adapter).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


class ModelRunner:
    """Runs a causal LM (optionally a ``PeftModel`` with several adapters) for the scheduler."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        stop_ids: Sequence[int],
        *,
        max_positions: int,
        lock: threading.RLock | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = frozenset(stop_ids)
        self.max_positions = max_positions
        self.lock = lock or threading.RLock()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.image_token_id = _image_token_id(model)
        if self.image_token_id is not None and self.pad_id == self.image_token_id:
            self.pad_id = 0 if self.image_token_id != 0 else 1  # padding must not look like images
        self.is_peft = hasattr(model, "peft_config")
        dora = self.is_peft and any(
            getattr(c, "use_dora", False) for c in model.peft_config.values()
        )
        self.mixed_adapters = self.is_peft and not dora
        self.can_join = self._plain_dynamic_cache()
        self._device: Any = None

    def _float_dtype(self) -> Any:
        """The dtype of the model's floating-point weights (images are fed in it)."""
        import torch

        for p in self.model.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    @property
    def device(self) -> Any:
        """Where the model's parameters live."""
        if self._device is None:
            self._device = next(self.model.parameters()).device
        return self._device

    def _plain_dynamic_cache(self) -> bool:
        # Joining batches edits the cache tensors directly: only for full-attention layers.
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        try:
            cache = DynamicCache(config=self.model.config)
        except Exception:
            return False
        return bool(cache.layers) and all(type(x) is DynamicLayer for x in cache.layers)

    def new_cache(self) -> Any:
        """An empty KV cache for this model."""
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def prefill(
        self,
        prompts: Sequence[list[int]],
        adapters: Sequence[str | None],
        pixel_values: Sequence[Any | None] | None = None,
    ) -> tuple[Any, Any, Any]:
        """Run left-padded prompts; returns (last logits, attention mask, cache).

        ``pixel_values``: per row, its images' ``[n, 3, H, W]`` tensor or ``None`` (text rows).
        """
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        ids, mask = ids.to(self.device), mask.to(self.device)
        cache = self.new_cache()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        extra: dict[str, Any] = {}
        images = [p for p in pixel_values or [] if p is not None]
        if images:
            if self.image_token_id is None:
                raise ValueError("this model takes no images")
            dtype = self._float_dtype()
            extra["pixel_values"] = torch.cat([p.to(self.device, dtype) for p in images], 0)
        logits = self._forward(
            adapters,
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            logits_to_keep=1,
            **extra,
        )
        return logits, mask, cache

    def decode(
        self, tokens: Sequence[int], mask: Any, cache: Any, adapters: Sequence[str | None]
    ) -> tuple[Any, Any]:
        """Feed one new token per row; returns (logits, extended mask)."""
        import torch

        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
        ids = torch.tensor(tokens, device=self.device).unsqueeze(1)
        positions = mask.sum(-1, keepdim=True) - 1
        logits = self._forward(
            adapters, input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache
        )
        return logits, mask

    @staticmethod
    def cat(parts: Sequence[Any]) -> Any:
        """Concatenate logits of two batches."""
        import torch

        return torch.cat(list(parts), 0)

    def _forward(self, adapters: Sequence[str | None], **kwargs: Any) -> Any:
        import torch

        with self.lock, torch.no_grad(), self._route(adapters, kwargs):
            out = self.model(use_cache=True, **kwargs)
        return out.logits[:, -1].float()

    def _route(self, adapters: Sequence[str | None], kwargs: dict[str, Any]) -> Any:
        """Context that makes the model use the right adapter(s) for this batch."""
        if not self.is_peft:
            if any(a is not None for a in adapters):
                raise ValueError("this model has no adapters loaded")
            return nullcontext()
        names = set(adapters)
        if names == {None}:
            return self.model.disable_adapter()
        if len(names) == 1:
            (name,) = names
            if self.model.active_adapter != name:
                self.model.set_adapter(name, inference_mode=True)
            return nullcontext()
        kwargs["adapter_names"] = [BASE if a is None else a for a in adapters]
        return nullcontext()


def _image_token_id(model: Any) -> int | None:
    """The id of the image token for a vision-language model, else ``None``."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "vision_config", None) is None:
        return None
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None
