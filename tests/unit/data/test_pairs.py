"""Preference pairs and KTO examples through the shared renderer: prompt once, labels on replies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tunesmith.config.schema import DataConfig
from tunesmith.data.engine import build_renderer
from tunesmith.data.pairs import (
    IGNORE_INDEX,
    collate_kto,
    collate_pairs,
    make_pair_batches,
    pair_renderer,
    prepare_pairs,
    render_kto,
    render_pairs,
    sequence,
)
from tunesmith.data.render import Renderer, SkipSample
from tunesmith.data.types import Conversation, KTOExample, Message, PreferencePair
from tunesmith.errors import DataError

INFO = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "llamafactory"
INFO = INFO / "dataset_info.json"


@pytest.fixture(scope="module")
def tokenizer(tiny_qwen2: Path) -> Any:
    from tunesmith.model.loader import load_tokenizer

    return load_tokenizer(str(tiny_qwen2))


def renderer(tokenizer: Any, **data: Any) -> Renderer:
    cfg = DataConfig(datasets=[{"path": "x"}], **data)
    return build_renderer(tokenizer, cfg)


def pair(prompt: str = "What is 2 + 2?", chosen: str = "4", rejected: str = "5") -> PreferencePair:
    history = [
        Message("user", "Hi"),
        Message("assistant", "Hello! Ask me anything."),
        Message("user", prompt),
    ]
    return PreferencePair(
        Conversation(history), Message("assistant", chosen), Message("assistant", rejected)
    )


def trained_text(tokenizer: Any, labels: list[int]) -> str:
    return tokenizer.decode([t for t in labels if t != IGNORE_INDEX], skip_special_tokens=False)


def test_pair_is_the_two_renderings_with_one_shared_prompt(tokenizer: Any) -> None:
    r = renderer(tokenizer)
    p = pair()
    [(sample, cut)] = render_pairs(pair_renderer(r), [p], ["x:1"], max_length=512)
    assert not cut
    for side, reply in (("chosen", "4"), ("rejected", "5")):
        conv = Conversation([*p.prompt.messages, Message("assistant", reply)])
        conv.messages[1].loss = False  # the history turn is context
        whole = r.render(conv)
        seq = sequence(sample, side)
        assert seq["input_ids"] == whole.input_ids
        assert seq["labels"] == whole.labels
        assert trained_text(tokenizer, seq["labels"]) == reply + "<|im_end|>"
    prompt = tokenizer.decode(sample["prompt"], skip_special_tokens=False)
    assert prompt.endswith("What is 2 + 2?<|im_end|>\n<|im_start|>assistant\n")
    assert "Hello! Ask me anything." in prompt  # history is in the prompt, never trained
    assert all(
        t == IGNORE_INDEX for t in sequence(sample, "chosen")["labels"][: len(sample["prompt"])]
    )


def test_length_policy_drop_and_truncate(tokenizer: Any) -> None:
    long_reply = "one two three four five six seven eight nine ten " * 6
    p = pair(prompt="word " * 60, chosen=long_reply, rejected="short")
    pr = pair_renderer(renderer(tokenizer))
    [skip] = render_pairs(pr, [p], ["x:1"], max_length=64)
    assert isinstance(skip, SkipSample) and skip.reason == "longer than max_length"
    [(sample, cut)] = render_pairs(pr, [p], ["x:1"], max_length=64, truncation="truncate_left")
    assert cut
    assert len(sample["prompt"]) == 32  # half of max_length: the longer reply needs the rest
    for side in ("chosen", "rejected"):
        assert len(sequence(sample, side)["input_ids"]) <= 64
    # The prompt lost its start, never its end (the header the replies attach to).
    assert tokenizer.decode(sample["prompt"]).endswith("<|im_start|>assistant\n")
    assert trained_text(tokenizer, sample["rejected_labels"]) == "short<|im_end|>"  # kept whole
    assert not trained_text(tokenizer, sample["chosen_labels"]).endswith("<|im_end|>")  # cut


def test_identical_replies_are_skipped_by_reason(tokenizer: Any) -> None:
    pr = pair_renderer(renderer(tokenizer))
    [skip] = render_pairs(pr, [pair(chosen="4", rejected="4")], ["x:1"], max_length=128)
    assert isinstance(skip, SkipSample) and skip.reason == "chosen and rejected are identical"


def test_kto_example_and_its_kl_partner(tmp_path: Path, tokenizer: Any) -> None:
    rows = [
        {"prompt": f"Question {i}?", "completion": f"Answer {i}.", "label": i % 2 == 0}
        for i in range(3)
    ]
    path = tmp_path / "kto.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(datasets=[{"path": str(path), "shuffle": False}], seed=0)
    data = prepare_pairs(cfg, renderer(tokenizer), stage="kto")
    assert len(data.train) == 3
    for i, s in enumerate(data.train):
        partner = data.train[(i + 1) % 3]
        assert s["kl_completion"] == partner["completion"]
        answer = trained_text(tokenizer, s["completion_labels"])
        assert answer.startswith("Answer ") and answer.endswith(".<|im_end|>")
        kl = tokenizer.decode(sequence(s, "kl_completion")["input_ids"], skip_special_tokens=False)
        number = tokenizer.decode(s["prompt"]).split("Question ")[1][0]
        assert f"Question {number}?" in kl and partner_answer(tokenizer, partner) in kl
    assert sorted(s["desirable"] for s in data.train) == [False, True, True]


def partner_answer(tokenizer: Any, sample: dict[str, Any]) -> str:
    return tokenizer.decode(sample["completion"], skip_special_tokens=False).split("<|im_end|>")[0]


def test_shared_demo_data_reads_as_pairs_and_kto(tokenizer: Any) -> None:
    r = renderer(tokenizer, max_length=128, truncation="truncate_left")
    for stage, name, n in (("dpo", "dpo_en_demo", 300), ("kto", "kto_en_demo", 300)):
        cfg = DataConfig(
            datasets=[{"from_info": str(INFO), "name": name}],
            max_length=128,
            truncation="truncate_left",
        )
        data = prepare_pairs(cfg, r, stage=stage)
        src = data.report.sources[0]
        assert (src.rows_read, src.rows_kept, src.samples_in_mix) == (n, n, n)
        assert max(data.report.lengths) <= 128
    # Pairs feed KTO too: one desirable and one undesirable example per pair.
    cfg = DataConfig(
        datasets=[{"from_info": str(INFO), "name": "dpo_en_demo", "max_samples": 10}],
        max_length=128,
        truncation="truncate_left",
    )
    data = prepare_pairs(cfg, r, stage="kto")
    assert len(data.train) == 20
    assert sum(s["desirable"] for s in data.train) == 10


def test_skips_are_counted_in_the_report(tmp_path: Path, tokenizer: Any) -> None:
    rows = [
        {"prompt": "Short?", "chosen": "Yes.", "rejected": "No."},
        {"prompt": "Same?", "chosen": "Same.", "rejected": "Same."},
        {"prompt": "Long " * 80, "chosen": "Yes.", "rejected": "No."},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(
        datasets=[{"path": str(path)}], max_length=48, truncation="drop", allow_drop=True
    )
    data = prepare_pairs(cfg, renderer(tokenizer, max_length=48), stage="dpo")
    src = data.report.sources[0]
    assert len(data.train) == 1
    assert dict(src.skipped) == {
        "chosen and rejected are identical": 1,
        "longer than max_length": 1,
    }
    assert "longer than max_length — 1" in data.report.markdown()


def test_stage_and_data_must_match(tmp_path: Path, tokenizer: Any) -> None:
    sft = tmp_path / "sft.jsonl"
    sft.write_text(json.dumps({"instruction": "Hi", "output": "Hello"}) + "\n")
    kto = tmp_path / "kto.jsonl"
    kto.write_text(json.dumps({"prompt": "Hi", "completion": "Hello", "label": True}) + "\n")
    r = renderer(tokenizer)
    with pytest.raises(DataError, match=r"chat conversation .* cannot train stage 'dpo'"):
        prepare_pairs(DataConfig(datasets=[{"path": str(sft)}]), r, stage="dpo")
    with pytest.raises(DataError, match=r"KTO example .* cannot train stage 'simpo'"):
        prepare_pairs(DataConfig(datasets=[{"path": str(kto)}]), r, stage="simpo")


def test_collate_pairs_layout(tokenizer: Any) -> None:
    pr = pair_renderer(renderer(tokenizer))
    results = render_pairs(
        pr, [pair(), pair("What is 3 + 3?", "6", "7 or so")], ["a", "b"], max_length=256
    )
    samples = [s for s, _ in results]
    batch = collate_pairs(samples, tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 4  # chosen_1, chosen_2, rejected_1, rejected_2
    for row, (s, side) in enumerate(
        [
            (samples[0], "chosen"),
            (samples[1], "chosen"),
            (samples[0], "rejected"),
            (samples[1], "rejected"),
        ]
    ):
        seq = sequence(s, side)
        n = len(seq["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == seq["input_ids"]
        assert batch["labels"][row, :n].tolist() == seq["labels"]
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        assert int(batch["attention_mask"][row].sum()) == n
    assert batch["example_weight"].tolist() == [1.0, 1.0]
    assert "ref_chosen" not in batch
    samples = [{**s, "ref_chosen": -1.5, "ref_rejected": -2.5} for s in samples]
    batch = collate_pairs(samples, tokenizer.pad_token_id)
    assert batch["ref_chosen"].tolist() == [-1.5, -1.5]


def fake_pairs(n: int) -> list[dict[str, Any]]:
    return [
        {"prompt": [1, 2, i], "chosen": [i, 3], "chosen_labels": [i, 3], "rejected": [i, 4],
         "rejected_labels": [i, 4]}
        for i in range(n)
    ]  # fmt: skip


def test_rank_shards_are_the_single_process_batch() -> None:
    samples = fake_pairs(10)  # all the same length: no padding differences between batches
    one = make_pair_batches(samples, batch_size=4, pad_token_id=0, seed=3)
    ranks = [
        make_pair_batches(samples, batch_size=2, pad_token_id=0, seed=3, num_processes=2, rank=r)
        for r in (0, 1)
    ]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == 3
    for b, whole in enumerate(one):
        shards = ranks[0][b]["input_ids"].tolist() + ranks[1][b]["input_ids"].tolist()
        assert sorted(whole["input_ids"].tolist()) == sorted(shards)
    # 10 samples, global batch 4: the last group has 2, one per rank; no filler needed.
    assert [r[-1]["example_weight"].tolist() for r in ranks] == [[1.0], [1.0]]


def test_a_rank_without_samples_gets_a_weightless_filler() -> None:
    batches = make_pair_batches(
        fake_pairs(1), batch_size=1, pad_token_id=0, seed=0, num_processes=2, rank=1
    )
    assert [b["example_weight"].tolist() for b in batches] == [[0.0]]


def test_collate_kto_layout() -> None:
    s = {"prompt": [1, 2], "completion": [5, 6], "completion_labels": [5, 6], "desirable": False,
         "kl_completion": [7], "kl_completion_labels": [7]}  # fmt: skip
    batch = collate_kto([s], 0)
    assert batch["input_ids"].tolist() == [[1, 2, 5, 6]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 5, 6]]
    assert batch["kl_input_ids"].tolist() == [[1, 2, 7]]
    assert batch["desirable"].tolist() == [False]
    assert batch["desirable"].dtype == torch.bool


def test_render_kto_trains_only_the_last_reply(tokenizer: Any) -> None:
    conv = Conversation(
        [
            Message("user", "A?"),
            Message("assistant", "first"),
            Message("user", "B?"),
            Message("assistant", "second"),
        ]
    )
    [(sample, _)] = render_kto(
        pair_renderer(renderer(tokenizer)), [KTOExample(conv, True)], ["x"], max_length=128
    )
    assert trained_text(tokenizer, sample["completion_labels"]) == "second<|im_end|>"
    assert "first" in tokenizer.decode(sample["prompt"])


def test_pad_to_multiple_rounds_pair_and_kto_lengths_and_adds_only_pads() -> None:
    pairs = fake_pairs(3)
    free = collate_pairs(pairs, 0)
    static = collate_pairs(pairs, 0, pad_to_multiple_of=64)
    n = free["input_ids"].shape[1]
    assert static["input_ids"].shape == (6, 64)
    assert torch.equal(static["input_ids"][:, :n], free["input_ids"])
    assert torch.equal(static["labels"][:, :n], free["labels"])
    assert (static["labels"][:, n:] == IGNORE_INDEX).all()
    assert int(static["attention_mask"].sum()) == int(free["attention_mask"].sum())
    s = {"prompt": [1, 2], "completion": [5, 6], "completion_labels": [5, 6], "desirable": True,
         "kl_completion": [7], "kl_completion_labels": [7]}  # fmt: skip
    kto = collate_kto([s], 0, pad_to_multiple_of=64)
    assert kto["input_ids"].shape == kto["kl_input_ids"].shape == (1, 64)
    assert kto["kl_input_ids"][0, :3].tolist() == [1, 2, 7]
    batches = make_pair_batches(pairs, batch_size=2, pad_token_id=0, seed=0, pad_to_multiple_of=64)
    assert {b["input_ids"].shape[1] for b in batches} == {64}
