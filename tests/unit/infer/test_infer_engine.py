"""The engine: batched and continuous decoding equal plain ``generate``; adapters, seeds, stops."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tunesmith.errors import ConfigError
from tunesmith.infer.batching import Scheduler
from tunesmith.infer.decode import Delta, Finished, Request
from tunesmith.infer.engine import Engine, GenParams

QUESTIONS = ["hi", "tell me a story about a cat please", "what is 2+2?", "name three colours"]
CONVS = [[{"role": "user", "content": q}] for q in QUESTIONS]
N = 12


@pytest.fixture(scope="module")
def engine(sharp_model_dir: Path) -> Engine:
    return Engine.load(str(sharp_model_dir))


@pytest.fixture(scope="module")
def multi(sharp_model_dir: Path, adapter_dirs: dict) -> Engine:
    named = {k: str(v) for k, v in adapter_dirs.items() if k != "dora"}
    return Engine.load(str(sharp_model_dir), adapters=named)


def hf_greedy(engine: Engine, conv: list[dict], n: int = N) -> list[int]:
    """Reference: transformers' own generate on one unpadded prompt."""
    ids = torch.tensor([engine.prompt_ids(conv)])
    out = engine.model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=n,
        do_sample=False,
        eos_token_id=engine.stop_ids,
        pad_token_id=engine.tokenizer.pad_token_id,
    )
    return out[0, ids.shape[1] :].tolist()


def answer_ids(engine: Engine, items: list[tuple[list[int], GenParams, Any]]) -> list[list[int]]:
    sched = Scheduler(engine.runner, max_batch=32)
    reqs = [Request(p, g, lambda ev: None, adapter=a) for p, g, a in items]
    for r in reqs:
        sched.add(r)
    while sched.busy:
        sched.step()
    return [r.answer for r in reqs]


def test_batched_greedy_equals_transformers_generate(engine: Engine) -> None:
    texts = engine.generate(CONVS, GenParams(max_new_tokens=N))
    refs = [hf_greedy(engine, c) for c in CONVS]
    assert texts == [engine.tokenizer.decode(r, skip_special_tokens=True).strip() for r in refs]
    assert len(set(texts)) == len(texts)  # different prompts, different answers
    assert all(len(set(r)) > 3 for r in refs)  # and not one repeated token


def test_requests_joining_and_leaving_a_running_batch_match_solo_answers(engine: Engine) -> None:
    solo = [hf_greedy(engine, c) for c in CONVS]
    prompts = [engine.prompt_ids(c) for c in CONVS]
    sched = Scheduler(engine.runner, max_batch=8)
    reqs = [Request(p, GenParams(max_new_tokens=N), lambda ev: None) for p in prompts]
    short = Request(prompts[0], GenParams(max_new_tokens=3), lambda ev: None)
    sched.add(reqs[0])
    sched.add(short)
    for _ in range(4):
        sched.step()
    assert short.finish_reason == "length" and short.answer == solo[0][:3]
    for r in reqs[1:]:  # join mid-flight, with longer prompts than the running rows
        sched.add(r)
    sched.step()
    reqs[2].cancel()
    while sched.busy:
        sched.step()
    assert [r.answer for i, r in enumerate(reqs) if i != 2] == [
        s for i, s in enumerate(solo) if i != 2
    ]
    assert reqs[2].finish_reason == "cancelled" and len(reqs[2].answer) < N


def test_stream_pieces_add_up_to_generate(engine: Engine) -> None:
    params = GenParams(max_new_tokens=N)
    events = list(engine.events(CONVS[1], params))
    assert isinstance(events[-1], Finished)
    assert events[-1].completion_tokens == N
    assert events[-1].prompt_tokens == len(engine.prompt_ids(CONVS[1]))
    streamed = "".join(e.text for e in events if isinstance(e, Delta))
    assert streamed.strip() == engine.generate([CONVS[1]], params)[0]
    assert "".join(engine.stream(CONVS[1], params)) == streamed


def test_seeded_sampling_repeats_alone_and_in_a_batch(engine: Engine) -> None:
    params = GenParams(max_new_tokens=N, temperature=1.0, seed=11)
    alone = engine.generate([CONVS[0]], params)
    batched = engine.generate(CONVS, params)
    again = engine.generate([CONVS[0]], params)
    other = engine.generate([CONVS[0]], GenParams(max_new_tokens=N, temperature=1.0, seed=12))
    assert alone == again == batched[:1]
    assert other != alone


def test_stop_strings_cut_the_answer(engine: Engine) -> None:
    full = engine.generate([CONVS[2]], GenParams(max_new_tokens=N))[0]
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    cut = engine.generate([CONVS[2]], GenParams(max_new_tokens=N, stop=[stop]))[0]
    assert cut == full[: full.index(stop)].strip()


def test_a_prompt_longer_than_the_context_is_a_config_error(engine: Engine) -> None:
    long = [{"role": "user", "content": "word " * (engine.max_positions + 10)}]
    with pytest.raises(ConfigError, match="context"):
        engine.generate([long])


def test_each_row_uses_its_own_adapter_in_a_mixed_batch(multi: Engine) -> None:
    assert multi.runner.mixed_adapters
    params = GenParams(max_new_tokens=N)
    prompt = multi.prompt_ids(CONVS[1])
    names = [multi.base_name, "alpha", "beta"]
    solo = {n: answer_ids(multi, [(prompt, params, multi.adapter_key(n))])[0] for n in names}
    assert len({tuple(v) for v in solo.values()}) == 3  # adapters really change the answer
    mixed = answer_ids(multi, [(prompt, params, multi.adapter_key(n)) for n in names * 2])
    assert mixed == [solo[n] for n in names * 2]
    assert (
        multi.generate([CONVS[1]], params, adapter="alpha")[0]
        == multi.tokenizer.decode(solo["alpha"], skip_special_tokens=True).strip()
    )


def test_dora_adapters_are_batched_one_adapter_at_a_time(
    sharp_model_dir: Path, adapter_dirs: dict
) -> None:
    eng = Engine.load(
        str(sharp_model_dir),
        adapters={"alpha": str(adapter_dirs["alpha"]), "dora": str(adapter_dirs["dora"])},
    )
    assert not eng.runner.mixed_adapters
    params = GenParams(max_new_tokens=6)
    prompt = eng.prompt_ids(CONVS[0])
    keys = [eng.adapter_key(n) for n in ("dora", eng.base_name, "alpha", "dora")]
    solo = [answer_ids(eng, [(prompt, params, k)])[0] for k in keys]
    assert answer_ids(eng, [(prompt, params, k) for k in keys]) == solo
    assert solo[0] != solo[1]


def test_worker_batches_concurrent_threads(engine: Engine) -> None:
    params = GenParams(max_new_tokens=N)
    expected = engine.generate(CONVS, params)
    results: dict[int, str] = {}

    def ask(i: int) -> None:
        done, pieces = threading.Event(), []

        def emit(ev: Any) -> None:
            if isinstance(ev, Delta):
                pieces.append(ev.text)
            else:
                done.set()

        engine.worker.submit(engine.prompt_ids(CONVS[i % 4]), params, emit)
        done.wait(60)
        results[i] = "".join(pieces).strip()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.close()
    assert [results[i] for i in range(8)] == expected * 2


def test_run_directory_names_and_adapter_lookup(
    tmp_path: Path, sharp_model_dir: Path, adapter_dirs: dict
) -> None:
    run = tmp_path / "my-run"
    (run / "adapter").mkdir(parents=True)
    for f in Path(adapter_dirs["alpha"]).iterdir():
        (run / "adapter" / f.name).write_bytes(f.read_bytes())
    cfg = {
        "model": {"name": str(sharp_model_dir)},
        "data": {"datasets": [{"path": "builtin:identity"}]},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    eng = Engine.load(str(run), adapters={"beta": str(adapter_dirs["beta"])})
    assert eng.model_names() == ["my-run", str(sharp_model_dir), "beta"]
    assert eng.adapter_key(None) == eng.adapter_key("my-run") != eng.adapter_key("beta")
    assert eng.adapter_key(str(sharp_model_dir)) is None
    with pytest.raises(ConfigError, match="not found; available: my-run"):
        eng.adapter_key("gpt-4")
    with pytest.raises(ConfigError, match="folder not found"):
        Engine.load(str(run), adapters={"x": str(tmp_path / "missing")})


def test_four_and_eight_bit_bases_generate(tiny_qwen2: Path) -> None:
    import bitsandbytes as bnb

    for bits, layer in ((4, bnb.nn.Linear4bit), (8, bnb.nn.Linear8bitLt)):
        eng = Engine.load(str(tiny_qwen2), bits=bits)
        assert isinstance(eng.model.model.layers[0].self_attn.q_proj, layer)
        events = list(eng.events(CONVS[0], GenParams(max_new_tokens=4)))
        assert events[-1] == Finished("length", len(eng.prompt_ids(CONVS[0])), 4)


def test_four_bit_refuses_shapes_it_cannot_run(tmp_path: Path, tiny_qwen2: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    cfg = Qwen2Config(
        vocab_size=2368,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_qwen2).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="multiples of 32") as info:
        Engine.load(str(tmp_path), bits=4)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="choose 4 or 8"):
        Engine.load(str(tmp_path), bits=3)
