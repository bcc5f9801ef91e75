"""The language-model loss of a batch, computed only where something is trained.

Three ways to get ``sum of token losses`` (``train.ce_impl``), all equal to the plain
``token_ce_sum(model(...).logits, labels)`` (tested to 1e-5):

* ``logits``: the model's ``lm_head`` runs on the trained positions only (transformers'
  ``logits_to_keep`` with a boolean ``[batch, seq]`` mask), so prompt, padding and packing
  boundaries cost no ``hidden x vocab`` matmul; the ``[trained tokens, vocab]`` logits exist.
* ``chunked``: the ``lm_head`` input (the final hidden states of the trained positions) is taken
  from the model and fused with the cross-entropy in chunks (``losses.linear_ce_sum``), so no
  ``[tokens, vocab]`` tensor exists at all. Needs a plain ``nn.Linear`` head and unsharded weights.
* ``liger``: Liger's Triton fused linear cross-entropy (CUDA with ``liger-kernel`` installed).

``auto`` takes the first that applies of liger (CUDA, installed), chunked (unless the whole
model is compiled) and logits; models whose ``forward`` has no ``logits_to_keep`` fall back to
full logits. Liger takes no per-token weights: batches with span weights use the chunked path.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from tunesmith.data.collate import model_inputs
from tunesmith.train.losses import ce_sum, linear_ce_sum, token_ce_sum, trained_targets

IMPLS = ("auto", "logits", "chunked", "liger", "full")


def _inner(model: Any) -> Any:
    """The model inside DDP / torch.compile wrappers (a peft model stays a peft model)."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def _head(model: Any) -> Any:
    inner = _inner(model)
    return inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None


def _takes_logits_mask(model: Any) -> bool:
    inner = _inner(model)
    base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def resolve_ce_impl(requested: str, model: Any, *, device: torch.device, sharded: bool) -> str:
    """The implementation ``requested`` (or ``auto``) resolves to for this model and device.

    Raises:
        ValueError: An implementation was asked for explicitly that cannot run here.
    """
    head = _head(model)
    plain_head = type(head) is torch.nn.Linear  # not a LoRA / modules_to_save / 4-bit wrapper
    mask_ok = _takes_logits_mask(model)
    # The chunked path hooks the head each step, which would make a compiled whole model retrace
    # (train.compile compiles the decoder layers only, so the head stays eager).
    compiled = getattr(_inner(model), "_compiled_call_impl", None) is not None
    chunk_ok = mask_ok and plain_head and not sharded and not compiled
    liger_ok = chunk_ok and device.type == "cuda" and _has_liger()
    if requested == "auto":
        return "liger" if liger_ok else "chunked" if chunk_ok else "logits" if mask_ok else "full"
    why = {
        "logits": None if mask_ok else "the model's forward takes no logits_to_keep",
        "chunked": None
        if chunk_ok
        else "needs logits_to_keep, a plain nn.Linear lm_head, unsharded weights, no compile",
        "liger": None if liger_ok else "needs CUDA, liger-kernel and a plain nn.Linear lm_head",
        "full": None,
    }[requested]
    if why:
        raise ValueError(f"train.ce_impl: {requested} cannot run here ({why}); use auto")
    return requested


def _has_liger() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


@contextlib.contextmanager
def _head_input(head: torch.nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Capture what the model feeds its ``lm_head`` and let the head itself compute nothing."""
    box: dict[str, torch.Tensor] = {}

    def take(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        box["hidden"] = args[0]
        return (args[0][:0], *args[1:])

    handle = head.register_forward_pre_hook(take)
    try:
        yield box
    finally:
        handle.remove()


def lm_loss_sum(
    model: Any,
    batch: Mapping[str, Any],
    *,
    attn_implementation: str,
    impl: str,
    chunk_size: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of trained-token losses, number of trained tokens)`` for one batch.

    ``impl`` is a resolved implementation (see ``resolve_ce_impl``); ``batch`` holds ``labels``
    (and optional ``weights``) besides the model inputs.
    """
    inputs = model_inputs(batch, attn_implementation)
    labels, weights = batch["labels"], batch.get("weights")
    if impl == "full":
        out = model(**inputs)
        return token_ce_sum(out.logits, labels, weights)
    keep, target, token_weights = trained_targets(labels, weights)
    n = keep.sum()
    if impl == "logits":
        out = model(**inputs, logits_to_keep=keep)
        return ce_sum(out.logits, target, token_weights), n
    head = _head(model)
    with _head_input(head) as box:
        model(**inputs, logits_to_keep=keep)
    hidden = box["hidden"]
    if impl == "liger" and token_weights is None:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        loss = liger_fused_linear_cross_entropy(
            hidden, head.weight, target, bias=head.bias, reduction="sum"
        )
        return loss, n
    loss = linear_ce_sum(
        hidden, head.weight, target, token_weights, bias=head.bias, chunk_size=chunk_size
    )
    return loss, n
