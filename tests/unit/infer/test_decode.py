"""Incremental detokenisation and stop handling of one request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tunesmith.infer.decode import Delta, Detokenizer, Finished, Request, held_back
from tunesmith.infer.sampling import GenParams


@pytest.fixture(scope="module")
def tok(tiny_qwen2: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_qwen2)


def test_detokenizer_pieces_add_up_and_never_split_a_character(tok: Any) -> None:
    text = "Hello wörld, 你好！ Émoji 🎉 done."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    detok = Detokenizer(tok)
    pieces = [detok.add(i) for i in ids]
    assert "".join(pieces) == tok.decode(ids) == text
    assert not any("\ufffd" in p for p in pieces)
    assert len([p for p in pieces if p]) > 5  # really incremental


def test_a_cut_character_is_flushed_at_the_end_like_decode(tok: Any) -> None:
    ids = tok("x🎉", add_special_tokens=False)["input_ids"]
    assert len(ids) > 2  # the emoji spans several byte tokens
    detok = Detokenizer(tok)
    shown = "".join(detok.add(i) for i in ids[:-1])
    assert shown == "x"  # the partial character is held back while streaming
    assert shown + detok.flush() == tok.decode(ids[:-1]) == "x\ufffd"


def test_special_tokens_are_not_shown(tok: Any) -> None:
    ids = tok("hi", add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<image>")]
    detok = Detokenizer(tok)
    assert "".join(detok.add(i) for i in ids) == "hi"


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [("abc", ["x"], 0), ("ab<", ["<stop>"], 1), ("a<st", ["<stop>", "st"], 3), ("", ["ab"], 0)],
)
def test_held_back(text: str, stops: list[str], expected: int) -> None:
    assert held_back(text, stops) == expected


def run(tok: Any, text: str, params: GenParams, extra: list[int] | None = None) -> tuple:
    events: list[Any] = []
    req = Request(prompt=[1, 2, 3], params=params, emit=events.append)
    req.start(tok)
    stop_ids = frozenset({tok.convert_tokens_to_ids("<|im_end|>")})
    for t in tok(text, add_special_tokens=False)["input_ids"] + (extra or []):
        if req.done:
            break
        req.push(t, stop_ids, max_positions=10_000)
    deltas = "".join(e.text for e in events if isinstance(e, Delta))
    finished = [e for e in events if isinstance(e, Finished)]
    return deltas, finished, req


def test_stop_string_across_tokens_is_cut_and_never_streamed(tok: Any) -> None:
    deltas, finished, req = run(tok, "The answer is 42. END of story", GenParams(stop=["END"]))
    assert deltas == "The answer is 42. "
    assert [(f.reason, f.prompt_tokens) for f in finished] == [("stop", 3)]
    assert req.finish_reason == "stop"


def test_stop_token_ends_without_showing_it(tok: Any) -> None:
    end = tok.convert_tokens_to_ids("<|im_end|>")
    deltas, finished, _ = run(tok, "Hi there", GenParams(), extra=[end, 5, 6])
    assert deltas == "Hi there"
    assert finished[0].reason == "stop"
    assert finished[0].completion_tokens == len(
        tok("Hi there", add_special_tokens=False)["input_ids"]
    )


def test_length_limit_flushes_held_back_text(tok: Any) -> None:
    ids = tok("one two three four", add_special_tokens=False)["input_ids"]
    deltas, finished, _ = run(tok, "one two three four", GenParams(max_new_tokens=2, stop=["zz"]))
    assert deltas == tok.decode(ids[:2])
    assert (finished[0].reason, finished[0].completion_tokens) == ("length", 2)


def test_context_limit_finishes_with_length(tok: Any) -> None:
    events: list[Any] = []
    req = Request(prompt=[1] * 8, params=GenParams(max_new_tokens=100), emit=events.append)
    req.start(tok)
    req.push(300, frozenset(), max_positions=10)
    assert not req.done
    req.push(301, frozenset(), max_positions=10)
    assert req.finish_reason == "length"
    assert events[-1] == Finished("length", 8, 2)
