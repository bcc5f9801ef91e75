"""Epoch batches: length grouping, static packed rows, sharding across processes."""

from __future__ import annotations

import random
from typing import Any

import torch

from tunesmith.train.batches import make_batches


def corpus(n: int = 300, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = rng.choice([rng.randint(4, 20), rng.randint(60, 120)])
        ids = [5 + (i + j) % 50 for j in range(length)]
        out.append({"input_ids": ids, "labels": ids, "id": i})
    return out


def padded(batches: list[dict[str, Any]]) -> int:
    return sum(int((b["attention_mask"] == 0).sum()) for b in batches)


def rows_of(batches: list[dict[str, Any]]) -> list[tuple[int, ...]]:
    """Each trained sample as its token tuple, batch by batch (padding removed).

    A process with nothing left in the last global batch gets a copy of a sample with no labels
    (so every process still steps); it adds no loss and is left out here.
    """
    out = []
    for b in batches:
        for row, mask, labels in zip(b["input_ids"], b["attention_mask"], b["labels"]):
            if (labels != -100).any():
                out.append(tuple(row[mask.bool()].tolist()))
    return out


def test_grouping_keeps_every_sample_and_cuts_padding() -> None:
    data = corpus()
    kw: dict[str, Any] = {"batch_size": 8, "max_length": 128, "packing": False, "pad_token_id": 0}
    plain = make_batches(data, seed=3, **kw)
    grouped = make_batches(data, seed=3, group_by_length=True, **kw)
    assert sorted(rows_of(plain)) == sorted(rows_of(grouped))
    assert padded(grouped) < 0.25 * padded(plain)
    assert rows_of(grouped) == rows_of(make_batches(data, seed=3, group_by_length=True, **kw))
    assert rows_of(grouped) != rows_of(make_batches(data, seed=4, group_by_length=True, **kw))
    # The order stays random: batch lengths do not simply descend through the epoch.
    longest = [int(b["attention_mask"].sum(1).max()) for b in grouped]
    assert longest != sorted(longest, reverse=True)


def test_grouped_shards_of_two_processes_are_the_one_process_batches() -> None:
    data = corpus(101)
    kw: dict[str, Any] = {"max_length": 128, "packing": False, "pad_token_id": 0, "seed": 1}
    one = make_batches(data, batch_size=4, group_by_length=True, **kw)
    shards = [
        make_batches(data, batch_size=2, group_by_length=True, num_processes=2, rank=r, **kw)
        for r in (0, 1)
    ]
    assert len(shards[0]) == len(one)
    for whole, a, b in zip(one, *shards):
        assert sorted(rows_of([whole])) == sorted(rows_of([a]) + rows_of([b]))


def test_static_rows_pad_every_packed_row_to_max_length() -> None:
    data = corpus(40)
    kw: dict[str, Any] = {"batch_size": 4, "max_length": 128, "packing": True, "pad_token_id": 0}
    free = make_batches(data, seed=0, **kw)
    static = make_batches(data, seed=0, static_rows=True, **kw)
    assert {tuple(b["input_ids"].shape[1:]) for b in static} == {(128,)}
    assert len({b["input_ids"].shape[1] for b in free}) >= 1
    for f, s in zip(free, static):
        n = f["input_ids"].shape[1]
        assert torch.equal(s["input_ids"][:, :n], f["input_ids"])
        assert torch.equal(s["labels"][:, :n], f["labels"])
        assert (s["labels"][:, n:] == -100).all()
        assert f["seq_lens"] == s["seq_lens"]


def test_split_rows_cuts_whole_rows_and_keeps_everything() -> None:
    from tunesmith.train.batches import split_rows

    (batch,) = make_batches(
        corpus(40), batch_size=8, max_length=128, packing=True, pad_token_id=0, seed=0
    )[:1]
    rows, length = batch["input_ids"].shape
    assert rows == 8
    parts = split_rows(batch, 2 * length + 5)  # room for two rows per pass
    assert [p["input_ids"].shape[0] for p in parts] == [2, 2, 2, 2]
    from tunesmith.data.collate import VARLEN_KEYS, varlen_fields

    assert all(  # the flat sequence bounds are those of each pass's own rows
        torch.equal(torch.as_tensor(p[k]), torch.as_tensor(varlen_fields(p["position_ids"])[k]))
        for p in parts
        for k in VARLEN_KEYS
    )
    assert parts[0]["cu_seq_lens_q"][-1] == 2 * length
    for key, value in batch.items():
        if key in VARLEN_KEYS:
            continue
        if isinstance(value, torch.Tensor):
            assert torch.equal(torch.cat([p[key] for p in parts]), value), key
        elif isinstance(value, list):
            assert [x for p in parts for x in p[key]] == value, key
    assert split_rows(batch, None) == [batch]
    assert split_rows(batch, 10**6) == [batch]
    assert len(split_rows(batch, 1)) == rows  # a pass is never less than one row
    with_images = {**batch, "pixel_values": torch.zeros(3, 3)}  # images do not follow rows
    assert len(split_rows(with_images, length)) == 1


def test_passes_train_exactly_what_the_whole_batch_trains(fp32_accelerator: Any) -> None:
    """One step with the micro-batch split into 1-row passes equals the unsplit step."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tunesmith.train.loop import resolve_pass_tokens, train_step

    def step(pass_tokens: int | None) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, use_cache=False,
        )  # fmt: skip
        model = LlamaForCausalLM(config)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)  # weight change = -gradient
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        batches = make_batches(
            corpus(30), batch_size=4, max_length=128, packing=True, pad_token_id=0, seed=0
        )
        train_step(
            model, opt, sched, fp32_accelerator, batches[:2], attn_implementation="sdpa",
            max_grad_norm=None, ce_impl="chunked", pass_tokens=pass_tokens,
        )  # fmt: skip
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    whole, split = step(None), step(1)
    assert max(float((whole[n] - split[n]).abs().max()) for n in whole) <= 1e-6
    assert resolve_pass_tokens("auto", torch.device("cpu")) == 2048
    assert resolve_pass_tokens("auto", torch.device("cuda")) is None
    assert resolve_pass_tokens(512, torch.device("cuda")) == 512
    assert resolve_pass_tokens(None, torch.device("cpu")) is None


def test_vlm_batches_group_by_length_as_text_batches_do() -> None:
    from tunesmith.train.recipes.vlm import VLMBatches

    # Lengths 1..8, two per batch, one window (64 units): sorted longest first, then the batches
    # shuffled, so each batch holds two neighbours in length.
    samples = [{"input_ids": [1] * n, "labels": [1] * n} for n in range(1, 9)]
    kw = {"batch_size": 2, "max_length": 16, "packing": False, "pad_token_id": 0}
    vlm = VLMBatches(samples, image_processor=None, seed=5, group_by_length=True, **kw)
    pairs = sorted(sorted(len(samples[u[0]]["input_ids"]) for u in g) for g in vlm.groups)
    assert pairs == [[1, 2], [3, 4], [5, 6], [7, 8]]
    text = make_batches(samples, seed=5, group_by_length=True, **kw)  # the same order
    assert [[len(samples[u[0]]["input_ids"]) for u in g] for g in vlm.groups] == [
        [int(n) for n in b["attention_mask"].sum(1)] for b in text
    ]


def test_pair_batches_are_static_only_under_low_precision_on_cpu(tiny_llama: Any) -> None:
    """bf16 on CPU rounds pair lengths up to STATIC_MULTIPLE; the pads leave the log-probs."""
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM

    from tunesmith.train.batches import STATIC_MULTIPLE, pair_batcher
    from tunesmith.train.losses import sequence_logps

    pairs = [
        {"prompt": [5, 6, 7 + i], "chosen": [8] * (i + 1), "chosen_labels": [8] * (i + 1),
         "rejected": [9, 10], "rejected_labels": [9, 10]}
        for i in range(6)
    ]  # fmt: skip
    cfg = SimpleNamespace(train=SimpleNamespace(batch_size=3))

    def batches(precision: str) -> list[dict[str, Any]]:
        acc = SimpleNamespace(
            device=torch.device("cpu"), mixed_precision=precision, num_processes=1,
            process_index=0,
        )  # fmt: skip
        return pair_batcher(cfg, 0, acc)(pairs, 0)  # type: ignore[arg-type]

    free, static = batches("no"), batches("bf16")
    assert {b["input_ids"].shape[1] for b in free} <= set(range(4, 10))
    assert {b["input_ids"].shape[1] for b in static} == {STATIC_MULTIPLE}
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama)).eval()
    with torch.no_grad():
        for f, s in zip(free, static):
            logps = [
                sequence_logps(model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
                               .logits, b["labels"])[0]
                for b in (f, s)
            ]  # fmt: skip
            torch.testing.assert_close(logps[0], logps[1], rtol=0, atol=1e-5)
