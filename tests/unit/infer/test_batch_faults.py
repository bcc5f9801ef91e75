"""The batch worker fails only the sequence at fault; the rest of its batch is answered.

Sequences that cannot run (out-of-range seed, empty prompt, non-finite parameters, a prompt the
model refuses in its prefill) are submitted together with good ones, as a server would when they
arrive in the same burst: each bad one gets its own ``Failed`` event, every good one the answer
it gets alone, and the worker keeps serving.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tunesmith.errors import ConfigError
from tunesmith.infer.batching import BatchWorker, Scheduler
from tunesmith.infer.decode import Delta, Failed, Finished, Request
from tunesmith.infer.engine import Engine, GenParams

HI = [{"role": "user", "content": "hi"}]
STORY = [{"role": "user", "content": "tell me a story"}]


@pytest.fixture(scope="module")
def engine(sharp_model_dir: Path) -> Engine:
    return Engine.load(str(sharp_model_dir))


def run_together(worker: BatchWorker, items: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Submit ``items`` in one go; every sequence's events (waits for each one's last)."""
    events: list[list[Any]] = [[] for _ in items]
    done = threading.Semaphore(0)

    def emit(i: int, ev: Any) -> None:
        events[i].append(ev)
        if isinstance(ev, Finished | Failed):
            done.release()

    with worker.scheduler.runner.lock:  # all of them wait for the same admission
        worker.submit_many(items, emit)
    for _ in items:
        assert done.acquire(timeout=60), f"a sequence never finished: {events}"
    return events


def text_of(events: list[Any]) -> str:
    assert isinstance(events[-1], Finished), events
    return "".join(e.text for e in events if isinstance(e, Delta))


def test_bad_sequences_fail_alone_and_the_others_are_answered(engine: Engine) -> None:
    good = [
        (engine.prompt_ids(HI), GenParams(max_new_tokens=6)),
        (engine.prompt_ids(STORY), GenParams(max_new_tokens=6, temperature=0.8, seed=3)),
    ]
    alone = [engine.complete([(ids, p, None)])[0].text for ids, p in good]
    ids = good[0][0]
    bad = [
        (ids, GenParams(temperature=1.0, seed=2**64)),  # no torch generator takes it
        ([], GenParams()),  # nothing to prefill
        (ids, GenParams(temperature=float("nan"))),
        (ids, GenParams(top_p=float("nan"), temperature=1.0)),
        (ids, GenParams(presence_penalty=float("inf"))),
        (ids, GenParams(max_new_tokens=0)),
        ([0] * engine.max_positions, GenParams()),  # leaves no room to answer
    ]
    items = [(*good[0], None), *[(*b, None) for b in bad], (*good[1], None)]
    worker = BatchWorker(engine.runner)
    try:
        events = run_together(worker, items)
        assert [text_of(events[0]), text_of(events[-1])] == alone
        for i, evs in enumerate(events[1:-1], 1):
            assert len(evs) == 1 and isinstance(evs[0], Failed), (i, evs)
            assert isinstance(evs[0].error, ConfigError), (i, evs[0].error)
            assert "\n" not in str(evs[0].error)
        # Still serving.
        again = run_together(worker, [(*good[0], None)])
        assert text_of(again[0]) == alone[0]
    finally:
        worker.close()


def test_a_row_the_model_refuses_in_prefill_fails_alone(engine: Engine) -> None:
    """A prefill error is retried row by row, so the batch's other rows still run."""
    ids = engine.prompt_ids(HI)
    vocab = engine.model.get_input_embeddings().num_embeddings
    params = GenParams(max_new_tokens=5)
    alone = engine.complete([(ids, params, None)])[0].text
    items = [(ids, params, None), ([*ids, vocab + 10], params, None), (ids, params, None)]
    worker = BatchWorker(engine.runner)
    try:
        events = run_together(worker, items)
        assert [text_of(events[0]), text_of(events[2])] == [alone, alone]
        assert len(events[1]) == 1 and isinstance(events[1][0], Failed)
        assert not isinstance(events[1][0].error, ConfigError)  # the server's fault: a 500
    finally:
        worker.close()


def test_a_failing_row_choice_fails_that_row_only(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Token choice raising for one row's parameters does not take its neighbours with it."""
    import tunesmith.infer.batching as batching

    real = batching.choose_tokens

    def picky(logits: Any, params: Any, *rest: Any) -> list[int]:
        if any(p.top_k == 7 for p in params):
            raise RuntimeError("simulated sampling failure")
        return real(logits, params, *rest)

    monkeypatch.setattr(batching, "choose_tokens", picky)
    ids = engine.prompt_ids(HI)
    params = GenParams(max_new_tokens=5)
    alone = engine.complete([(ids, params, None)])[0].text
    out: list[list[Any]] = [[], []]
    sched = Scheduler(engine.runner)
    reqs = [
        Request(ids, params, out[0].append),
        Request(ids, GenParams(max_new_tokens=5, top_k=7), out[1].append),
    ]
    for r in reqs:
        sched.add(r)
    while sched.busy:
        sched.step()
    assert text_of(out[0]) == alone
    assert isinstance(out[1][-1], Failed) and "simulated" in str(out[1][-1].error)


def test_a_request_in_admission_is_failed_when_the_batch_fails(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error joining a new row to the running batch fails every row, the new one included."""
    import tunesmith.infer.batching as batching

    ids = engine.prompt_ids(HI)
    out: list[list[Any]] = [[], []]
    sched = Scheduler(engine.runner)
    sched.add(Request(ids, GenParams(max_new_tokens=20), out[0].append))
    sched.step()

    def broken(*args: Any) -> Any:
        raise RuntimeError("simulated join failure")

    monkeypatch.setattr(batching, "join_caches", broken)
    sched.add(Request(ids, GenParams(max_new_tokens=20), out[1].append))
    with pytest.raises(RuntimeError):
        sched.step()
    sched.fail_all(RuntimeError("simulated join failure"))
    assert [type(o[-1]) for o in out] == [Failed, Failed]
    assert not sched.busy
