"""Reading facts: triples from JSONL/CSV/TSV/Parquet, or fact sentences from a text file.

A triple row has ``subject``, ``relation`` and ``object`` fields (``columns`` maps them to the
file's names). A ``.txt`` file holds one fact sentence per line, matched against the relation
table's ``fact`` templates ("The mentor of {subject} is {object}."). Every bad row is a one-line
``DataError`` naming ``file:line`` and the fix; nothing is skipped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tunesmith.data.augment.relations import RelationTable
from tunesmith.errors import DataError

FIELDS: tuple[str, ...] = ("subject", "relation", "object")


@dataclass(frozen=True)
class Triple:
    """One fact: the ``relation`` of ``subject`` is ``object``."""

    subject: str
    relation: str
    object: str

    def as_list(self) -> list[str]:
        """``[subject, relation, object]`` (how samples record their source triples)."""
        return [self.subject, self.relation, self.object]


@dataclass(frozen=True)
class Fact:
    """A triple and the ``file:line`` it was read from."""

    triple: Triple
    where: str


def read_facts(
    path: str | Path,
    table: RelationTable,
    *,
    columns: dict[str, str] | None = None,
    encoding: str | None = None,
) -> list[Fact]:
    """Every fact in ``path`` (a triples file, a folder of them, ``builtin:NAME`` or a ``.txt``
    of fact sentences), each relation checked against ``table``.

    Raises:
        DataError: a row lacks a field, has an empty one, names an unknown relation, or a
            sentence matches no ``fact`` template.
    """
    from tunesmith.data.sources import iter_records

    names = {f: (columns or {}).get(f, f) for f in FIELDS}
    unknown = set(columns or {}) - set(FIELDS)
    if unknown:
        raise DataError(
            f"{path}: columns maps unknown field(s) {', '.join(sorted(unknown))}; "
            f"map {', '.join(FIELDS)}"
        )
    patterns: list[tuple[re.Pattern[str], str]] | None = None
    facts: list[Fact] = []
    for record in iter_records(str(path), encoding=encoding):
        data = record.data
        if set(data) == {"text"} and names["subject"] not in data:  # a sentence file
            if patterns is None:
                patterns = sentence_patterns(table)
            facts.append(Fact(parse_sentence(data["text"], patterns, record.where), record.where))
            continue
        missing = [names[f] for f in FIELDS if names[f] not in data]
        if missing:
            have = ", ".join(sorted(map(str, data))) or "none"
            raise DataError(
                f"{record.where}: missing column(s) {', '.join(missing)} (the row has {have}); "
                "give subject, relation and object, or map them with columns"
            )
        values = [data[names[f]] for f in FIELDS]
        if any(not isinstance(v, str) or not v.strip() for v in values):
            raise DataError(
                f"{record.where}: subject, relation and object must be non-empty strings, got "
                f"{values!r}; fix the row"
            )
        subject, relation, obj = (v.strip() for v in values)
        table.get(relation, record.where)
        facts.append(Fact(Triple(subject, relation, obj), record.where))
    return facts


def sentence_patterns(table: RelationTable) -> list[tuple[re.Pattern[str], str]]:
    """``(regex, relation)`` for every ``fact`` template in the table, longest first (a more
    specific template wins over a shorter one that also matches)."""
    out: list[tuple[re.Pattern[str], str]] = []
    for rel in table.relations.values():
        for text in rel.text.values():
            if text.fact is None:
                continue
            parts = re.split(r"({subject}|{object})", text.fact)
            regex = "".join(
                "(?P<subject>.+?)"
                if p == "{subject}"
                else "(?P<object>.+?)"
                if p == "{object}"
                else re.escape(p)
                for p in parts
            )
            out.append((re.compile(rf"^\s*{regex}\s*$"), rel.name))
    out.sort(key=lambda pr: -len(pr[0].pattern))
    return out


def parse_sentence(text: str, patterns: list[tuple[re.Pattern[str], str]], where: str) -> Triple:
    """The triple a fact sentence states.

    Raises:
        DataError: no ``fact`` template matches the sentence.
    """
    for regex, relation in patterns:
        m = regex.match(text)
        if m:
            return Triple(m["subject"].strip(), relation, m["object"].strip())
    if not patterns:
        raise DataError(
            f"{where}: the relation table has no 'fact' templates to read sentences with; "
            "add them or give triples (subject, relation, object)"
        )
    raise DataError(
        f"{where}: {text[:60]!r} matches no fact template of the relation table; write it as "
        "one of the 'fact' templates or give the triple"
    )
