"""A corpus of bad inputs: each fails with ONE line naming file:line (or the file) and the fix.

Record-level problems are also checked with ``on_error="skip"``: the bad record is counted under
its reason and the good record beside it still loads. Source-level problems raise in both modes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tunesmith.data.dataset_info import read_dataset_info
from tunesmith.data.sources import load_examples
from tunesmith.errors import DataError

GOOD = {"instruction": "q", "output": "a"}
GOOD_CHAT = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}


def chat(*turns: tuple[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": r, "content": c} for r, c in turns], **extra}


@dataclass
class Case:
    id: str
    file: str
    content: str | bytes | list[Any]  # raw text, raw bytes, or records one per JSONL line
    where: str  # expected location after the path: ":2" / ":record 2" / "" (the file itself)
    message: str  # exact substring of the message after the location
    reason: str | None = None  # skip-mode reason; None = the whole source is rejected
    options: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case(
        "broken JSON line",
        "d.jsonl",
        '{"instruction": "q", "output": "a"}\n{"instruction": "q" "output": "a"}\n',
        ":2",
        "invalid JSON (Expecting ',' delimiter at column 21); fix or remove the line",
        "invalid JSON",
    ),
    Case(
        "JSON array closed early (Extra data): Python's line and column, not JSONL's",
        "d.json",
        '[\n  {"instruction": "q", "output": "a"}],\n  {"instruction": "q", "output": "a"}\n]\n',
        ":2",
        "invalid JSON (Extra data at column 39); fix the file",
    ),
    Case(
        "JSON file in cp1252, not UTF-8",
        "d.json",
        b'[\n  {"instruction": "q", "output": "a"},\n'
        b'  {"instruction": "caf\xe9", "output": "a"}\n]\n',
        ":3",
        "not valid UTF-8 (byte 0xe9 at column 23, byte 64 of the file); save the file as UTF-8, "
        "or set `encoding:` on its dataset entry (e.g. encoding: cp1252)",
    ),
    Case(
        "JSONL line in cp1252, not UTF-8",
        "d.jsonl",
        b'{"instruction": "q", "output": "a"}\n{"instruction": "caf\xe9", "output": "a"}\n',
        ":2",
        "not valid UTF-8 (byte 0xe9 at column 21, byte 57 of the file); save the file as UTF-8",
        "not UTF-8",
    ),
    Case(
        "CSV exported from Excel in cp1252",
        "d.csv",
        b"instruction,output\nq,a\nq,it\x92s\n",
        ":3",
        "not valid UTF-8 (byte 0x92 at column 5, byte 28 of the file); save the file as UTF-8 "
        "(Excel: CSV UTF-8)",
    ),
    Case(
        "text file in cp1252",
        "d.txt",
        b"first\nsecond caf\xe9\n",
        ":2",
        "not valid UTF-8 (byte 0xe9 at column 11, byte 17 of the file)",
        "not UTF-8",
    ),
    Case(
        "columns maps a field to a column the file lacks (auto format)",
        "d.jsonl",
        [GOOD_CHAT, {"dialog_turns": GOOD_CHAT["messages"]}],
        ":2",
        "columns maps messages to 'dialog', which this record lacks (fields: dialog_turns); "
        "set columns.messages to one of the record's fields",
        "missing column",
        {"columns": {"messages": "dialog"}},
    ),
    Case(
        "JSON array with a trailing comma",
        "d.json",
        '[\n  {"instruction": "q", "output": "a"},\n]\n',
        ":3",
        "invalid JSON (Expecting value at column 1); fix the file (a trailing comma",
    ),
    Case(
        "wrong role order",
        "d.jsonl",
        [GOOD, chat(("user", "a"), ("user", "b"), ("assistant", "c"))],
        ":2",
        "wrong role order: user after user at message 2 (roles: user,user,assistant); "
        "turns must alternate",
        "wrong role order",
    ),
    Case(
        "empty assistant turn",
        "d.jsonl",
        [GOOD, chat(("user", "a"), ("assistant", "  "))],
        ":2",
        "empty assistant turn (message 2); give every assistant turn some text",
        "empty assistant turn",
    ),
    Case(
        "unknown format fields",
        "d.jsonl",
        [GOOD, {"question": "q", "answer": "a"}],
        ":2",
        "cannot detect the data format from fields [answer, question]; set `format:` to one of",
        "unknown format",
    ),
    Case(
        "missing column for an explicit format",
        "d.jsonl",
        [GOOD, {"instruction": "q", "answer": "a"}],
        ":2",
        "missing field 'output' for format alpaca (fields: answer, instruction); add it or map "
        "your column with `columns: {output: <your column>}`",
        "missing column",
        {"fmt": "alpaca"},
    ),
    Case(
        "column mapped to a name the record lacks",
        "d.jsonl",
        [{"question": "q", "output": "a"}, {"query": "q", "output": "a"}],
        ":2",
        "missing field 'instruction' for format alpaca (fields: output, query); columns maps "
        "instruction to 'question', which this record lacks",
        "missing column",
        {"fmt": "alpaca", "columns": {"instruction": "question"}},
    ),
    Case(
        "missing image file",
        "d.jsonl",
        [GOOD, chat(("user", "<image>hi"), ("assistant", "ok"), images=["nope.jpg"])],
        ":2",
        "nope.jpg; fix the path or set media_dir",
        "missing image",
    ),
    Case(
        "placeholder count differs from images",
        "d.jsonl",
        [GOOD, chat(("user", "<image><image>hi"), ("assistant", "ok"), images=["img.jpg"])],
        ":2",
        "2 <image> placeholder(s) in the text but 1 image(s); put exactly one <image>",
        "image count mismatch",
    ),
    Case(
        "unknown role",
        "d.jsonl",
        [GOOD, chat(("customer", "hi"), ("assistant", "ok"))],
        ":2",
        "unknown role 'customer' in message 1; use system/user/assistant/tool",
        "unknown role",
    ),
    Case(
        "system not first",
        "d.jsonl",
        [GOOD, chat(("user", "hi"), ("system", "rules"), ("assistant", "ok"))],
        ":2",
        "system message at position 2; a system message may only come first",
        "system not first",
    ),
    Case(
        "last turn not assistant",
        "d.jsonl",
        [GOOD, chat(("user", "hi"), ("assistant", "ok"), ("user", "bye"))],
        ":2",
        "last turn is user, not assistant; end every conversation with an assistant reply",
        "last turn not assistant",
    ),
    Case(
        "non-string content",
        "d.json",
        json.dumps([GOOD, chat(("user", "2+2"), ("assistant", 4))]),
        ":record 2",
        "message 2 content must be a string, got int; write it as text",
        "wrong type",
    ),
    Case(
        "tools not valid JSON",
        "d.jsonl",
        [GOOD, {**GOOD_CHAT, "tools": '[{"name": "f",}]'}],
        ":2",
        "tools is not valid JSON (Expecting property name enclosed in double quotes at column 15)",
        "invalid tools",
    ),
    Case(
        "function_call not valid JSON",
        "d.jsonl",
        [
            GOOD,
            {
                "conversations": [
                    {"from": "human", "value": "hi"},
                    {"from": "function_call", "value": "f(x=1)"},
                    {"from": "observation", "value": "1"},
                    {"from": "gpt", "value": "one"},
                ]
            },
        ],
        ":2",
        "function_call in message 2 is not valid JSON (Expecting value at column 1); write it as",
        "invalid tool call",
    ),
    Case(
        "history not pairs",
        "d.jsonl",
        [GOOD, {**GOOD, "history": [["q", "a", "extra"]]}],
        ":2",
        "history item 1 must be a [question, answer] pair",
        "wrong type",
    ),
    Case(
        "record not an object",
        "d.jsonl",
        [GOOD, [1, 2]],
        ":2",
        "record must be a JSON object, got list; write one object per sample",
        "wrong type",
    ),
    Case("empty JSONL file", "d.jsonl", "\n\n", "", "no records found (the source is empty)"),
    Case("empty JSON file", "d.json", "", "", "file is empty; add a JSON array of samples"),
    Case(
        "JSON object that is not a list of samples",
        "d.json",
        json.dumps({"a": [1], "b": 2}),
        "",
        "expected a JSON array of samples (or an object with one list field)",
    ),
    Case(
        "csv missing column",
        "d.csv",
        "instruction,answer\nq,a\n",
        ":record 1",
        "missing field 'output' for format alpaca (fields: answer, instruction)",
        "missing column",
        {"fmt": "alpaca"},
    ),
    Case(
        "label not boolean in KTO",
        "d.jsonl",
        [{**GOOD_CHAT, "label": True}, {**GOOD_CHAT, "label": "maybe"}],
        ":2",
        "label must be true or false, got 'maybe'; mark desirable replies true",
        "invalid label",
    ),
    Case(
        "chosen missing in preference",
        "d.jsonl",
        [{**GOOD, "chosen": "a", "rejected": "b"}, {"instruction": "q", "rejected": "b"}],
        ":2",
        "missing field 'chosen' for format preference (fields: instruction, rejected)",
        "missing column",
    ),
    Case(
        "preference prompt ends with the assistant",
        "d.jsonl",
        [
            {"instruction": "q", "chosen": "x", "rejected": "y"},
            {**GOOD_CHAT, "chosen": "x", "rejected": "y"},
        ],
        ":2",
        "prompt ends with an assistant turn; end the prompt with a user turn",
        "wrong role order",
        {"ranking": True},
    ),
    Case(
        "xtuner turn without output",
        "d.jsonl",
        [GOOD, {"conversation": [{"input": "hi"}]}],
        ":2",
        "conversation turn 1 needs input and output",
        "missing column",
    ),
    Case(
        "loss not boolean",
        "d.jsonl",
        [
            GOOD,
            {"messages": [GOOD_CHAT["messages"][0], {**GOOD_CHAT["messages"][1], "loss": "no"}]},
        ],
        ":2",
        "message 2 loss must be true or false, got 'no'",
        "wrong type",
    ),
    Case(
        "unknown file suffix",
        "d.xlsx",
        "x",
        "",
        "unknown file type '.xlsx'; use .json/.jsonl",
    ),
]


def _write(tmp_path: Path, case: Case) -> Path:
    (tmp_path / "img.jpg").write_bytes(b"jpg")
    path = tmp_path / case.file
    if isinstance(case.content, bytes):
        path.write_bytes(case.content)
    elif isinstance(case.content, str):
        path.write_text(case.content, encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in case.content), encoding="utf-8")
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_raises_one_line(tmp_path: Path, case: Case) -> None:
    path = _write(tmp_path, case)
    with pytest.raises(DataError) as err:
        load_examples(path, **case.options)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{path}{case.where}: ")
    assert case.message in text


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_skip_mode_counts_the_reason(tmp_path: Path, case: Case) -> None:
    path = _write(tmp_path, case)
    if case.reason is None:
        with pytest.raises(DataError, match="^" + str(path).replace("\\", "\\\\")):
            load_examples(path, on_error="skip", **case.options)
        return
    result = load_examples(path, on_error="skip", **case.options)
    assert result.skipped == Counter({case.reason: 1})
    assert result.rows_read == len(result.examples) + 1


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 20


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    for target, message in [
        (tmp_path / "gone.jsonl", ": file not found (looked in "),
        (tmp_path, ": folder has no data files ("),
    ]:
        for mode in ("raise", "skip"):
            with pytest.raises(DataError) as err:
                load_examples(target, on_error=mode)  # type: ignore[arg-type]
            assert str(err.value).startswith(f"{target}{message}")
            assert "\n" not in str(err.value)


def test_dataset_info_unknown_name_and_missing_file(tmp_path: Path) -> None:
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"my_data": {"file_name": "missing.json"}}))
    with pytest.raises(DataError) as err:
        read_dataset_info(info, "my_dta")
    assert str(err.value) == f"{info}: no dataset named 'my_dta'; did you mean 'my_data'?"
    with pytest.raises(DataError) as err:
        read_dataset_info(info, "my_data")
    assert str(err.value).startswith(f"{info}: my_data: file_name 'missing.json' not found (")
    assert "\n" not in str(err.value)
