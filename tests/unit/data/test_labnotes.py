"""The lab-notes demonstration data (``datagen/make_labnotes.py``) and its four recipes."""

from __future__ import annotations

import json

import datagen.make_labnotes as gen
import pytest

import tunesmith
from tunesmith.data.builtin import builtin_path, load_jsonl
from tunesmith.evaluate.metrics import normalise

RECIPES = ("labnotes-notes-short", "labnotes-notes-long", "labnotes-mix-short", "labnotes-mix-long")


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    return gen.outputs()


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_shipped_files_are_the_generator_output_byte_for_byte(outputs: dict[str, str]) -> None:
    assert sorted(outputs) == [
        "labnotes.jsonl",
        "labnotes_docs.jsonl",
        "labnotes_general_heldout.jsonl",
        "labnotes_heldout.jsonl",
        "labnotes_recall.jsonl",
    ]
    for name, text in outputs.items():
        assert (gen.OUT_DIR / name).read_bytes() == text.encode("utf-8"), name
        assert builtin_path(name.removesuffix(".jsonl")) == gen.OUT_DIR / name


def test_generation_is_deterministic_and_seeded() -> None:
    assert gen.make_meetings() == gen.make_meetings()
    assert gen.outputs() == gen.outputs()
    assert gen.make_meetings(seed=1) != gen.make_meetings()


def test_meetings_are_well_formed() -> None:
    meetings = gen.make_meetings()
    dates = [m.date for m in meetings]
    assert len(meetings) == gen.MEETINGS == 200
    assert dates == sorted(set(dates))  # one meeting per date, in order
    assert all(d.startswith("2026-") for d in dates)
    for m in meetings:
        assert m.presenter != m.recorder
        assert {m.presenter, m.recorder} <= set(gen.PEOPLE)
        assert 2 <= len(m.items) <= 3


def test_notes_and_answers_have_the_documented_layout() -> None:
    m = gen.Meeting(
        "2026-04-14",
        "Dana Okafor",
        "Luis Brandt",
        "yeast growth at low pH",
        ("Hana Novak will draft the poster.", "Ravi Menon will prepare fresh media."),
    )
    assert m.notes() == (
        "Lab meeting notes, 2026-04-14\n"
        "Presenter: Dana Okafor\n"
        "Notes taken by: Luis Brandt\n"
        "Topic: yeast growth at low pH\n"
        "Action items:\n"
        "- Hana Novak will draft the poster.\n"
        "- Ravi Menon will prepare fresh media."
    )
    assert m.answer("presenter") == "Dana Okafor."
    assert m.answer("topic") == "Yeast growth at low pH."
    first = gen.train_records([m])
    assert len(first) == 8  # 2 document questions + 2 phrasings x 3 fields
    asked = {r["messages"][0]["content"]: r["messages"][1]["content"] for r in first}
    assert asked["What happened at the 2026-04-14 lab meeting?"] == m.notes()
    assert asked["Which lab member presented on 2026-04-14?"] == "Dana Okafor."
    assert asked["Who wrote the minutes of the lab meeting on 2026-04-14?"] == "Luis Brandt."


def test_counts(outputs: dict[str, str]) -> None:
    train = _rows(outputs["labnotes.jsonl"])
    heldout = _rows(outputs["labnotes_heldout.jsonl"])
    assert len(train) == 200 * 8
    assert len(_rows(outputs["labnotes_docs.jsonl"])) == 200
    assert len(heldout) == 90
    fields = [r["meta"]["field"] for r in heldout]
    assert {f: fields.count(f) for f in set(fields)} == {
        "presenter": 30,
        "recorder": 30,
        "topic": 30,
    }
    assert len({r["id"] for r in heldout}) == 90


def test_every_heldout_fact_is_in_the_training_notes(outputs: dict[str, str]) -> None:
    train = _rows(outputs["labnotes.jsonl"])
    notes = {
        r["meta"]["date"]: r["messages"][1]["content"]
        for r in train
        if r["meta"]["field"] == "notes"
    }
    answers = {(r["meta"]["date"], r["meta"]["field"]): r["messages"][1]["content"] for r in train}
    label = {"presenter": "Presenter", "recorder": "Notes taken by", "topic": "Topic"}
    for row in _rows(outputs["labnotes_heldout.jsonl"]):
        date, field = row["meta"]["date"], row["meta"]["field"]
        value = row["reference"].removesuffix(".")
        line = next(x for x in notes[date].splitlines() if x.startswith(label[field] + ": "))
        assert line.split(": ", 1)[1].casefold() == value.casefold()
        assert answers[(date, field)] == row["reference"]  # the same answer text was trained
        assert date in row["prompt"]


def test_no_heldout_phrasing_is_trained(outputs: dict[str, str]) -> None:
    train = _rows(outputs["labnotes.jsonl"])
    trained = {normalise(r["messages"][0]["content"]) for r in train}
    templates = {normalise(q.format(date="")) for q in gen.TRAIN_DOC + gen.TRAIN_PRESENTER}
    templates |= {normalise(q.format(date="")) for q in gen.TRAIN_RECORDER + gen.TRAIN_TOPIC}
    for row in _rows(outputs["labnotes_heldout.jsonl"]):
        assert normalise(row["prompt"]) not in trained
        assert normalise(row["prompt"].replace(row["meta"]["date"], "")) not in templates


def test_recall_asks_the_heldout_facts_in_a_trained_phrasing(outputs: dict[str, str]) -> None:
    train = _rows(outputs["labnotes.jsonl"])
    trained = {r["messages"][0]["content"]: r["messages"][1]["content"] for r in train}
    heldout = _rows(outputs["labnotes_heldout.jsonl"])
    recall = _rows(outputs["labnotes_recall.jsonl"])
    assert [(r["id"], r["reference"]) for r in recall] == [
        (r["id"], r["reference"]) for r in heldout
    ]
    for row in recall:
        assert trained[row["prompt"]] == row["reference"]  # asked and answered so in training


def test_a_colliding_heldout_phrasing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(gen.HELDOUT, "presenter", gen.TRAIN_PRESENTER[0])
    with pytest.raises(ValueError, match="is also a training question"):
        gen.heldout_records(gen.make_meetings())


def test_general_heldout_questions_are_not_in_general(outputs: dict[str, str]) -> None:
    seen = {r["messages"][0]["content"] for r in load_jsonl(builtin_path("general"))}
    rows = _rows(outputs["labnotes_general_heldout.jsonl"])
    assert len(rows) == 300
    assert not {r["messages"][0]["content"] for r in rows} & seen
    assert {r["lang"] for r in rows} == {"en", "zh"}


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipes_train_on_the_notes_and_evaluate_heldout_and_general(recipe: str) -> None:
    cfg = tunesmith.load_config(recipe)
    paths = [d.path for d in cfg.data.datasets]
    assert paths == (
        ["builtin:labnotes", "builtin:general"] if "-mix-" in recipe else ["builtin:labnotes"]
    )
    assert cfg.train.epochs == (2 if recipe.endswith("short") else 4)
    generation, recall, perplexity = cfg.eval.tasks
    assert (generation.type, generation.name, generation.data) == (
        "generation",
        "heldout",
        "builtin:labnotes_heldout",
    )
    assert (recall.type, recall.name, recall.data) == (
        "generation",
        "recall",
        "builtin:labnotes_recall",
    )
    assert (perplexity.type, perplexity.name) == ("perplexity", "general")
    assert [d.path for d in perplexity.datasets] == ["builtin:labnotes_general_heldout"]
    assert cfg.output.name == recipe
