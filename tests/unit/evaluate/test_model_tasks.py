"""Tasks on the built-in tiny model: log-likelihoods, perplexity and MC against direct math."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tunesmith.config.schema import DataConfig, MultipleChoiceSpec, PerplexitySpec
from tunesmith.evaluate.base import EvalContext
from tunesmith.evaluate.multiple_choice import MultipleChoice
from tunesmith.evaluate.perplexity import Perplexity

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def engine(qwen2_engine: Any) -> Any:
    return qwen2_engine


def direct_loglik(engine: Any, ids: list[int], n: int) -> float:
    with torch.no_grad():
        logits = engine.model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[t - 1, ids[t]] for t in range(len(ids) - n, len(ids))))


def test_loglik_equals_a_direct_forward_pass_in_any_batch(engine: Any) -> None:
    contexts: list[Any] = ["Hello there", [{"role": "user", "content": "Hi"}], "A longer context."]
    conts = [" world", "Hello!", " ok then"]
    one = EvalContext(engine, batch_size=1).loglik(contexts, conts)
    three = EvalContext(engine, batch_size=3).loglik(contexts, conts)
    ctx = EvalContext(engine)
    for (lp1, n1), (lp3, n3), c, s in zip(one, three, contexts, conts):
        ctx_ids, cont_ids = ctx.encode_pair(c, s)
        assert n1 == n3 == len(cont_ids) > 0
        assert lp1 == pytest.approx(direct_loglik(engine, ctx_ids + cont_ids, n1), abs=1e-4)
        assert lp3 == pytest.approx(lp1, abs=1e-4)  # right padding changes nothing
    # Messages are rendered with the chat template and its generation prompt.
    rendered = engine.render([{"role": "user", "content": "Hi"}])
    assert ctx.encode_pair(contexts[1], "Hello!")[0] == engine.encode(rendered, special=False)


def test_multiple_choice_on_a_real_model_by_construction(engine: Any, tmp_path: Path) -> None:
    questions = [
        {"question": f"Question {i}?", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "A"}
        for i in range(3)
    ]
    ctx = EvalContext(engine, batch_size=8)
    prompts = [
        [{"role": "user", "content": f"{q['question']}\nA. a\nB. b\nC. c\nD. d\nAnswer:"}]
        for q in questions
    ]
    best, worst = [], []
    for p in prompts:
        scores = [lp for lp, _ in ctx.loglik([p] * 4, ["A", "B", "C", "D"])]
        best.append("ABCD"[scores.index(max(scores))])
        worst.append("ABCD"[scores.index(min(scores))])
    for answers, want in ((best, 1.0), (worst, 0.0)):
        rows = [{**q, "answer": a} for q, a in zip(questions, answers)]
        data = tmp_path / f"mc{want}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        result = MultipleChoice(MultipleChoiceSpec(data=str(data))).run(ctx)
        assert result.metrics["accuracy"] == want


def test_perplexity_is_exp_of_the_training_token_loss(engine: Any, tmp_path: Path) -> None:
    from tunesmith.data.collate import collate_padded
    from tunesmith.data.engine import build_renderer, prepare
    from tunesmith.train.losses import token_ce_sum

    rows = [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} plus {i}?"},
                {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."},
            ]
        }
        for i in range(7)
    ]
    file = tmp_path / "val.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    spec = PerplexitySpec(datasets=[{"path": str(file)}])
    result = Perplexity(spec).run(EvalContext(engine, batch_size=3))

    data = DataConfig(datasets=[{"path": str(file)}], val_size=0)
    samples = prepare(data, build_renderer(engine.tokenizer, data), refuse=False).train
    batch = collate_padded(samples, engine.tokenizer.pad_token_id)
    with torch.no_grad():
        logits = engine.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
    total, n = token_ce_sum(logits, batch["labels"])
    mean = float(total / n)
    assert result.n == 7 and result.details["tokens"] == int(n) and result.details["skipped"] == {}
    assert result.metrics["loss"] == pytest.approx(mean, rel=1e-5)
    assert result.metrics["perplexity"] == pytest.approx(math.exp(mean), rel=1e-5)
    # Token-weighted: the mean over tokens, not over samples.
    assert sum(r["loss"] * r["tokens"] for r in result.rows) / int(n) == pytest.approx(mean)


def test_perplexity_without_a_run_needs_datasets(engine: Any) -> None:
    from tunesmith.errors import ConfigError

    with pytest.raises(ConfigError, match="has no validation split; give the task datasets"):
        Perplexity(PerplexitySpec()).run(EvalContext(engine))


def test_generate_is_batched_greedy_and_seeded(engine: Any) -> None:
    from tunesmith.infer.sampling import GenParams

    ctx = EvalContext(engine, batch_size=2)
    prompts: list[Any] = ["Hi", "Tell me a story", [{"role": "user", "content": "Hi"}]]
    greedy = ctx.generate(prompts, max_new_tokens=6)
    one_by_one = [
        engine.generate([[{"role": "user", "content": p}]], GenParams(max_new_tokens=6))[0]
        for p in ("Hi", "Tell me a story", "Hi")
    ]
    assert greedy == one_by_one  # a plain string is one user turn; batching changes nothing
    a = ctx.generate(prompts[:2], max_new_tokens=6, temperature=1.0, seed=3)
    b = ctx.generate(prompts[:2], max_new_tokens=6, temperature=1.0, seed=3)
    assert a == b
