"""The graph report: counts per relation and kind, components, and a sample-subgraph picture."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.data.augment.graph import FactGraph, Sample


@dataclass
class GraphReport:
    """What a graph held and what was generated from it."""

    facts: int
    entities: int
    duplicates: int
    stated_both_ways: int
    components: list[int]
    """Component sizes (entities), largest first."""
    relations: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    removed: Counter[str] = field(default_factory=Counter)
    langs: Counter[str] = field(default_factory=Counter)

    def markdown(self) -> str:
        """The report as Markdown."""
        sizes = Counter(self.components)
        lines = [
            "# Graph report",
            "",
            f"- Facts: {self.facts} ({self.duplicates} duplicates and {self.stated_both_ways} "
            "also stated through the inverse relation removed)",
            f"- Entities: {self.entities}; connected components: {len(self.components)} "
            f"(largest {self.components[0] if self.components else 0}; sizes: "
            + ", ".join(f"{n} x {s}" for s, n in sorted(sizes.items(), reverse=True))
            + ")",
            "",
            "| relation | facts |",
            "|---|---:|",
            *(f"| {r} | {n} |" for r, n in sorted(self.relations.items())),
            "",
            "| kind | samples | duplicate questions removed |",
            "|---|---:|---:|",
            *(f"| {k} | {self.kinds[k]} | {self.removed[k]} |" for k in sorted(self.kinds)),
            "",
            "Languages: " + ", ".join(f"{k} {n}" for k, n in sorted(self.langs.items())),
        ]
        return "\n".join(lines) + "\n"


def make_report(fg: FactGraph, samples: list[Sample], removed: Counter[str]) -> GraphReport:
    """Count ``fg``'s facts, entities and components and the generated ``samples`` by kind."""
    return GraphReport(
        facts=len(fg.facts),
        entities=fg.graph.number_of_nodes(),
        duplicates=fg.duplicates,
        stated_both_ways=fg.stated_both_ways,
        components=[len(c) for c in fg.components()],
        relations=Counter(f.triple.relation for f in fg.facts),
        kinds=Counter(s.kind for s in samples),
        removed=Counter(removed),
        langs=Counter(s.lang for s in samples),
    )


def sample_subgraph(fg: FactGraph, max_nodes: int = 12) -> list[str]:
    """Up to ``max_nodes`` entities for the picture: whole components, largest first, each walked
    breadth first from its first entity (edge direction ignored), the last one cut short."""
    import networkx as nx

    undirected = fg.graph.to_undirected(as_view=True)
    order: list[str] = []
    for part in fg.components():
        start = min(part)
        order += [start, *(v for _, v in nx.bfs_edges(undirected, start))]
        if len(order) >= max_nodes:
            break
    return order[:max_nodes]


def draw_subgraph(fg: FactGraph, out: Path, max_nodes: int = 12) -> Path:
    """Draw the stated facts among ``sample_subgraph`` entities into a PNG at ``out``."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt
    import networkx as nx

    nodes = sample_subgraph(fg, max_nodes)
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    labels: dict[tuple[str, str], str] = {}
    for u, v, (rel, inverse) in fg.graph.subgraph(nodes).edges(keys=True):
        if not inverse:  # stated facts only: the inverse edge is the same fact
            g.add_edge(u, v)
            labels[(u, v)] = f"{labels[(u, v)]}, {rel}" if (u, v) in labels else rel
    fig, ax = plt.subplots(figsize=(8, 6))
    pos = nx.spring_layout(g, seed=0)
    nx.draw_networkx(g, pos, ax=ax, node_color="#cde", node_size=900, font_size=7, arrows=True)
    nx.draw_networkx_edge_labels(g, pos, edge_labels=labels, ax=ax, font_size=7)
    ax.set_title(f"sample subgraph: {len(nodes)} of {fg.graph.number_of_nodes()} entities")
    ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
