"""LLaMA-Factory dataset_info.json entries map to our formats, columns and tags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunesmith.data.dataset_info import InfoEntry, read_dataset_info
from tunesmith.data.sources import load_examples
from tunesmith.data.types import Conversation, KTOExample, Message, PreferencePair, TextDoc
from tunesmith.errors import DataError

ROLE_TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
}


def write_info(folder: Path, entries: dict[str, Any], files: dict[str, Any]) -> Path:
    for name, content in files.items():
        (folder / name).write_text(content if isinstance(content, str) else json.dumps(content))
    info = folder / "dataset_info.json"
    info.write_text(json.dumps(entries, indent=2))
    return info


def test_alpaca_entry_with_llamafactory_columns(tmp_path: Path) -> None:
    rows = [{"question": "q", "context": "c", "answer": "a", "sys": "s"}]
    info = write_info(
        tmp_path,
        {
            "qa": {
                "file_name": "qa.json",
                "columns": {
                    "prompt": "question",
                    "query": "context",
                    "response": "answer",
                    "system": "sys",
                },
                "num_samples": 5,
            }
        },
        {"qa.json": rows},
    )
    entry = read_dataset_info(info, "qa")
    assert entry == InfoEntry(
        name="qa",
        file=tmp_path / "qa.json",
        fmt="alpaca",
        columns={
            "instruction": "question",
            "input": "context",
            "output": "answer",
            "system": "sys",
        },
        num_samples=5,
        media_dir=tmp_path,
    )
    result = load_examples(entry.file, fmt=entry.fmt, columns=entry.columns)
    assert result.examples == [
        Conversation([Message("system", "s"), Message("user", "q\nc"), Message("assistant", "a")])
    ]


def test_sharegpt_ranking_kto_and_pretraining_entries(tmp_path: Path) -> None:
    dpo = [
        {
            "conversations": [{"from": "human", "value": "q"}],
            "chosen": {"from": "gpt", "value": "good"},
            "rejected": {"from": "gpt", "value": "bad"},
        }
    ]
    kto = [
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
            ],
            "label": True,
        }
    ]
    write_info(
        tmp_path,
        {
            "dpo": {
                "file_name": "dpo.json",
                "ranking": True,
                "formatting": "sharegpt",
                "columns": {
                    "messages": "conversations",
                    "chosen": "chosen",
                    "rejected": "rejected",
                },
            },
            "kto": {
                "file_name": "kto.json",
                "formatting": "sharegpt",
                "columns": {"messages": "messages", "kto_tag": "label"},
                "tags": ROLE_TAGS,
            },
            "pt": {"file_name": "pt.jsonl", "columns": {"prompt": "body"}, "split": "train"},
        },
        {"dpo.json": dpo, "kto.json": kto, "pt.jsonl": '{"body": "doc one"}\n'},
    )
    entries = {name: read_dataset_info(tmp_path, name) for name in ("dpo", "kto", "pt")}
    assert (entries["dpo"].fmt, entries["dpo"].ranking) == ("preference", True)
    assert entries["kto"].fmt == "kto"
    assert entries["kto"].columns == {"conversations": "messages", "label": "label"}
    assert entries["kto"].tags == ROLE_TAGS
    assert (entries["pt"].fmt, entries["pt"].columns) == ("text", {"text": "body"})

    def load(e: InfoEntry) -> list:
        return load_examples(
            e.file, fmt=e.fmt, columns=e.columns, tags=e.tags, ranking=e.ranking
        ).examples

    user = Message("user", "q")
    assert load(entries["dpo"]) == [
        PreferencePair(
            Conversation([user]), Message("assistant", "good"), Message("assistant", "bad")
        )
    ]
    assert load(entries["kto"]) == [
        KTOExample(Conversation([user, Message("assistant", "a")]), desirable=True)
    ]
    assert load(entries["pt"]) == [TextDoc("doc one")]


@pytest.mark.parametrize(
    ("entries", "name", "message"),
    [
        ({"alpaca_demo": {"file_name": "x.json"}}, "alpaca_dem", "no dataset named 'alpaca_dem'; "),
        ({"hub": {"hf_hub_url": "org/set"}}, "hub", "hub: no file_name, it points to the Hub"),
        ({"e": {"formatting": "alpaca"}}, "e", 'e: no file_name; add "file_name"'),
        ({"e": {"file_name": "gone.json"}}, "e", "e: file_name 'gone.json' not found ("),
        (
            {"e": {"file_name": "x.json", "formatting": "vicuna"}},
            "e",
            "e: unknown formatting 'vicuna'; use alpaca, sharegpt or openai",
        ),
        (
            {"e": {"file_name": "x.json", "columns": {"answer": "a"}}},
            "e",
            "e: unknown column key 'answer' for alpaca; use prompt, query, response",
        ),
        (
            {"e": {"file_name": "x.json", "tags": {"speaker_tag": "s"}}},
            "e",
            "e: unknown tag 'speaker_tag'; use role_tag",
        ),
        (
            {"e": {"file_name": "x.json", "formatting": "sharegpt", "columns": {"videos": "v"}}},
            "e",
            "e: videos columns are not supported",
        ),
    ],
)
def test_bad_entries(tmp_path: Path, entries: dict, name: str, message: str) -> None:
    info = write_info(tmp_path, entries, {"x.json": []})
    with pytest.raises(DataError) as err:
        read_dataset_info(info, name)
    text = str(err.value)
    assert text.startswith(f"{info}: ")
    assert message in text
    assert "\n" not in text


def test_did_you_mean_and_missing_info_file(tmp_path: Path) -> None:
    info = write_info(tmp_path, {"alpaca_demo": {"file_name": "x.json"}}, {"x.json": []})
    with pytest.raises(DataError, match=r"did you mean 'alpaca_demo'\?$"):
        read_dataset_info(info, "alpaca_dem")
    with pytest.raises(DataError, match="dataset_info file not found"):
        read_dataset_info(tmp_path / "other", "x")
    info.write_text('{"a": {"file_name": "x.json"},}')
    with pytest.raises(DataError, match=r"dataset_info.json:1: invalid JSON \("):
        read_dataset_info(info, "a")
