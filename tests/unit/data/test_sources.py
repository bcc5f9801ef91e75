"""Readers: every file type, folders, saved datasets, locations, counting and max_rows."""

from __future__ import annotations

import json
import sys
import types
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunesmith.data.sources import Record, iter_records, load_examples
from tunesmith.data.types import Conversation, Message
from tunesmith.errors import DataError

ROWS = [
    {"instruction": "q1", "input": "", "output": "a1"},
    {"instruction": "q2", "input": "x", "output": "a2"},
    {"instruction": "q3", "input": "", "output": "a3"},
]


def write_jsonl(path: Path, rows: list[dict], blank_lines: bool = False) -> Path:
    sep = "\n\n" if blank_lines else "\n"
    path.write_text(sep.join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_json_array(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS, indent=2))
    got = list(iter_records(path))
    assert got == [Record(r, str(path), i, "record") for i, r in enumerate(ROWS, start=1)]
    assert got[1].where == f"{path}:record 2"


def test_json_object_with_one_list_field(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"data": ROWS}))
    assert [r.data for r in iter_records(path)] == ROWS


def test_jsonl_lines_are_one_based_and_blank_lines_skipped(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ROWS, blank_lines=True)
    got = list(iter_records(str(path)))
    assert [(r.data, r.line) for r in got] == [(ROWS[0], 1), (ROWS[1], 3), (ROWS[2], 5)]
    assert got[2].where == f"{path}:5"


def test_jsonl_named_json_is_read_line_by_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.json", ROWS)
    assert [(r.data, r.line, r.unit) for r in iter_records(path)] == [
        (row, i, "line") for i, row in enumerate(ROWS, start=1)
    ]


def test_parquet_streams_batches(tmp_path: Path) -> None:
    rows = [{"text": f"doc {i}", "n": i} for i in range(2500)]  # more than one 1024-row batch
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=700)
    got = list(iter_records(path))
    assert [r.data for r in got] == rows
    assert (got[0].line, got[-1].line) == (1, 2500)


def test_csv_and_tsv_keep_strings(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text('instruction,input,output\nq1,,"a, 1"\nNA,007,a2\n')
    assert [r.data for r in iter_records(csv)] == [
        {"instruction": "q1", "input": "", "output": "a, 1"},
        {"instruction": "NA", "input": "007", "output": "a2"},
    ]
    tsv = tmp_path / "d.tsv"
    tsv.write_text("text\thelp\nhello\tx\n")
    assert [r.data for r in iter_records(tsv)] == [{"text": "hello", "help": "x"}]


def test_csv_cells_with_json_and_empty_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    conv = json.dumps([{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}])
    history = json.dumps([["q0", "a0"]])
    rows = [
        {"instruction": "q", "output": "a", "history": "", "images": "", "system": ""},
        {"instruction": "q", "output": "a", "history": history, "images": "", "system": "s"},
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    chat = tmp_path / "chat.csv"
    pd.DataFrame([{"conversations": conv, "tools": ""}]).to_csv(chat, index=False)
    user, reply = Message("user", "q"), Message("assistant", "a")
    assert load_examples(path).examples == [
        Conversation([user, reply]),
        Conversation(
            [Message("system", "s"), Message("user", "q0"), Message("assistant", "a0"), user, reply]
        ),
    ]
    assert load_examples(chat).examples == [Conversation([user, reply])]


def test_text_file_one_document_per_line(tmp_path: Path) -> None:
    path = tmp_path / "wiki.txt"
    path.write_text("first doc\n\nsecond doc\n")
    assert [(r.data, r.line) for r in iter_records(path)] == [
        ({"text": "first doc"}, 1),
        ({"text": "second doc"}, 3),
    ]


def test_file_type_overrides_the_suffix(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "data.dat", ROWS[:1])
    assert [r.data for r in iter_records(path, file_type="jsonl")] == ROWS[:1]
    with pytest.raises(DataError, match=r"unknown file type '\.dat'; use"):
        list(iter_records(path))


def test_saved_dataset_dict_picks_split_and_arrow_file(tmp_path: Path) -> None:
    import datasets

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(ROWS),
            "test": datasets.Dataset.from_list(ROWS[:1]),
        }
    )
    dd.save_to_disk(str(tmp_path / "saved"))
    assert [r.data for r in iter_records(tmp_path / "saved")] == ROWS
    assert [r.data for r in iter_records(tmp_path / "saved", split="test")] == ROWS[:1]
    with pytest.raises(DataError, match=r"split 'valid' not found; use one of test, train"):
        list(iter_records(tmp_path / "saved", split="valid"))

    arrow = next((tmp_path / "saved" / "train").glob("*.arrow"))
    assert [r.data for r in iter_records(arrow)] == ROWS


def test_folder_of_files_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    write_jsonl(folder / "b.jsonl", ROWS[2:])
    write_jsonl(folder / "a.jsonl", ROWS[:2])
    (folder / "README.md").write_text("not data")
    got = list(iter_records(folder))
    assert [r.data for r in got] == ROWS
    assert [r.file for r in got] == [str(folder / "a.jsonl")] * 2 + [str(folder / "b.jsonl")]

    (folder / "c.json").write_text(json.dumps(ROWS))
    with pytest.raises(DataError, match=r"folder mixes file types \(json, jsonl\)"):
        list(iter_records(folder))
    assert len(list(iter_records(folder, file_type="json"))) == 3


def test_builtin_paths_resolve_through_the_builtin_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_jsonl(tmp_path / "identity.jsonl", ROWS[:1])
    fake = types.ModuleType("tunesmith.data.builtin")
    fake.builtin_path = lambda name: {"identity": path}[name]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tunesmith.data.builtin", fake)
    got = list(iter_records("builtin:identity"))
    assert [(r.data, r.file, r.line) for r in got] == [(ROWS[0], "builtin:identity", 1)]


def test_missing_file_names_path_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        list(iter_records(tmp_path / "nope.jsonl"))
    assert str(err.value).startswith(f"{tmp_path / 'nope.jsonl'}: file not found (looked in ")
    assert "check the path" in str(err.value)


def test_load_examples_counts_and_max_rows(tmp_path: Path) -> None:
    rows = [*ROWS, {"instruction": "q4", "output": ""}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    result = load_examples(path, on_error="skip", source="mine")
    assert result.rows_read == 4
    assert result.skipped == Counter({"empty assistant turn": 1})
    assert result.examples[1] == Conversation(
        [Message("user", "q2\nx"), Message("assistant", "a2")], source="mine"
    )
    limited = load_examples(path, max_rows=2)
    assert (limited.rows_read, len(limited.examples)) == (2, 2)


def test_load_examples_raise_mode_stops_at_first_bad_record(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [*ROWS, {"instruction": "q4", "output": ""}])
    with pytest.raises(DataError) as err:
        load_examples(path)
    assert str(err.value) == (
        f"{path}:4: empty assistant turn (message 2); "
        "give every assistant turn some text, or remove the sample"
    )


def test_load_examples_validates_options_up_front(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(DataError, match="on_error must be 'raise' or 'skip'"):
        load_examples(path, on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="format: unknown format 'csv'"):
        load_examples(path, fmt="csv")


@pytest.mark.parametrize("name", ["d.csv", "d.json", "d.jsonl", "d.txt"])
def test_encoding_cp1252_reads_excel_exports(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    text = "it’s a café – “quoted”"  # ’ – “ ” are 0x92 0x96 0x93 0x94 in cp1252: not UTF-8
    if name.endswith(".csv"):
        body = f'instruction,output\nq,"{text}"\n'
    elif name.endswith(".json"):
        body = json.dumps([{"instruction": "q", "output": text}], ensure_ascii=False)
    elif name.endswith(".jsonl"):
        body = json.dumps({"instruction": "q", "output": text}, ensure_ascii=False) + "\n"
    else:
        body = text + "\n"
    path.write_bytes(body.encode("cp1252"))
    with pytest.raises(DataError, match="not valid UTF-8"):
        load_examples(path)
    got = [r.data for r in iter_records(path, encoding="cp1252")]
    want = {"text": text} if name.endswith(".txt") else {"instruction": "q", "output": text}
    assert got == [want]


def test_encoding_utf16_and_unknown_names(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    rows = [{"instruction": "q1", "output": "é"}, {"instruction": "q2", "output": "ü"}]
    path.write_bytes("".join(json.dumps(r) + "\n" for r in rows).encode("utf-16"))
    assert [(r.data, r.line) for r in iter_records(path, encoding="utf-16")] == [
        (rows[0], 1),
        (rows[1], 2),
    ]
    with pytest.raises(DataError) as err:
        list(iter_records(path, encoding="cp1252x"))
    assert str(err.value) == (
        f"{path}: unknown encoding 'cp1252x'; use a Python codec name such as utf-8, cp1252, "
        "latin-1 or gb18030"
    )


def test_encoding_on_a_dataset_entry_reaches_the_reader(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from tunesmith.config.schema import DataConfig, DatasetConfig
    from tunesmith.data.engine import load_source

    path = tmp_path / "d.csv"
    path.write_bytes("instruction,output\nq,it’s\n".encode("cp1252"))
    cfg = DataConfig(datasets=[DatasetConfig(path=str(path), encoding="cp1252")])
    examples, report, _ = load_source(cfg.datasets[0], cfg, 0)
    assert examples[0].messages[1].content == "it’s" and report.rows_read == 1
    with pytest.raises(ValidationError, match="unknown encoding 'latin-9x'"):
        DatasetConfig(path=str(path), encoding="latin-9x")


def test_cli_names_the_line_of_a_cp1252_csv(
    tmp_path: Path, tiny_qwen2: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunesmith.cli import main

    data = tmp_path / "export.csv"
    data.write_bytes("instruction,output\nq,a\nq,it’s\n".encode("cp1252"))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model:\n  name: {tiny_qwen2}\ndata:\n  datasets:\n    - path: {data}\n")
    assert main(["data", "stats", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {data}:3: not valid UTF-8 (byte 0x92 ")
    assert "set `encoding:` on its dataset entry" in err[0]
    assert main(["data", "stats", str(cfg), "data.datasets.0.encoding=cp1252"]) == 0
