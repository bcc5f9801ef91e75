"""Prompt samples for GRPO: messages, reference answer and the task label held-out rewards use."""

from __future__ import annotations

from tunesmith.data.types import Conversation, Message, PreferencePair
from tunesmith.train.rl.prompts import to_prompt


def test_a_pair_gives_its_prompt_its_chosen_answer_and_its_task() -> None:
    prompt = Conversation([Message("user", "Is 7 even or odd?")], meta={"meta": {"task": "parity"}})
    pair = PreferencePair(prompt, Message("assistant", "odd"), Message("assistant", "even"))
    assert to_prompt(pair, "prefs.jsonl:1") == {
        "messages": [{"role": "user", "content": "Is 7 even or odd?"}],
        "answer": "odd",
        "where": "prefs.jsonl:1",
        "task": "parity",
    }


def test_a_conversation_takes_answer_and_task_from_its_fields() -> None:
    conv = Conversation([Message("user", "2 + 2?")], meta={"answer": 4, "task": "add"})
    got = to_prompt(conv, "q.jsonl:3")
    assert isinstance(got, dict) and (got["answer"], got["task"]) == ("4", "add")
    plain = to_prompt(Conversation([Message("user", "hi")]), "q.jsonl:4")
    assert isinstance(plain, dict) and plain["task"] is None and plain["answer"] is None


def test_a_conversation_ending_with_the_assistant_is_cut_before_it() -> None:
    conv = Conversation([Message("user", "2 + 3?"), Message("assistant", "5")])
    got = to_prompt(conv, "c.jsonl:1")
    assert isinstance(got, dict) and got["answer"] == "5" and len(got["messages"]) == 1
    assert to_prompt(Conversation([Message("assistant", "x")]), "c.jsonl:2") == (
        "no user turn to answer"
    )
