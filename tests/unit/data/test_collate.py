"""Padded and packed collation: exact tensors on hand-written samples, model kwargs per backend."""

from __future__ import annotations

import re

import pytest
import torch

from tunesmith.data.collate import (
    collate_packed,
    collate_padded,
    count_trained_tokens,
    model_inputs,
)
from tunesmith.train.losses import token_ce_sum

A = {"input_ids": [11, 12, 13], "labels": [-100, 12, 13], "weights": None}
B = {"input_ids": [21, 22], "labels": [21, 22], "weights": [0.5, 2.0]}  # first token labelled
C = {"input_ids": [31, 32, 33, 34], "labels": [-100, -100, 33, 34]}  # no "weights" key at all


def _t(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


def test_padded_exact() -> None:
    batch = collate_padded([A, B], pad_token_id=0)
    assert set(batch) == {"input_ids", "labels", "attention_mask", "weights"}
    assert torch.equal(batch["input_ids"], _t([[11, 12, 13], [21, 22, 0]]))
    assert torch.equal(batch["labels"], _t([[-100, 12, 13], [21, 22, -100]]))
    assert torch.equal(batch["attention_mask"], _t([[1, 1, 1], [1, 1, 0]]))
    assert batch["weights"].dtype == torch.float32
    assert torch.equal(batch["weights"], torch.tensor([[1.0, 1.0, 1.0], [0.5, 2.0, 0.0]]))


def test_padded_multiple_of_and_no_weights() -> None:
    batch = collate_padded([A, C], pad_token_id=7, pad_to_multiple_of=8)
    assert "weights" not in batch
    assert torch.equal(batch["input_ids"], _t([[11, 12, 13] + [7] * 5, [31, 32, 33, 34] + [7] * 4]))
    assert torch.equal(batch["labels"][0], _t([[-100, 12, 13] + [-100] * 5])[0])
    assert torch.equal(batch["attention_mask"].sum(1), torch.tensor([3, 4]))


def test_packed_exact() -> None:
    batch = collate_packed([[A, B], [C]], pad_token_id=0)
    assert "attention_mask" not in batch
    assert torch.equal(batch["input_ids"], _t([[11, 12, 13, 21, 22], [31, 32, 33, 34, 0]]))
    # B's first label (21) is dropped: A's last token must not learn to predict it.
    assert torch.equal(batch["labels"], _t([[-100, 12, 13, -100, 22], [-100, -100, 33, 34, -100]]))
    assert torch.equal(batch["position_ids"], _t([[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]))
    assert torch.equal(
        batch["weights"], torch.tensor([[1.0, 1.0, 1.0, 0.5, 2.0], [1.0, 1.0, 1.0, 1.0, 0.0]])
    )
    assert batch["seq_lens"] == [[3, 2], [4]]
    # Segments over the flattened batch: 3, 2 | 4, pad 1.
    assert batch["cu_seq_lens_q"].dtype == torch.int32
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 5, 9, 10]
    assert batch["cu_seq_lens_k"].tolist() == [0, 3, 5, 9, 10]
    assert batch["max_length_q"] == batch["max_length_k"] == 4


def test_packed_fixed_row_length_pads_are_their_own_sequence() -> None:
    batch = collate_packed([[A, B], [C]], pad_token_id=0, row_length=7)
    assert torch.equal(batch["position_ids"], _t([[0, 1, 2, 0, 1, 0, 1], [0, 1, 2, 3, 0, 1, 2]]))
    assert torch.equal(batch["input_ids"][:, 5:], _t([[0, 0], [0, 0]]))
    assert torch.equal(batch["labels"][0, 5:], _t([[-100, -100]])[0])
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 5, 7, 11, 14]
    assert batch["max_length_q"] == 4


def test_packed_first_sample_first_label_and_no_weights() -> None:
    batch = collate_packed([[B, A]], pad_token_id=0)
    assert torch.equal(batch["labels"], _t([[-100, 22, -100, 12, 13]]))
    assert torch.equal(batch["position_ids"], _t([[0, 1, 0, 1, 2]]))
    assert batch["cu_seq_lens_q"].tolist() == [0, 2, 5]
    assert "weights" not in collate_packed([[A], [C]], pad_token_id=0)


def test_count_trained_tokens_matches_token_ce_sum() -> None:
    torch.manual_seed(0)
    for batch, expected in [
        (collate_packed([[A, B], [C]], pad_token_id=0), 5),
        (collate_padded([A, B, C], pad_token_id=0), 2 + 1 + 2),
    ]:
        logits = torch.randn(*batch["input_ids"].shape, 50)
        _, n_tokens = token_ce_sum(logits, batch["labels"])
        assert count_trained_tokens(batch) == int(n_tokens) == expected


def test_model_inputs_per_backend() -> None:
    padded = collate_padded([A, B], pad_token_id=0)
    packed = collate_packed([[A, B], [C]], pad_token_id=0)
    for impl in ("sdpa", "eager", "flash_attention_2"):
        kw = model_inputs(padded, impl)
        assert set(kw) == {"input_ids", "attention_mask", "use_cache"} and kw["use_cache"] is False
    for impl in ("sdpa", "eager", "flex_attention"):
        kw = model_inputs(packed, impl)
        assert set(kw) == {"input_ids", "position_ids", "use_cache"} and kw["use_cache"] is False
        assert kw["position_ids"] is packed["position_ids"]
    flash = {"cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k"}
    for impl in ("flash_attention_2", "flash_attention_3", "kernels-community/flash-attn2"):
        kw = model_inputs(packed, impl)
        assert set(kw) == {"input_ids", "position_ids", "use_cache"} | flash
        assert kw["cu_seq_lens_q"] is packed["cu_seq_lens_q"]
    with pytest.raises(ValueError, match=re.escape("'paged|sdpa' is not one of")):
        model_inputs(packed, "paged|sdpa")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: collate_padded([], 0), "empty batch"),
        (lambda: collate_packed([], 0), "empty batch"),
        (lambda: collate_packed([[A], []], 0), "row 1 has no samples"),
        (lambda: collate_padded([{"input_ids": [], "labels": []}], 0), "sample 0 is empty"),
        (
            lambda: collate_padded([A, {"input_ids": [1, 2], "labels": [1]}], 0),
            "sample 1: 1 labels",
        ),
        (
            lambda: collate_packed([[{"input_ids": [1], "labels": [1], "weights": [1.0, 2.0]}]], 0),
            "row 0 sample 0: 2 weights",
        ),
        (lambda: collate_packed([[A, B]], 0, row_length=4), "row_length 4 < longest row"),
    ],
)
def test_invalid_input(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]
