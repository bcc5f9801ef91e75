"""Reading facts and relation tables: formats, column maps, and one-line errors with file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.data.augment.relations import BUILTIN_TABLE, builtin_table, load_table
from tunesmith.data.augment.triples import Triple, read_facts
from tunesmith.errors import DataError

TABLE = builtin_table()


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_csv_and_sentences_read_the_same_facts(tmp_path: Path) -> None:
    rows = [
        {"subject": "Ann", "relation": "mentor", "object": "Bo"},
        {"subject": "Bo", "relation": "hometown", "object": " Cy "},
    ]
    a = read_facts(jsonl(tmp_path / "t.jsonl", rows), TABLE)
    csv = tmp_path / "t.csv"
    csv.write_text("head,rel,tail\nAnn,mentor,Bo\nBo,hometown,Cy\n", encoding="utf-8")
    b = read_facts(csv, TABLE, columns={"subject": "head", "relation": "rel", "object": "tail"})
    txt = tmp_path / "t.txt"
    txt.write_text("The mentor of Ann is Bo.\nBo的家乡是Cy。\n", encoding="utf-8")
    c = read_facts(txt, TABLE)
    expected = [Triple("Ann", "mentor", "Bo"), Triple("Bo", "hometown", "Cy")]
    assert [f.triple for f in a] == [f.triple for f in b] == [f.triple for f in c] == expected
    assert [f.where for f in a] == [f"{tmp_path / 't.jsonl'}:1", f"{tmp_path / 't.jsonl'}:2"]
    assert [f.where for f in c] == [f"{txt}:1", f"{txt}:2"]


def test_missing_column_names_file_line_and_fix(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "t.jsonl",
        [{"subject": "Ann", "relation": "mentor", "object": "Bo"}, {"subject": "Bo", "rel": "x"}],
    )
    with pytest.raises(DataError) as e:
        read_facts(path, TABLE)
    assert str(e.value) == (
        f"{path}:2: missing column(s) relation, object (the row has rel, subject); "
        "give subject, relation and object, or map them with columns"
    )


def test_unknown_relation_names_file_line_and_the_table(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "t.jsonl", [{"subject": "A", "relation": "uncle", "object": "B"}])
    with pytest.raises(DataError, match=rf"^{path}:1: unknown relation 'uncle' \(table builtin"):
        read_facts(path, TABLE)


def test_empty_value_and_unmatched_sentence(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "t.jsonl", [{"subject": "", "relation": "mentor", "object": "B"}])
    with pytest.raises(DataError, match=rf"^{path}:1: subject, relation and object must be"):
        read_facts(path, TABLE)
    txt = tmp_path / "s.txt"
    txt.write_text("The mentor of Ann is Bo.\nAnn likes tea.\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{txt}:2: 'Ann likes tea.' matches no fact template"):
        read_facts(txt, TABLE)


def test_unknown_column_map_field(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "t.jsonl", [{"subject": "A", "relation": "mentor", "object": "B"}])
    with pytest.raises(DataError, match="columns maps unknown field"):
        read_facts(path, TABLE, columns={"head": "subject"})


def test_user_table_in_yaml(tmp_path: Path) -> None:
    pytest.importorskip("yaml", reason="YAML relation tables need PyYAML")
    path = tmp_path / "rel.yaml"
    path.write_text(
        "relations:\n"
        "  - name: author\n"
        "    inverse: work\n"
        "    en: {question: 'Who wrote {subject}?', answer: '{object}.', "
        "phrase: 'the author of {x}', ask: Who}\n"
        "  - name: work\n"
        "    inverse: author\n"
        "    en: {question: 'What did {subject} write?', answer: '{object}.', "
        "phrase: 'the work of {x}', ask: What}\n",
        encoding="utf-8",
    )
    table = load_table(path)
    assert sorted(table.relations) == ["author", "work"]
    assert table.text("work", "en").question == "What did {subject} write?"
    assert table.source == str(path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "r", "inverse": "nope", "en": BUILTIN_TABLE[2]["en"]}, "inverse 'nope' is not"),
        ({"name": "r", "en": {"question": "Q {subject}?"}}, r"missing answer, phrase, ask"),
        ({"name": "r", "en": {**BUILTIN_TABLE[2]["en"], "hint": "x"}}, "unknown field.* hint"),
        ({"name": "r", "en": {**BUILTIN_TABLE[2]["en"], "question": "Q?"}}, "must use {subject}"),
        ({"name": "r", "colour": "red"}, "unknown key.* colour"),
        ({"name": "r"}, "no templates"),
    ],
)
def test_bad_tables_name_the_entry(tmp_path: Path, entry: dict, message: str) -> None:
    path = tmp_path / "rel.json"
    path.write_text(json.dumps([entry]), encoding="utf-8")
    with pytest.raises(DataError, match=message) as e:
        load_table(path)
    assert str(e.value).startswith(f"{path}: relation ")
    assert "\n" not in str(e.value)


def test_unparsable_table_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "rel.json"
    path.write_text("[{", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}: cannot parse the relation table"):
        load_table(path)
    with pytest.raises(DataError, match="relation table not found"):
        load_table(tmp_path / "missing.json")
