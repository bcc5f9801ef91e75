"""Turn rendered samples into model-ready batches: right-padded, or packed without cross-talk.

A rendered sample is
``{"input_ids": list[int], "labels": list[int], "weights": list[float] | None}``
(``labels == -100`` where nothing is trained; all three lists have the same length, ``weights`` is
optional).

How a packed batch stays isolated (transformers 5.24, measured in
``tests/integration/test_packed_equals_unpacked.py``):

* ``position_ids`` restart at 0 for every sample. The padding at the end of a row is a sequence of
  its own with its own restarting positions, so no real token ever attends to a pad and no pad
  query has all its keys masked (which would give NaN).
* **sdpa / eager** (tested) **and flex_attention** (same mask path; checked once by hand, its CPU
  compile takes ~40 s): ``masking_utils.find_packed_sequence_indices`` splits a row
  wherever consecutive position ids do not step by +1 and builds a block-diagonal causal mask, but
  *only* when ``attention_mask is None`` and no cache exists. A packed batch therefore has no
  ``attention_mask`` key, and the model must be called with ``use_cache=False`` (``use_cache``
  defaults to the config's True even in training). Either mistake silently leaks attention
  across samples.
* **flash_attention_2/3**: with ``batch > 1`` transformers does not infer sequences from
  position ids, so the varlen kwargs ``cu_seq_lens_q``, ``cu_seq_lens_k`` (int32 offsets into the
  flattened ``[batch * row_length]`` tokens, pad segments included) and ``max_length_q``,
  ``max_length_k`` (python ints) are passed through ``**kwargs`` to the attention layer.

``model_inputs`` returns exactly the kwargs for ``model(**...)`` for a given backend.

Loss across a boundary: the causal shift makes position ``t`` predict label ``t + 1``, so in a
packed row the last token of sample A would predict the first token of sample B. ``collate_packed``
sets the label of every sample's first token to -100. Unpacked, that label is never a target either
(nothing precedes it), so packed and unpacked losses and token counts are identical.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tunesmith.model.attention import SDPA_VARLEN

IGNORE_INDEX = -100

# Keys of a packed batch that only flash-attention's varlen path consumes.
FLASH_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
# Backends that isolate packed rows from position_ids (no 2-D mask, no cache): via masking_utils'
# block-diagonal mask, or per sample (tunesmith's SDPA_VARLEN, see model/attention.py).
MASK_BACKENDS = ("sdpa", "eager", "flex_attention", SDPA_VARLEN)

Sample = Mapping[str, Any]


def _check_sample(sample: Sample, where: str) -> int:
    n = len(sample["input_ids"])
    if n == 0:
        raise ValueError(f"{where} is empty")
    if len(sample["labels"]) != n:
        raise ValueError(f"{where}: {len(sample['labels'])} labels for {n} input_ids")
    weights = sample.get("weights")
    if weights is not None and len(weights) != n:
        raise ValueError(f"{where}: {len(weights)} weights for {n} input_ids")
    return n


def _round_up(n: int, multiple: int | None) -> int:
    if multiple is None or multiple <= 1:
        return n
    return -(-n // multiple) * multiple


def collate_padded(
    samples: Sequence[Sample], pad_token_id: int, *, pad_to_multiple_of: int | None = None
) -> dict[str, torch.Tensor]:
    """Right-pad samples to a common length.

    Returns:
        ``input_ids`` and ``labels`` (``-100`` on pads) as int64, ``attention_mask`` (1 real,
        0 pad) as int64 of shape ``[batch, length]``, plus float32 ``weights`` when any sample
        carries weights (1.0 for samples without, 0.0 on pads).
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    lens = [_check_sample(s, f"sample {i}") for i, s in enumerate(samples)]
    length = _round_up(max(lens), pad_to_multiple_of)
    batch = len(samples)
    input_ids = torch.full((batch, length), pad_token_id, dtype=torch.long)
    labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((batch, length), dtype=torch.long)
    with_weights = any(s.get("weights") is not None for s in samples)
    weights = torch.zeros((batch, length), dtype=torch.float32) if with_weights else None
    for b, (s, n) in enumerate(zip(samples, lens)):
        input_ids[b, :n] = torch.tensor(s["input_ids"], dtype=torch.long)
        labels[b, :n] = torch.tensor(s["labels"], dtype=torch.long)
        attention_mask[b, :n] = 1
        if weights is not None:
            w = s.get("weights")
            weights[b, :n] = 1.0 if w is None else torch.tensor(w, dtype=torch.float32)
    out = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
    if weights is not None:
        out["weights"] = weights
    return out


def collate_packed(
    rows: Sequence[Sequence[Sample]], pad_token_id: int, *, row_length: int | None = None
) -> dict[str, Any]:
    """Concatenate each row's samples and stack rows into one isolated packed batch.

    Args:
        rows: Samples per row (e.g. from ``packing.pack_samples``).
        pad_token_id: Token id written into padding.
        row_length: Fixed length of every row (static shapes); defaults to the longest row.

    Returns:
        ``input_ids``, ``labels``, ``position_ids`` (int64 ``[batch, length]``); ``weights``
        (float32) when any sample has weights; ``seq_lens`` (``list[list[int]]``, the real sample
        lengths of each row, padding excluded); ``cu_seq_lens_q`` / ``cu_seq_lens_k`` (int32, the
        cumulative segment offsets over the flattened batch, starting at 0 and ending at
        ``batch * length``; each row's padding is one segment); ``max_length_q`` / ``max_length_k``
        (int, the longest segment). There is deliberately no ``attention_mask``: see the module
        docstring. Each sample's first label is ``-100``.
    """
    if not rows:
        raise ValueError("cannot collate an empty batch")
    seq_lens: list[list[int]] = []
    for r, row in enumerate(rows):
        if not row:
            raise ValueError(f"row {r} has no samples")
        seq_lens.append([_check_sample(s, f"row {r} sample {j}") for j, s in enumerate(row)])
    longest = max(sum(lens) for lens in seq_lens)
    if row_length is None:
        row_length = longest
    elif row_length < longest:
        raise ValueError(f"row_length {row_length} < longest row ({longest} tokens)")

    batch = len(rows)
    input_ids = torch.full((batch, row_length), pad_token_id, dtype=torch.long)
    labels = torch.full((batch, row_length), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.empty((batch, row_length), dtype=torch.long)
    with_weights = any(s.get("weights") is not None for row in rows for s in row)
    weights = torch.zeros((batch, row_length), dtype=torch.float32) if with_weights else None
    for b, (row, lens) in enumerate(zip(rows, seq_lens)):
        start = 0
        for s, n in zip(row, lens):
            end = start + n
            input_ids[b, start:end] = torch.tensor(s["input_ids"], dtype=torch.long)
            labels[b, start:end] = torch.tensor(s["labels"], dtype=torch.long)
            # The previous sample's last token must not learn to predict this sample's first one.
            labels[b, start] = IGNORE_INDEX
            position_ids[b, start:end] = torch.arange(n)
            if weights is not None:
                w = s.get("weights")
                weights[b, start:end] = 1.0 if w is None else torch.tensor(w, dtype=torch.float32)
            start = end
        if start < row_length:  # the padding is a sequence of its own
            position_ids[b, start:] = torch.arange(row_length - start)

    out: dict[str, Any] = {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "seq_lens": seq_lens,
        **varlen_fields(position_ids),
    }
    if weights is not None:
        out["weights"] = weights
    return out


VARLEN_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def varlen_fields(position_ids: torch.Tensor) -> dict[str, Any]:
    """flash-attention's ``cu_seq_lens_*`` / ``max_length_*`` for packed rows.

    A sequence starts wherever the positions restart at 0 (each sample, and a row's padding).
    """
    flat = position_ids.reshape(-1)
    starts = torch.nonzero(flat == 0).flatten().to(torch.int32)
    cu = torch.cat([starts, torch.tensor([flat.numel()], dtype=torch.int32)])
    longest = int((cu[1:] - cu[:-1]).max())
    return dict(zip(VARLEN_KEYS, (cu, cu, longest, longest)))


def add_pixel_values(
    batch: dict[str, Any],
    samples: Sequence[Sample],
    image_processor: Any,
    *,
    allow_remote: bool = False,
) -> dict[str, Any]:
    """Add ``pixel_values`` for the images of ``samples`` (a vision-language batch).

    ``samples`` are in batch order (padded: one per row; packed: row by row, left to right), so
    the images line up with the image tokens in the flattened batch, which is the order a LLaVA
    model scatters image features in. Image tokens already carry no loss (see ``data/images``).
    """
    from tunesmith.data.images import pixel_values

    refs = [r for s in samples for r in (s.get("images") or [])]
    if refs:
        batch["pixel_values"] = pixel_values(
            refs, image_processor, where="training batch", allow_remote=allow_remote
        )
    return batch


def count_trained_tokens(batch: Mapping[str, Any]) -> int:
    """Number of positions whose *next* label is trained (the causal shift).

    Matches the token count of ``tunesmith.train.losses.token_ce_sum`` for the same ``labels``,
    padded or packed (packed rows never count a cross-sample prediction, see module docstring).
    """
    labels = batch["labels"]
    return int((labels[..., 1:] != IGNORE_INDEX).sum())


def _is_flash(attn_implementation: str) -> bool:
    # Covers "flash_attention_2", "flash_attention_3" and hub kernels such as "…/flash-attn".
    return "flash" in attn_implementation.replace("-", "_")


def model_inputs(batch: Mapping[str, Any], attn_implementation: str) -> dict[str, Any]:
    """The exact kwargs for ``model(**model_inputs(batch, impl))``; labels/weights stay out.

    * Padded batch: ``input_ids``, ``attention_mask``, ``use_cache=False`` (any backend).
    * Packed batch, sdpa / eager / flex_attention: ``input_ids``, ``position_ids``,
      ``use_cache=False`` and no ``attention_mask`` -- the block-diagonal mask is derived from
      the position ids.
    * Packed batch, flash-attention: the above plus ``cu_seq_lens_q``, ``cu_seq_lens_k``,
      ``max_length_q``, ``max_length_k`` (needed for batch > 1; harmless for batch 1).
    * Either, with images: ``pixel_values`` too.

    Raises:
        ValueError: A packed batch with a backend not known to isolate packed sequences.
    """
    extra = {"pixel_values": batch["pixel_values"]} if "pixel_values" in batch else {}
    if "position_ids" not in batch:
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "use_cache": False,
            **extra,
        }
    kwargs: dict[str, Any] = {
        **extra,
        "input_ids": batch["input_ids"],
        "position_ids": batch["position_ids"],
        "use_cache": False,
    }
    if _is_flash(attn_implementation):
        kwargs.update({k: batch[k] for k in FLASH_KWARGS})
    elif attn_implementation not in MASK_BACKENDS:
        raise ValueError(
            f"packed batches need attention isolation; {attn_implementation!r} is not one of "
            f"{', '.join(MASK_BACKENDS)} or flash-attention; disable packing or change the backend"
        )
    return kwargs
