"""Graph report: counts per relation and kind, components, and the subgraph picture."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("networkx", reason="the fact graph is a networkx graph ([graph] extra)")

from tunesmith.data.augment.graph import Options, build_graph, generate
from tunesmith.data.augment.relations import builtin_table
from tunesmith.data.augment.report import draw_subgraph, make_report, sample_subgraph
from tunesmith.data.augment.triples import Fact, Triple

FACTS = [
    Fact(Triple(*t), f"f:{i}")
    for i, t in enumerate(
        [
            ("Ann", "mentor", "Bo"),
            ("Bo", "hometown", "Cy"),
            ("Ann", "mentor", "Bo"),
            ("Xi", "spouse", "Yu"),
        ],
        1,
    )
]


def test_report_counts_relations_kinds_and_components() -> None:
    fg = build_graph(FACTS, builtin_table())
    samples, removed = generate(fg, Options(kinds=("forward", "reverse", "hop")))
    report = make_report(fg, samples, removed)
    assert (report.facts, report.entities, report.duplicates) == (3, 5, 1)
    assert report.components == [3, 2]
    assert dict(report.relations) == {"mentor": 1, "hometown": 1, "spouse": 1}
    assert dict(report.kinds) == {"forward": 3, "reverse": 3, "hop": 2}
    md = report.markdown()
    assert "- Entities: 5; connected components: 2 (largest 3; sizes: 1 x 3, 1 x 2)" in md
    assert "| hop | 2 | 0 |" in md and "| spouse | 1 |" in md


def test_subgraph_picture(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the picture needs matplotlib ([graph] extra)")
    fg = build_graph(FACTS, builtin_table())
    assert sample_subgraph(fg, 4) == ["Ann", "Bo", "Cy", "Xi"]
    out = draw_subgraph(fg, tmp_path / "g" / "sub.png", 4)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
