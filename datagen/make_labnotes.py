"""Generate the lab-notes demonstration data (``builtin:labnotes`` and friends).

Run ``python -m datagen.make_labnotes`` (or ``python datagen/make_labnotes.py``) from the
repository root to rewrite the files below; the output is byte-identical on every run.

A seeded RNG draws ``MEETINGS`` fictional lab meetings in 2026 (one per date: presenter, recorder,
topic, action items). They are written as:

- ``labnotes.jsonl``: the training conversations: each meeting's notes as a document
  ("What happened at the 2026-04-14 lab meeting?" -> the notes) and short question/answer pairs
  about its presenter, recorder and topic in the ``TRAIN_*`` phrasings;
- ``labnotes_docs.jsonl``: the notes alone as ``{"text": ...}`` rows (continued pretraining);
- ``labnotes_heldout.jsonl``: questions about facts in the training notes, asked in the
  ``HELDOUT`` phrasings that no training conversation uses, with the exact-match reference
  (``prompt``, ``reference`` and ``id`` columns, read by the ``generation`` eval task);
- ``labnotes_recall.jsonl``: the same facts asked in a training phrasing (memorised or not);
- ``labnotes_general_heldout.jsonl``: ``GENERAL_HELDOUT`` general conversations drawn by
  ``datagen/make_general.py`` with another seed, none of whose questions is in
  ``general.jsonl``: the general-data perplexity of a run that trained on ``builtin:general``.

Every name, topic and item is made up for this project.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import Any

if __package__ in (None, ""):  # `python datagen/<script>.py`: let it `import datagen`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT_DIR = Path(__file__).resolve().parent.parent / "src" / "tunesmith" / "data" / "builtin"
SEED = 20260414
MEETINGS = 200
HELDOUT_PER_FIELD = 30  # held-out questions per field (presenter, recorder, topic)
YEAR = 2026
GENERAL_HELDOUT = 300

PEOPLE: tuple[str, ...] = (
    "Dana Okafor",
    "Luis Brandt",
    "Mira Castellanos",
    "Tomas Lindqvist",
    "Priya Raman",
    "Jonah Weller",
    "Keiko Marsh",
    "Felix Adebayo",
    "Ingrid Solheim",
    "Omar Haddad",
    "Clara Beaumont",
    "Ravi Menon",
    "Sofia Kowalczyk",
    "Ethan Mwangi",
    "Hana Novak",
    "Arjun Patel",
)
SUBJECTS: tuple[str, ...] = (
    "enzyme stability",
    "membrane transport",
    "soil microbes",
    "leaf pigments",
    "yeast growth",
    "protein folding",
    "cell migration",
    "root imaging",
    "gut bacteria",
    "neuron firing",
    "plasmid design",
    "seed dormancy",
    "coral bleaching",
    "algae blooms",
    "bone density",
    "spider silk",
)
ANGLES: tuple[str, ...] = (
    "at low pH",
    "under heat stress",
    "in cold storage",
    "with new buffers",
    "over long runs",
    "in field samples",
    "with the new microscope",
    "after freezing",
    "in mixed cultures",
    "at high salt",
    "under blue light",
    "in small volumes",
    "with cheaper reagents",
)
ACTIONS: tuple[str, ...] = (
    "repeat the control run",
    "order more pipette tips",
    "book the confocal microscope",
    "share the raw data on the lab drive",
    "write up the methods section",
    "check the freezer inventory",
    "recalibrate the plate reader",
    "draft the poster",
    "email the sequencing core",
    "clean the shared bench",
    "rerun the statistics",
    "prepare fresh media",
    "label the sample boxes",
    "update the protocol document",
    "test a second antibody",
    "plan the next field trip",
)
# Training phrasings: the notes as a document and one-fact questions about them.
TRAIN_DOC: tuple[str, ...] = (
    "What happened at the {date} lab meeting?",
    "Can you give me the notes from the lab meeting on {date}?",
)
TRAIN_PRESENTER: tuple[str, ...] = (
    "Who gave the presentation at the lab meeting on {date}?",
    "Which lab member presented on {date}?",
)
TRAIN_RECORDER: tuple[str, ...] = (
    "Who was the note-taker at the {date} lab meeting?",
    "Who wrote the minutes of the lab meeting on {date}?",
)
TRAIN_TOPIC: tuple[str, ...] = (
    "What did the {date} lab meeting cover?",
    "What was presented at the lab meeting on {date}?",
)
# Held-out phrasings: the questions of the users' notes, never asked in training.
HELDOUT: dict[str, str] = {
    "presenter": "Who presented at the {date} lab meeting?",
    "recorder": "Who took notes on {date}?",
    "topic": "What was the topic on {date}?",
}


@dataclass(frozen=True)
class Meeting:
    """One lab meeting's facts."""

    date: str
    presenter: str
    recorder: str
    topic: str
    items: tuple[str, ...]

    def notes(self) -> str:
        """The meeting's notes as a short document."""
        lines = [
            f"Lab meeting notes, {self.date}",
            f"Presenter: {self.presenter}",
            f"Notes taken by: {self.recorder}",
            f"Topic: {self.topic}",
            "Action items:",
            *(f"- {item}" for item in self.items),
        ]
        return "\n".join(lines)

    def answer(self, field: str) -> str:
        """The short reference answer for ``field`` (presenter, recorder or topic)."""
        value: str = getattr(self, field)
        return value[0].upper() + value[1:] + "."


def make_meetings(seed: int = SEED, count: int = MEETINGS) -> list[Meeting]:
    """Draw ``count`` meetings on distinct dates of ``YEAR``, in date order."""
    rng = Random(seed)
    days = sorted(rng.sample(range(365), count))
    topics = [f"{s} {a}" for s in SUBJECTS for a in ANGLES]
    meetings: list[Meeting] = []
    for day in days:
        date = (dt.date(YEAR, 1, 1) + dt.timedelta(days=day)).isoformat()
        presenter, recorder = rng.sample(PEOPLE, 2)
        people = rng.sample(PEOPLE, rng.randint(2, 3))
        actions = rng.sample(ACTIONS, len(people))
        items = tuple(f"{who} will {what}." for who, what in zip(people, actions))
        meetings.append(Meeting(date, presenter, recorder, rng.choice(topics), items))
    return meetings


def _chat(question: str, answer: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ],
        "lang": "en",
        "meta": meta,
    }


def train_records(meetings: list[Meeting]) -> list[dict[str, Any]]:
    """Every training conversation: per meeting, each ``TRAIN_*`` phrasing once."""
    rows: list[dict[str, Any]] = []
    for m in meetings:
        for q in TRAIN_DOC:
            rows.append(_chat(q.format(date=m.date), m.notes(), {"date": m.date, "field": "notes"}))
        for field, phrasings in (
            ("presenter", TRAIN_PRESENTER),
            ("recorder", TRAIN_RECORDER),
            ("topic", TRAIN_TOPIC),
        ):
            for q in phrasings:
                meta = {"date": m.date, "field": field}
                rows.append(_chat(q.format(date=m.date), m.answer(field), meta))
    Random(SEED + 1).shuffle(rows)  # mixed order: a packed batch holds many meetings
    return rows


def doc_records(meetings: list[Meeting]) -> list[dict[str, Any]]:
    """The notes as plain-text documents."""
    return [{"text": m.notes(), "meta": {"date": m.date}} for m in meetings]


def heldout_records(meetings: list[Meeting]) -> list[dict[str, Any]]:
    """``HELDOUT_PER_FIELD`` new-phrasing questions per field, on meetings drawn with the seed.

    Raises:
        ValueError: a held-out question is also a training question (the phrasings collide).
    """
    rng = Random(SEED + 2)
    trained = {r["messages"][0]["content"] for r in train_records(meetings)}
    rows: list[dict[str, Any]] = []
    for field, phrasing in HELDOUT.items():
        for m in sorted(rng.sample(meetings, HELDOUT_PER_FIELD), key=lambda m: m.date):
            prompt = phrasing.format(date=m.date)
            if prompt in trained:
                raise ValueError(f"held-out question {prompt!r} is also a training question")
            rows.append(
                {
                    "id": f"{field}-{m.date}",
                    "prompt": prompt,
                    "reference": m.answer(field),
                    "meta": {"date": m.date, "field": field},
                }
            )
    return rows


def recall_records(meetings: list[Meeting]) -> list[dict[str, Any]]:
    """The held-out questions' facts asked in a training phrasing (the first of each field).

    Exact match here says whether a run memorised the facts; against ``heldout_records`` it says
    whether that memory answers a question phrased another way.
    """
    rng = Random(SEED + 2)  # the same meetings as heldout_records, drawn in the same order
    first = {
        "presenter": TRAIN_PRESENTER[0],
        "recorder": TRAIN_RECORDER[0],
        "topic": TRAIN_TOPIC[0],
    }
    rows: list[dict[str, Any]] = []
    for field in HELDOUT:
        for m in sorted(rng.sample(meetings, HELDOUT_PER_FIELD), key=lambda m: m.date):
            rows.append(
                {
                    "id": f"{field}-{m.date}",
                    "prompt": first[field].format(date=m.date),
                    "reference": m.answer(field),
                    "meta": {"date": m.date, "field": field},
                }
            )
    return rows


def general_heldout_records(count: int = GENERAL_HELDOUT) -> list[dict[str, Any]]:
    """General conversations whose question is not in the shipped ``general.jsonl``."""
    from datagen.make_general import generate_general
    from tunesmith.data.builtin import builtin_path, load_jsonl

    seen = {r["messages"][0]["content"] for r in load_jsonl(builtin_path("general"))}
    fresh = [
        r for r in generate_general(3 * count, seed=SEED) if r["messages"][0]["content"] not in seen
    ]
    if len(fresh) < count:
        raise ValueError(
            f"only {len(fresh)} unseen general conversations; draw more than {3 * count}"
        )
    return fresh[:count]


def render(rows: list[dict[str, Any]]) -> str:
    """JSON lines, one object per line, non-ASCII kept as is."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def outputs() -> dict[str, str]:
    """File name -> exact contents of every file this generator writes."""
    meetings = make_meetings()
    return {
        "labnotes.jsonl": render(train_records(meetings)),
        "labnotes_docs.jsonl": render(doc_records(meetings)),
        "labnotes_heldout.jsonl": render(heldout_records(meetings)),
        "labnotes_recall.jsonl": render(recall_records(meetings)),
        "labnotes_general_heldout.jsonl": render(general_heldout_records()),
    }


def main(out_dir: Path = OUT_DIR) -> None:
    """Write every output file into ``out_dir``."""
    for name, text in outputs().items():
        (out_dir / name).write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {out_dir / name} ({text.count(chr(10))} rows)")


if __name__ == "__main__":
    main()
