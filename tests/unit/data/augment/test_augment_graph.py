"""Fact graph: forward, reversed, k-hop and negative samples on a hand-built graph."""

from __future__ import annotations

import pytest

pytest.importorskip("networkx", reason="the fact graph is a networkx graph ([graph] extra)")

from tunesmith.data.augment.graph import Options, Sample, build_graph, dedupe, generate
from tunesmith.data.augment.relations import builtin_table
from tunesmith.data.augment.triples import Fact, Triple
from tunesmith.errors import DataError

TABLE = builtin_table()


def facts(*triples: tuple[str, str, str]) -> list[Fact]:
    return [Fact(Triple(*t), f"f.jsonl:{i}") for i, t in enumerate(triples, 1)]


# Ann's mentor is Bo; Bo's hometown is Cy; Dee's mentor is also Bo.
CHAIN = facts(("Ann", "mentor", "Bo"), ("Bo", "hometown", "Cy"), ("Dee", "mentor", "Bo"))


def qa(samples: list[Sample], kind: str) -> list[tuple[str, str]]:
    return [(s.question, s.answer) for s in samples if s.kind == kind]


def test_forward_and_reverse_one_per_question_with_every_answer() -> None:
    samples, removed = generate(build_graph(CHAIN, TABLE), Options(kinds=("forward", "reverse")))
    assert qa(samples, "forward") == [
        ("Who is the mentor of Ann?", "Bo."),
        ("What is the hometown of Bo?", "Cy."),
        ("Who is the mentor of Dee?", "Bo."),
    ]
    # Bo has two students: one reversed question names both, in the order the facts came.
    assert qa(samples, "reverse") == [
        ("Who is the student of Bo?", "Ann, Dee."),
        ("Who is the native of Cy?", "Bo."),
    ]
    assert not removed
    student = next(s for s in samples if s.question == "Who is the student of Bo?")
    assert student.meta() == {
        "kind": "reverse",
        "path": ["student"],
        "triples": [["Ann", "mentor", "Bo"], ["Dee", "mentor", "Bo"]],
    }


def test_two_hop_paths_compose_relations_and_skip_the_start() -> None:
    fg = build_graph(CHAIN, TABLE)
    stated, _ = generate(fg, Options(kinds=("hop",), hop_inverse=False))
    assert qa(stated, "hop") == [
        ("What is the hometown of the mentor of Ann?", "Cy."),
        ("What is the hometown of the mentor of Dee?", "Cy."),
    ]
    assert stated[0].path == ("mentor", "hometown")
    assert [t.as_list() for t in stated[0].triples] == [
        ["Ann", "mentor", "Bo"],
        ["Bo", "hometown", "Cy"],
    ]
    both, _ = generate(fg, Options(kinds=("hop",)))
    # Through inverse edges too (each node's edges in relation order); "the student of the
    # mentor of Ann" leaves out Ann herself.
    assert qa(both, "hop") == [
        ("What is the hometown of the mentor of Ann?", "Cy."),
        ("Who is the student of the mentor of Ann?", "Dee."),
        ("Who is the student of the native of Cy?", "Ann, Dee."),
        ("What is the hometown of the mentor of Dee?", "Cy."),
        ("Who is the student of the mentor of Dee?", "Ann."),
    ]


def test_three_hops_need_max_hops_three() -> None:
    chain = facts(("A", "mother", "B"), ("B", "mother", "C"), ("C", "hometown", "D"))
    fg = build_graph(chain, TABLE)
    two, _ = generate(fg, Options(kinds=("hop",), hop_inverse=False))
    three, _ = generate(fg, Options(kinds=("hop",), max_hops=3, hop_inverse=False))
    assert ("What is the hometown of the mother of the mother of A?", "D.") in qa(three, "hop")
    assert len(three) == len(two) + 1
    assert all(len(s.path) == 2 for s in two)


def test_chinese_templates() -> None:
    samples, _ = generate(build_graph(CHAIN[:2], TABLE), Options(langs=("zh",)))
    assert [(s.kind, s.question, s.answer) for s in samples] == [
        ("forward", "Ann的导师是谁？", "Bo。"),
        ("reverse", "Bo的学生是谁？", "Ann。"),
        ("forward", "Bo的家乡是哪里？", "Cy。"),
        ("reverse", "Cy的本地人是谁？", "Bo。"),
        ("hop", "Ann的导师的家乡是哪里？", "Cy。"),
        ("hop", "Cy的本地人的学生是谁？", "Ann。"),
    ]


def test_negatives_one_true_check_and_seeded_false_ones() -> None:
    fg = build_graph(CHAIN, TABLE)
    samples, _ = generate(fg, Options(kinds=("negative",), negatives=1, seed=3))
    # Only Bo is a mentor, so the mentor facts have no false object to swap in.
    assert qa(samples, "negative") == [
        ("Is Bo the mentor of Ann?", "Yes."),
        ("Is Cy the hometown of Bo?", "Yes."),
        ("Is Bo the mentor of Dee?", "Yes."),
    ]
    towns = facts(("Bo", "hometown", "Cy"), ("Eve", "hometown", "Fa"))
    again, _ = generate(build_graph(towns, TABLE), Options(kinds=("negative",)))
    assert qa(again, "negative") == [
        ("Is Cy the hometown of Bo?", "Yes."),
        ("Is Fa the hometown of Bo?", "No."),
        ("Is Fa the hometown of Eve?", "Yes."),
        ("Is Cy the hometown of Eve?", "No."),
    ]


def test_symmetric_relation_gives_no_duplicate_reverse() -> None:
    fg = build_graph(facts(("Al", "spouse", "Bea")), TABLE)
    samples, removed = generate(fg, Options(kinds=("forward", "reverse")))
    assert qa(samples, "forward") == [("Who is the spouse of Al?", "Bea.")]
    assert qa(samples, "reverse") == [("Who is the spouse of Bea?", "Al.")]
    assert not removed


def test_duplicates_counted_and_removed() -> None:
    fg = build_graph(
        facts(
            ("Ann", "mentor", "Bo"),
            ("Ann", "mentor", "Bo"),  # the same triple again
            ("Bo", "student", "Ann"),  # the same fact through the inverse relation
            ("Bo", "hometown", "Cy"),
        ),
        TABLE,
    )
    assert (fg.duplicates, fg.stated_both_ways) == (1, 1)
    assert fg.dropped == ["f.jsonl:2", "f.jsonl:3"]
    assert [f.triple.as_list() for f in fg.facts] == [
        ["Ann", "mentor", "Bo"],
        ["Bo", "hometown", "Cy"],
    ]


def test_dedupe_keeps_first_question_and_counts_by_kind() -> None:
    a = Sample("forward", "en", "Q?", "A.", ("r",), ())
    b = Sample("hop", "en", "Q?", "B.", ("r", "s"), ())
    c = Sample("hop", "zh", "Q?", "B.", ("r", "s"), ())
    kept, removed = dedupe([a, b, c])
    assert kept == [a, c]
    assert removed == {"hop": 1}


def test_components_largest_first() -> None:
    fg = build_graph([*CHAIN, *facts(("X", "spouse", "Y"))], TABLE)
    assert fg.components() == [{"Ann", "Bo", "Cy", "Dee"}, {"X", "Y"}]


def test_bad_options_are_one_line_errors() -> None:
    fg = build_graph(CHAIN, TABLE)
    with pytest.raises(DataError, match="unknown sample kind"):
        generate(fg, Options(kinds=("sideways",)))
    with pytest.raises(DataError, match="max_hops is 1"):
        generate(fg, Options(kinds=("hop",), max_hops=1))
    with pytest.raises(DataError, match="language 'fr'"):
        generate(fg, Options(langs=("fr",)))
