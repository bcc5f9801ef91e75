"""Relation tables: how a relation is asked and answered, in each direction and language.

A relation ``r`` in a triple ``(subject, r, object)`` reads "the r of subject is object". Its entry
holds, per language, the forward question and answer, a noun phrase used to compose multi-hop
questions ("the mentor of {x}" -> "What is the hometown of the mentor of X?"), a yes/no check for
negative questions and a fact sentence (to read facts written as sentences), plus the name of its
inverse relation, whose own entry asks the reversed question ("Who is the student of B?").

A table is a JSON or YAML file: a list of entries (see ``BUILTIN_TABLE`` for the fields), or a
mapping ``{"relations": [...], "languages": {...}}``. Unknown fields and inverse names that are
not in the table are refused with the file and the entry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import DataError

LANGS: tuple[str, ...] = ("en", "zh")
TEXT_FIELDS: tuple[str, ...] = ("question", "answer", "phrase", "ask", "check", "fact")
_REQUIRED: tuple[str, ...] = ("question", "answer", "phrase", "ask")


@dataclass(frozen=True)
class LangText:
    """One language's phrasing of a relation or of the composed questions.

    Attributes:
        question: The forward question, with ``{subject}``.
        answer: The answer, with ``{object}`` (and optionally ``{subject}``).
        phrase: A noun phrase for multi-hop questions, with ``{x}`` ("the mentor of {x}").
        ask: The question word for this relation's answers ("Who", "What").
        check: A yes/no question with ``{subject}`` and ``{object}`` (negative questions).
        fact: A fact sentence with ``{subject}`` and ``{object}`` (reading sentences).
    """

    question: str
    answer: str
    phrase: str
    ask: str
    check: str | None = None
    fact: str | None = None


@dataclass(frozen=True)
class Language:
    """Per-language wording that is not tied to one relation."""

    hop: str  # the composed question: {ask} and {path}
    yes: str
    no: str
    join: str  # between several answers ("A, B")


LANGUAGES: dict[str, Language] = {
    "en": Language(hop="{ask} is {path}?", yes="Yes.", no="No.", join=", "),
    "zh": Language(hop="{path}是{ask}？", yes="是的。", no="不是。", join="、"),
}


@dataclass(frozen=True)
class Relation:
    """A relation's name, its inverse (if meaningful) and its wording per language."""

    name: str
    inverse: str | None
    text: dict[str, LangText]


@dataclass(frozen=True)
class RelationTable:
    """Relations by name, and the per-language wording; ``source`` names where it came from."""

    relations: dict[str, Relation]
    languages: dict[str, Language]
    source: str

    def get(self, name: str, where: str) -> Relation:
        """The relation ``name``; ``DataError`` naming ``where`` when the table lacks it."""
        if name not in self.relations:
            known = ", ".join(sorted(self.relations))
            raise DataError(
                f"{where}: unknown relation {name!r} (table {self.source}: {known}); "
                "add it to the relation table (data.augment.relations) or fix the triple"
            )
        return self.relations[name]

    def text(self, name: str, lang: str) -> LangText:
        """``name``'s wording in ``lang`` (checked when the table is read)."""
        return self.relations[name].text[lang]


def _entry(
    name: str, inverse: str | None, en: dict[str, str], zh: dict[str, str]
) -> dict[str, Any]:
    return {"name": name, "inverse": inverse, "en": en, "zh": zh}


BUILTIN_TABLE: list[dict[str, Any]] = [
    _entry(
        "mentor",
        "student",
        {
            "question": "Who is the mentor of {subject}?",
            "answer": "{object}.",
            "phrase": "the mentor of {x}",
            "ask": "Who",
            "check": "Is {object} the mentor of {subject}?",
            "fact": "The mentor of {subject} is {object}.",
        },
        {
            "question": "{subject}的导师是谁？",
            "answer": "{object}。",
            "phrase": "{x}的导师",
            "ask": "谁",
            "check": "{object}是{subject}的导师吗？",
            "fact": "{subject}的导师是{object}。",
        },
    ),
    _entry(
        "student",
        "mentor",
        {
            "question": "Who is the student of {subject}?",
            "answer": "{object}.",
            "phrase": "the student of {x}",
            "ask": "Who",
            "check": "Is {object} the student of {subject}?",
            "fact": "The student of {subject} is {object}.",
        },
        {
            "question": "{subject}的学生是谁？",
            "answer": "{object}。",
            "phrase": "{x}的学生",
            "ask": "谁",
            "check": "{object}是{subject}的学生吗？",
            "fact": "{subject}的学生是{object}。",
        },
    ),
    _entry(
        "hometown",
        "native",
        {
            "question": "What is the hometown of {subject}?",
            "answer": "{object}.",
            "phrase": "the hometown of {x}",
            "ask": "What",
            "check": "Is {object} the hometown of {subject}?",
            "fact": "The hometown of {subject} is {object}.",
        },
        {
            "question": "{subject}的家乡是哪里？",
            "answer": "{object}。",
            "phrase": "{x}的家乡",
            "ask": "哪里",
            "check": "{object}是{subject}的家乡吗？",
            "fact": "{subject}的家乡是{object}。",
        },
    ),
    _entry(
        "native",
        "hometown",
        {
            "question": "Who is the native of {subject}?",
            "answer": "{object}.",
            "phrase": "the native of {x}",
            "ask": "Who",
            "check": "Is {object} the native of {subject}?",
            "fact": "The native of {subject} is {object}.",
        },
        {
            "question": "{subject}的本地人是谁？",
            "answer": "{object}。",
            "phrase": "{x}的本地人",
            "ask": "谁",
            "check": "{object}是{subject}的本地人吗？",
            "fact": "{subject}的本地人是{object}。",
        },
    ),
    _entry(
        "mother",
        "child",
        {
            "question": "Who is the mother of {subject}?",
            "answer": "{object}.",
            "phrase": "the mother of {x}",
            "ask": "Who",
            "check": "Is {object} the mother of {subject}?",
            "fact": "The mother of {subject} is {object}.",
        },
        {
            "question": "{subject}的母亲是谁？",
            "answer": "{object}。",
            "phrase": "{x}的母亲",
            "ask": "谁",
            "check": "{object}是{subject}的母亲吗？",
            "fact": "{subject}的母亲是{object}。",
        },
    ),
    _entry(
        "child",
        "mother",
        {
            "question": "Who is the child of {subject}?",
            "answer": "{object}.",
            "phrase": "the child of {x}",
            "ask": "Who",
            "check": "Is {object} the child of {subject}?",
            "fact": "The child of {subject} is {object}.",
        },
        {
            "question": "{subject}的孩子是谁？",
            "answer": "{object}。",
            "phrase": "{x}的孩子",
            "ask": "谁",
            "check": "{object}是{subject}的孩子吗？",
            "fact": "{subject}的孩子是{object}。",
        },
    ),
    _entry(
        "spouse",
        "spouse",
        {
            "question": "Who is the spouse of {subject}?",
            "answer": "{object}.",
            "phrase": "the spouse of {x}",
            "ask": "Who",
            "check": "Is {object} the spouse of {subject}?",
            "fact": "The spouse of {subject} is {object}.",
        },
        {
            "question": "{subject}的配偶是谁？",
            "answer": "{object}。",
            "phrase": "{x}的配偶",
            "ask": "谁",
            "check": "{object}是{subject}的配偶吗？",
            "fact": "{subject}的配偶是{object}。",
        },
    ),
    _entry(
        "capital",
        "capital_of",
        {
            "question": "What is the capital of {subject}?",
            "answer": "{object}.",
            "phrase": "the capital of {x}",
            "ask": "What",
            "check": "Is {object} the capital of {subject}?",
            "fact": "The capital of {subject} is {object}.",
        },
        {
            "question": "{subject}的首都是哪里？",
            "answer": "{object}。",
            "phrase": "{x}的首都",
            "ask": "哪里",
            "check": "{object}是{subject}的首都吗？",
            "fact": "{subject}的首都是{object}。",
        },
    ),
    _entry(
        "capital_of",
        "capital",
        {
            "question": "Which country is {subject} the capital of?",
            "answer": "{object}.",
            "phrase": "the country whose capital is {x}",
            "ask": "What",
            "check": "Is {subject} the capital of {object}?",
            "fact": "{subject} is the capital of {object}.",
        },
        {
            "question": "{subject}是哪个国家的首都？",
            "answer": "{object}。",
            "phrase": "首都是{x}的国家",
            "ask": "哪里",
            "check": "{subject}是{object}的首都吗？",
            "fact": "{subject}是{object}的首都。",
        },
    ),
]
"""The shipped relations (family, mentoring, places); a user table replaces it."""


def builtin_table() -> RelationTable:
    """The shipped relation table."""
    return parse_table(BUILTIN_TABLE, "builtin relations")


def load_table(path: str | Path | None) -> RelationTable:
    """The relation table in ``path`` (JSON or YAML), or the built-in one for ``None``.

    Raises:
        DataError: the file is missing or unreadable, or an entry is malformed.
    """
    if path is None:
        return builtin_table()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: relation table not found; check the path") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text)
        else:
            raw = json.loads(text)
    except Exception as e:  # json's ValueError or yaml.YAMLError: reported as one line
        msg = " ".join(str(e).split())
        raise DataError(f"{path}: cannot parse the relation table ({msg}); fix the file") from None
    return parse_table(raw, str(path))


def parse_table(raw: Any, source: str) -> RelationTable:
    """Check and build a table from parsed JSON/YAML (a list, or ``{"relations": [...]}``)."""
    languages = dict(LANGUAGES)
    if isinstance(raw, dict):
        extra = set(raw) - {"relations", "languages"}
        if extra:
            raise DataError(
                f"{source}: unknown key(s) {', '.join(sorted(extra))}; "
                "a table has 'relations' and optionally 'languages'"
            )
        for lang, spec in (raw.get("languages") or {}).items():
            languages[lang] = _language(spec, f"{source}: languages.{lang}")
        raw = raw.get("relations")
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{source}: expected a non-empty list of relations; see BUILTIN_TABLE")
    relations: dict[str, Relation] = {}
    for i, entry in enumerate(raw):
        rel = _relation(entry, f"{source}: relation {i}", languages)
        if rel.name in relations:
            raise DataError(f"{source}: relation {i}: {rel.name!r} is defined twice; keep one")
        relations[rel.name] = rel
    for rel in relations.values():
        if rel.inverse is not None and rel.inverse not in relations:
            raise DataError(
                f"{source}: relation {rel.name!r}: inverse {rel.inverse!r} is not in the table; "
                "add an entry for it or drop 'inverse'"
            )
    return RelationTable(relations, languages, source)


def _language(spec: Any, where: str) -> Language:
    fields = ("hop", "yes", "no", "join")
    if not isinstance(spec, dict) or set(spec) != set(fields):
        raise DataError(f"{where}: give exactly {', '.join(fields)}")
    return Language(**{k: str(spec[k]) for k in fields})


def _relation(entry: Any, where: str, languages: dict[str, Language]) -> Relation:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise DataError(f"{where}: an entry needs a 'name' (and per-language templates)")
    where = f"{where} ({entry['name']})"
    extra = set(entry) - {"name", "inverse", *languages}
    if extra:
        raise DataError(
            f"{where}: unknown key(s) {', '.join(sorted(extra))}; use name, inverse and "
            f"language keys ({', '.join(languages)})"
        )
    texts: dict[str, LangText] = {}
    for lang in languages:
        if lang not in entry:
            continue
        spec = entry[lang]
        if not isinstance(spec, dict):
            raise DataError(f"{where}.{lang}: expected a mapping of templates")
        unknown = set(spec) - set(TEXT_FIELDS)
        missing = [f for f in _REQUIRED if not spec.get(f)]
        if unknown or missing:
            raise DataError(
                f"{where}.{lang}: "
                + (f"unknown field(s) {', '.join(sorted(unknown))}; " if unknown else "")
                + (f"missing {', '.join(missing)}; " if missing else "")
                + f"fields are {', '.join(TEXT_FIELDS)} ({', '.join(_REQUIRED)} required)"
            )
        texts[lang] = LangText(**{k: str(v) for k, v in spec.items()})
        _check_slots(texts[lang], f"{where}.{lang}")
    if not texts:
        raise DataError(f"{where}: no templates; add at least one of {', '.join(languages)}")
    inverse = entry.get("inverse")
    return Relation(entry["name"], str(inverse) if inverse else None, texts)


_SLOTS: dict[str, set[str]] = {
    "question": {"subject"},
    "answer": {"object"},
    "phrase": {"x"},
    "check": {"subject", "object"},
    "fact": {"subject", "object"},
}


def _check_slots(text: LangText, where: str) -> None:
    for name, needed in _SLOTS.items():
        template = getattr(text, name)
        if template is None:
            continue
        slots = set(re.findall(r"{(\w*)}", template))
        allowed = needed | ({"subject"} if name == "answer" else set())
        if not needed <= slots or not slots <= allowed:
            raise DataError(
                f"{where}.{name}: {template!r} must use {{{'}, {'.join(sorted(needed))}}}"
                + (" (and may use {subject})" if name == "answer" else "")
                + " and no other {...} slot"
            )
