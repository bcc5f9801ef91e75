"""Packed batches give exactly the logits and losses of running each sample alone.

Tiny random-init Llama and Qwen2 models (fp32, CPU) are built in-test. For sdpa, eager and
tunesmith's per-sample SDPA, and batch sizes 1 and 3, the packed forward built by
``collate_packed`` + ``model_inputs`` must reproduce every sample's standalone logits and summed
cross-entropy. Negative controls show that a 2-D
attention mask or a KV cache (``use_cache`` left at its default) makes packed samples leak into
each other in transformers 5.24, which is why ``model_inputs`` looks the way it does. The
flash-attention varlen kwargs are checked against transformers' own derivation and plumbed through
a pure-torch varlen attention registered as a custom backend (flash-attn itself needs a GPU).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers import (
    AttentionInterface,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

from tunesmith.data.collate import (
    collate_packed,
    collate_padded,
    count_trained_tokens,
    model_inputs,
)
from tunesmith.data.packing import pack_best_fit_decreasing, pack_samples
from tunesmith.model.attention import SDPA_VARLEN, register
from tunesmith.train.losses import token_ce_sum

register()  # tunesmith's per-sample SDPA (what packed training uses on SDPA)

torch.set_num_threads(2)

VOCAB = 128
MAX_LENGTH = 20
# Packs into 8 rows filled 19, 20, 17 | 20, 18, 13 | 11, 10: every batch of 3 needs row padding.
LENGTHS = [1, 18, 11, 1, 3, 17, 10, 13, 4, 17, 4, 14, 15]
TOL = 1e-5  # max abs logit difference
CE_RTOL = 1e-6  # summed CE over many tokens: float32 summation order differs, so relative
ARCHS = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
VARLEN_REF = "tunesmith_varlen_reference"


def _samples() -> list[dict]:
    """Mixed samples: prompt-masked, fully trained (first label set), with and without weights."""
    g = torch.Generator().manual_seed(1234)
    out = []
    for i, n in enumerate(LENGTHS):
        ids = torch.randint(1, VOCAB, (n,), generator=g).tolist()
        # Even: chat-like, the prompt half is not trained. Odd: train_on_prompt / pre-training
        # text, even the first token is labelled (collate_packed must drop it).
        labels = [-100] * (n // 2) + ids[n // 2 :] if i % 2 == 0 else list(ids)
        weights = None
        if i % 3 == 0:
            weights = (0.5 + torch.rand(n, generator=g) * 1.5).tolist()
        out.append({"input_ids": ids, "labels": labels, "weights": weights})
    return out


def _model(arch: str, attn_implementation: str) -> PreTrainedModel:
    config_cls, model_cls = ARCHS[arch]
    config = config_cls(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation=attn_implementation,
    )
    torch.manual_seed(0)
    model = model_cls(config).to(torch.float32).eval()
    assert model.config._attn_implementation == attn_implementation
    return model


def _weights_tensor(sample: dict) -> torch.Tensor | None:
    w = sample["weights"]
    return None if w is None else torch.tensor([w], dtype=torch.float32)


def _alone(model: PreTrainedModel, samples: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(logits [n, vocab], CE sum) of every sample run alone."""
    out = []
    with torch.no_grad():
        for s in samples:
            logits = model(input_ids=torch.tensor([s["input_ids"]]), use_cache=False).logits
            ce, _ = token_ce_sum(logits, torch.tensor([s["labels"]]), _weights_tensor(s))
            out.append((logits[0], ce))
    return out


def _rel(value: torch.Tensor, ref: torch.Tensor) -> float:
    return float((value - ref).abs() / ref.abs().clamp_min(1.0))


def _batches(samples: list[dict], batch_size: int) -> list[list[list[dict]]]:
    rows = pack_samples(samples, MAX_LENGTH)
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def _packed_diffs(
    model: PreTrainedModel,
    samples: list[dict],
    batch_size: int,
    attn_implementation: str,
    leak: str | None = None,
) -> tuple[float, float, list[float]]:
    """Packed vs. alone: max abs logit diff, max relative CE-sum diff, per-sample logit diffs.

    Per-sample diffs are in row order.

    ``leak`` reproduces a mistake for the negative controls: ``"mask"`` adds a 2-D attention mask
    of ones, ``"cache"`` drops ``use_cache=False`` (the config default, True, creates a cache).
    """
    ref = {id(s): r for s, r in zip(samples, _alone(model, samples))}
    logit_diffs: list[float] = []
    ce_diff = 0.0
    for rows in _batches(samples, batch_size):
        batch = collate_packed(rows, pad_token_id=0)
        kwargs = model_inputs(batch, attn_implementation)
        if leak == "mask":
            kwargs["attention_mask"] = torch.ones_like(batch["input_ids"])
        elif leak == "cache":
            del kwargs["use_cache"]
        with torch.no_grad():
            logits = model(**kwargs).logits
        weights = batch.get("weights")
        total_ce, total_n = token_ce_sum(logits, batch["labels"], weights)
        ref_total = torch.zeros(())
        for b, row in enumerate(rows):
            start = 0
            for s in row:
                end = start + len(s["input_ids"])
                ref_logits, ref_ce = ref[id(s)]
                logit_diffs.append(float((logits[b, start:end] - ref_logits).abs().max()))
                w = None if weights is None else weights[b : b + 1, start:end]
                ce, _ = token_ce_sum(
                    logits[b : b + 1, start:end], batch["labels"][b : b + 1, start:end], w
                )
                ce_diff = max(ce_diff, _rel(ce, ref_ce))
                ref_total = ref_total + ref_ce
                start = end
        # The whole-batch loss (shift across boundaries included) equals the sum of the parts.
        ce_diff = max(ce_diff, _rel(total_ce, ref_total))
        expected_n = sum(
            sum(1 for lab in s["labels"][1:] if lab != -100) for row in rows for s in row
        )
        assert int(total_n) == expected_n == count_trained_tokens(batch)
    return max(logit_diffs), ce_diff, logit_diffs


def test_samples_pack_into_several_uneven_rows() -> None:
    rows = pack_best_fit_decreasing(LENGTHS, MAX_LENGTH)
    fills = [sum(LENGTHS[i] for i in row) for row in rows]
    assert fills == [19, 20, 17, 20, 18, 13, 11, 10]
    assert max(len(r) for r in rows) == 3


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager", SDPA_VARLEN])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_packed_logits_and_loss_equal_unpacked(
    arch: str, attn_implementation: str, batch_size: int
) -> None:
    model = _model(arch, attn_implementation)
    logit_diff, ce_diff, _ = _packed_diffs(model, _samples(), batch_size, attn_implementation)
    assert logit_diff <= TOL
    assert ce_diff <= CE_RTOL


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
@pytest.mark.parametrize(
    "leak",
    [
        pytest.param("mask", id="2d-attention-mask-of-ones"),
        pytest.param("cache", id="use_cache-default"),
    ],
)
def test_negative_control_leaks(arch: str, attn_implementation: str, leak: str) -> None:
    """Without model_inputs' care, later samples of a row see the earlier ones."""
    model = _model(arch, attn_implementation)
    samples = _samples()
    _, _, diffs = _packed_diffs(model, samples, 3, attn_implementation, leak=leak)
    # Samples that open a row see nothing before them; every later one must be contaminated.
    firsts = {id(row[0]) for row in pack_samples(samples, MAX_LENGTH)}
    order = [s for rows in _batches(samples, 3) for row in rows for s in row]
    later = [d for s, d in zip(order, diffs) if id(s) not in firsts]
    assert later and min(later) > 1e-3
    assert max(d for s, d in zip(order, diffs) if id(s) in firsts) <= TOL


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager", SDPA_VARLEN])
def test_padded_batch_equals_unpacked(arch: str, attn_implementation: str) -> None:
    model = _model(arch, attn_implementation)
    samples = _samples()
    ref = _alone(model, samples)
    batch = collate_padded(samples, pad_token_id=0, pad_to_multiple_of=8)
    with torch.no_grad():
        logits = model(**model_inputs(batch, attn_implementation)).logits
    for b, (s, (ref_logits, ref_ce)) in enumerate(zip(samples, ref)):
        n = len(s["input_ids"])
        assert float((logits[b, :n] - ref_logits).abs().max()) <= TOL
        w = batch["weights"][b : b + 1, :n]
        ce, _ = token_ce_sum(logits[b : b + 1, :n], batch["labels"][b : b + 1, :n], w)
        assert _rel(ce, ref_ce) <= CE_RTOL
    total, n_tokens = token_ce_sum(logits, batch["labels"], batch["weights"])
    assert _rel(total, sum(ce for _, ce in ref)) <= CE_RTOL
    assert int(n_tokens) == count_trained_tokens(batch)


def _varlen_reference_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    cu_seq_lens_q: torch.Tensor | None = None,
    cu_seq_lens_k: torch.Tensor | None = None,
    max_length_q: int | None = None,
    max_length_k: int | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """What flash_attn_varlen_func computes: causal attention inside each cu_seq_lens segment."""
    assert attention_mask is None
    batch, heads, length, dim = query.shape
    if cu_seq_lens_q is None:  # unpacked call: one sequence per row
        cu_seq_lens_q = cu_seq_lens_k = torch.arange(0, batch * length + 1, length)
    assert torch.equal(cu_seq_lens_q, cu_seq_lens_k)
    rep = heads // key.shape[1]

    def flat(t: torch.Tensor) -> torch.Tensor:  # [b, h, l, d] -> [h, b*l, d]
        return t.transpose(0, 1).reshape(heads, batch * length, dim)

    q = flat(query)
    k, v = (flat(t.repeat_interleave(rep, dim=1)) for t in (key, value))
    out = torch.empty_like(q)
    bounds = cu_seq_lens_q.tolist()
    if max_length_q is not None:
        assert max_length_q == max(e - s for s, e in itertools.pairwise(bounds))
    for s, e in itertools.pairwise(bounds):
        out[:, s:e] = torch.nn.functional.scaled_dot_product_attention(
            q[:, s:e], k[:, s:e], v[:, s:e], is_causal=True, scale=scaling
        )
    return out.reshape(heads, batch, length, dim).permute(1, 2, 0, 3), None


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_flash_varlen_kwargs(arch: str) -> None:
    samples = _samples()
    for rows in _batches(samples, 3):
        batch = collate_packed(rows, pad_token_id=0)
        # Same segments transformers derives from the flattened position ids when it can.
        (cu_q, cu_k), (max_q, _) = prepare_fa_kwargs_from_position_ids(
            batch["position_ids"].reshape(1, -1)
        )
        assert batch["cu_seq_lens_q"].dtype == torch.int32
        assert torch.equal(batch["cu_seq_lens_q"], cu_q)
        assert torch.equal(batch["cu_seq_lens_k"], cu_k)
        assert batch["max_length_q"] == batch["max_length_k"] == int(max_q)

    # The kwargs reach the attention layer under these names and isolate the samples.
    AttentionInterface.register(VARLEN_REF, _varlen_reference_attention)
    model = _model(arch, VARLEN_REF)
    flash_kwargs = {
        k: v
        for k, v in model_inputs(collate_packed([[samples[0]]], 0), "flash_attention_2").items()
        if k.startswith(("cu_", "max_"))
    }
    assert sorted(flash_kwargs) == [
        "cu_seq_lens_k",
        "cu_seq_lens_q",
        "max_length_k",
        "max_length_q",
    ]
    logit_diff, ce_diff, _ = _packed_diffs(model, samples, 3, "flash_attention_2")
    assert logit_diff <= TOL
    assert ce_diff <= CE_RTOL
