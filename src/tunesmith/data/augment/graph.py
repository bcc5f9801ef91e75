"""The fact graph and the samples generated from it.

Facts become a ``networkx.MultiDiGraph``: one edge ``subject -> object`` keyed by the relation,
and, where the relation has an inverse, one edge ``object -> subject`` keyed by the inverse
(marked ``inverse``). A question is a start node and a relation path; its answer is every node the
path reaches, so a question with several answers names them all.

Kinds of samples (each tagged with its kind, relation path and source triples):

- ``forward``: a stated fact asked as stated ("Who is the mentor of A?" -> "B.");
- ``reverse``: the same fact asked through the inverse relation ("Who is the student of B?");
- ``hop``: 2..``max_hops`` relations composed along a path ("What is the hometown of the mentor
  of A?"), through inverse edges too unless ``hop_inverse`` is off;
- ``negative``: yes/no checks of a stated fact and of ``negatives`` false ones made by swapping
  the object for another object of the same relation ("Is C the mentor of A?" -> "No.").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from random import Random
from typing import Any

from tunesmith.data.augment.relations import RelationTable
from tunesmith.data.augment.triples import Fact, Triple
from tunesmith.errors import DataError

KINDS: tuple[str, ...] = ("forward", "reverse", "hop", "negative")


@dataclass(frozen=True)
class Options:
    """What to generate.

    Attributes:
        kinds: Any of ``KINDS``.
        max_hops: Longest composed path for ``hop`` (2 or more).
        langs: Languages to write each question in (every relation needs their templates).
        negatives: False claims checked per fact (``negative``; each fact also gets one true one).
        hop_inverse: Compose ``hop`` paths through inverse edges as well as stated ones.
        seed: Seeds the choice of false objects.
    """

    kinds: tuple[str, ...] = ("forward", "reverse", "hop")
    max_hops: int = 2
    langs: tuple[str, ...] = ("en",)
    negatives: int = 1
    hop_inverse: bool = True
    seed: int = 0


@dataclass(frozen=True)
class Sample:
    """One generated question and answer."""

    kind: str
    lang: str
    question: str
    answer: str
    path: tuple[str, ...]
    triples: tuple[Triple, ...]

    def meta(self) -> dict[str, Any]:
        """The provenance carried by the sample: kind, relation path and source triples."""
        return {
            "kind": self.kind,
            "path": list(self.path),
            "triples": [t.as_list() for t in self.triples],
        }

    def conversation(self) -> dict[str, Any]:
        """The canonical conversation row (``messages`` + ``lang`` + ``meta``)."""
        return {
            "messages": [
                {"role": "user", "content": self.question},
                {"role": "assistant", "content": self.answer},
            ],
            "lang": self.lang,
            "meta": self.meta(),
        }

    def eval_row(self, ident: str) -> dict[str, Any]:
        """A row for the ``generation`` eval task (``id``, ``prompt``, ``reference``, ``meta``)."""
        return {"id": ident, "prompt": self.question, "reference": self.answer, "meta": self.meta()}


@dataclass
class FactGraph:
    """Deduplicated facts, their graph and what deduplication removed."""

    graph: Any  # networkx.MultiDiGraph
    facts: list[Fact]
    table: RelationTable
    duplicates: int = 0
    """Facts given more than once (the same triple)."""
    stated_both_ways: int = 0
    """Facts also given through the inverse relation (``B student A`` after ``A mentor B``)."""
    dropped: list[str] = field(default_factory=list)
    """``file:line`` of every fact removed as a duplicate."""

    def components(self) -> list[set[str]]:
        """Connected groups of entities (edge direction ignored), largest first."""
        import networkx as nx

        parts = [set(c) for c in nx.weakly_connected_components(self.graph)]
        return sorted(parts, key=lambda c: (-len(c), min(c)))


def build_graph(facts: list[Fact], table: RelationTable) -> FactGraph:
    """Deduplicate ``facts`` (first occurrence kept, the rest counted) and build the graph."""
    import networkx as nx

    seen: set[Triple] = set()
    kept: list[Fact] = []
    out = FactGraph(nx.MultiDiGraph(), kept, table)
    for fact in facts:
        t = fact.triple
        inverse = table.get(t.relation, fact.where).inverse
        if t in seen:
            out.duplicates += 1
            out.dropped.append(fact.where)
            continue
        if inverse is not None and Triple(t.object, inverse, t.subject) in seen:
            out.stated_both_ways += 1
            out.dropped.append(fact.where)
            continue
        seen.add(t)
        kept.append(fact)
    g = out.graph
    for fact in kept:
        t = fact.triple
        g.add_edge(t.subject, t.object, key=(t.relation, False), triple=t)
        inverse = table.relations[t.relation].inverse
        if inverse is not None:
            g.add_edge(t.object, t.subject, key=(inverse, True), triple=t)
    return out


def generate(fg: FactGraph, options: Options) -> tuple[list[Sample], Counter[str]]:
    """Every sample ``options`` asks for, in a deterministic order, and the counts of samples
    removed as duplicates (by kind).

    Raises:
        DataError: an unknown kind, ``max_hops`` below 2, or a relation without templates in a
            requested language.
    """
    bad = [k for k in options.kinds if k not in KINDS]
    if bad:
        raise DataError(f"unknown sample kind(s) {', '.join(bad)}; use {', '.join(KINDS)}")
    if "hop" in options.kinds and options.max_hops < 2:
        raise DataError(f"max_hops is {options.max_hops}; composed questions need 2 or more")
    _check_languages(fg, options.langs)
    samples: list[Sample] = []
    for lang in options.langs:
        if "forward" in options.kinds or "reverse" in options.kinds:
            samples += [s for s in _one_hop(fg, lang) if s.kind in options.kinds]
        if "hop" in options.kinds:
            samples += _hops(fg, lang, options.max_hops, options.hop_inverse)
        if "negative" in options.kinds:
            samples += _negatives(fg, lang, options.negatives, options.seed)
    return dedupe(samples)


def dedupe(samples: list[Sample]) -> tuple[list[Sample], Counter[str]]:
    """The first sample of each ``(lang, question)``; the removed ones counted by kind."""
    seen: set[tuple[str, str]] = set()
    kept: list[Sample] = []
    removed: Counter[str] = Counter()
    for s in samples:
        key = (s.lang, s.question)
        if key in seen:
            removed[s.kind] += 1
            continue
        seen.add(key)
        kept.append(s)
    return kept, removed


def _check_languages(fg: FactGraph, langs: tuple[str, ...]) -> None:
    used = sorted({f.triple.relation for f in fg.facts})
    used += sorted({fg.table.relations[r].inverse or r for r in used} - set(used))
    for lang in langs:
        if lang not in fg.table.languages:
            raise DataError(
                f"language {lang!r} has no wording in {fg.table.source}; use "
                f"{', '.join(fg.table.languages)} or add it under 'languages'"
            )
        missing = [r for r in used if lang not in fg.table.relations[r].text]
        if missing:
            raise DataError(
                f"{fg.table.source}: relation(s) {', '.join(missing)} have no {lang!r} templates; "
                f"add them or drop {lang!r} from langs"
            )


def _answer(fg: FactGraph, lang: str, relation: str, subject: str, objects: list[str]) -> str:
    text = fg.table.text(relation, lang)
    joined = fg.table.languages[lang].join.join(objects)
    return text.answer.format(subject=subject, object=joined)


def _one_hop(fg: FactGraph, lang: str) -> list[Sample]:
    """Forward and reversed questions: one per (node, relation) with an outgoing edge."""
    g = fg.graph
    groups: dict[tuple[str, str], list[tuple[str, bool, Triple]]] = {}
    for fact in fg.facts:  # fact order, so samples come in the order the facts were given
        t = fact.triple
        groups.setdefault((t.subject, t.relation), [])
        inverse = fg.table.relations[t.relation].inverse
        if inverse is not None:
            groups.setdefault((t.object, inverse), [])
    for node, relation in groups:
        for _, target, (rel, inv), data in g.out_edges(node, keys=True, data=True):
            if rel == relation:
                groups[(node, relation)].append((target, inv, data["triple"]))
    out: list[Sample] = []
    for (node, relation), edges in groups.items():
        answers = list(dict.fromkeys(t for t, _, _ in edges))
        kind = "forward" if any(not inv for _, inv, _ in edges) else "reverse"
        q = fg.table.text(relation, lang).question.format(subject=node)
        triples = tuple(dict.fromkeys(tr for _, _, tr in edges))
        out.append(
            Sample(kind, lang, q, _answer(fg, lang, relation, node, answers), (relation,), triples)
        )
    return out


def _hops(fg: FactGraph, lang: str, max_hops: int, through_inverse: bool) -> list[Sample]:
    """Composed questions: a start node and 2..max_hops relations along a simple path."""
    g = fg.graph
    starts = list(dict.fromkeys(n for f in fg.facts for n in (f.triple.subject, f.triple.object)))
    groups: dict[tuple[str, tuple[str, ...]], dict[str, list[Triple]]] = {}

    def walk(path_nodes: list[str], rels: tuple[str, ...], triples: list[Triple]) -> None:
        node = path_nodes[-1]
        for _, target, (rel, inv), data in sorted(
            g.out_edges(node, keys=True, data=True), key=lambda e: (e[2], e[1])
        ):
            if (inv and not through_inverse) or target in path_nodes:
                continue
            trail = [*triples, data["triple"]]
            key = (*rels, rel)
            if len(key) >= 2:
                ends = groups.setdefault((path_nodes[0], key), {})
                ends.setdefault(target, trail)
            if len(key) < max_hops:
                walk([*path_nodes, target], key, trail)

    for start in starts:
        walk([start], (), [])
    hop = fg.table.languages[lang].hop
    out: list[Sample] = []
    for (start, rels), ends in groups.items():
        phrase = start
        for rel in rels:
            phrase = fg.table.text(rel, lang).phrase.format(x=phrase)
        ask = fg.table.text(rels[-1], lang).ask
        question = hop.format(ask=ask, path=phrase)
        answers = list(ends)
        triples = tuple(dict.fromkeys(t for trail in ends.values() for t in trail))
        out.append(
            Sample(
                "hop", lang, question, _answer(fg, lang, rels[-1], start, answers), rels, triples
            )
        )
    return out


def _negatives(fg: FactGraph, lang: str, per_fact: int, seed: int) -> list[Sample]:
    """A true yes/no check of each fact and ``per_fact`` false ones (another object of the same
    relation that is not an answer for this subject)."""
    rng = Random(seed)
    words = fg.table.languages[lang]
    objects: dict[str, list[str]] = {}
    answers: dict[tuple[str, str], set[str]] = {}
    for f in fg.facts:
        t = f.triple
        objects.setdefault(t.relation, [])
        if t.object not in objects[t.relation]:
            objects[t.relation].append(t.object)
        answers.setdefault((t.subject, t.relation), set()).add(t.object)
    out: list[Sample] = []
    for f in fg.facts:
        t = f.triple
        check = fg.table.text(t.relation, lang).check
        if check is None:
            raise DataError(
                f"{fg.table.source}: relation {t.relation!r} has no {lang!r} 'check' template "
                "for negative questions; add one or drop 'negative' from kinds"
            )
        path = (t.relation,)
        out.append(
            Sample(
                "negative",
                lang,
                check.format(subject=t.subject, object=t.object),
                words.yes,
                path,
                (t,),
            )
        )
        wrong = [o for o in objects[t.relation] if o not in answers[(t.subject, t.relation)]]
        for other in rng.sample(wrong, min(per_fact, len(wrong))):
            q = check.format(subject=t.subject, object=other)
            out.append(Sample("negative", lang, q, words.no, path, (t,)))
    return out
