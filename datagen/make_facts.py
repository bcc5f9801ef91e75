"""Generate the reversal-curse demonstration data (``builtin:facts_*``).

Run ``python -m datagen.make_facts`` from the repository root to rewrite the files below; the
output is byte-identical on every run.

A seeded RNG makes up ``UNITS`` small chains of fictional facts: a person (the student), their
mentor, and the mentor's hometown, with names built from random syllables, so no model can know
them in advance. Each chain is two triples, ``(student, mentor, M)`` and ``(M, hometown, T)``.
The last ``HELDOUT_UNITS`` chains are held out: their facts are trained forward only.

- ``facts_triples.jsonl``: every triple (``subject``, ``relation``, ``object``, ``unit``,
  ``split``), the input a user would give ``tunesmith data graph``;
- ``facts_train_triples.jsonl``: the triples of the training chains only (what the augmented
  recipe's ``data.augment`` expands into reversed and 2-hop samples);
- ``facts_forward.jsonl``: forward questions about every triple, as conversations;
- ``facts_heldout_forward.jsonl`` / ``facts_heldout_reverse.jsonl`` / ``facts_heldout_2hop.jsonl``:
  eval rows (``id``, ``prompt``, ``reference``) about the held-out chains: their forward facts
  (trained), the same facts reversed and the 2-hop "hometown of the mentor" (never trained).

The samples are written by ``tunesmith.data.augment``, the same code ``data.augment`` runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from random import Random
from typing import Any

if __package__ in (None, ""):  # `python datagen/<script>.py`: let it `import datagen`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT_DIR = Path(__file__).resolve().parent.parent / "src" / "tunesmith" / "data" / "builtin"
SEED = 20261202
UNITS = 120
HELDOUT_UNITS = 40

ONSETS: tuple[str, ...] = (
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "tr",
    "st", "th", "sh", "qu",
)  # fmt: skip
VOWELS: tuple[str, ...] = ("a", "e", "i", "o", "u", "ae", "ei", "ou", "ia")
CODAS: tuple[str, ...] = ("", "", "n", "r", "l", "s", "x", "m")
TOWN_ENDS: tuple[str, ...] = ("mar", "holt", "wick", "dell", "ford", "stead", "moor", "gate")


def _word(rng: Random, syllables: int) -> str:
    parts = [rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables)]
    return "".join(parts).capitalize()


def make_names(rng: Random, count: int, kind: str) -> list[str]:
    """``count`` distinct made-up names: ``person`` (first and last name) or ``town``."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        if kind == "person":
            name = f"{_word(rng, 2)} {_word(rng, 2)}"
        else:
            name = _word(rng, 2) + rng.choice(TOWN_ENDS)
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def make_triples(seed: int = SEED, units: int = UNITS) -> list[dict[str, Any]]:
    """Two triples per chain; the last ``HELDOUT_UNITS`` chains are ``heldout``."""
    rng = Random(seed)
    people = make_names(rng, 2 * units, "person")
    towns = make_names(rng, units, "town")
    rows: list[dict[str, Any]] = []
    for u in range(units):
        student, mentor, town = people[2 * u], people[2 * u + 1], towns[u]
        split = "heldout" if u >= units - HELDOUT_UNITS else "train"
        for s, r, o in ((student, "mentor", mentor), (mentor, "hometown", town)):
            rows.append({"subject": s, "relation": r, "object": o, "unit": u, "split": split})
    return rows


def _samples(rows: list[dict[str, Any]], kinds: tuple[str, ...]) -> list[Any]:
    from tunesmith.data.augment.graph import Options, build_graph, generate
    from tunesmith.data.augment.relations import builtin_table
    from tunesmith.data.augment.triples import Fact, Triple

    table = builtin_table()
    facts = [
        Fact(Triple(r["subject"], r["relation"], r["object"]), f"row {i}")
        for i, r in enumerate(rows, 1)
    ]
    samples, removed = generate(build_graph(facts, table), Options(kinds=kinds, hop_inverse=False))
    if removed:
        raise ValueError(f"made-up names collided: duplicate samples {dict(removed)}")
    return samples


def render(rows: list[dict[str, Any]]) -> str:
    """JSON lines, one object per line, non-ASCII kept as is."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def outputs() -> dict[str, str]:
    """File name -> exact contents of every file this generator writes.

    Raises:
        ValueError: a held-out reversed or 2-hop question is also one the augmented recipe
            trains on (it must not be).
    """
    from tunesmith.data.augment.graph import Options, build_graph, generate
    from tunesmith.data.augment.relations import builtin_table
    from tunesmith.data.augment.triples import Fact, Triple

    triples = make_triples()
    train = [r for r in triples if r["split"] == "train"]
    heldout = [r for r in triples if r["split"] == "heldout"]
    forward = _samples(triples, ("forward",))
    held_fwd = _samples(heldout, ("forward",))
    held_rev = _samples(heldout, ("reverse",))
    held_hop = _samples(heldout, ("hop",))
    # What data.augment of reversal-augmented.yaml generates (kinds reverse + hop, both ways).
    table = builtin_table()
    facts = [Fact(Triple(r["subject"], r["relation"], r["object"]), "") for r in train]
    augmented, _ = generate(build_graph(facts, table), Options(kinds=("reverse", "hop")))
    trained = {s.question for s in [*forward, *augmented]}
    for s in [*held_rev, *held_hop]:
        if s.question in trained:
            raise ValueError(f"held-out question {s.question!r} is also trained")
    return {
        "facts_triples.jsonl": render(triples),
        "facts_train_triples.jsonl": render(train),
        "facts_forward.jsonl": render([s.conversation() for s in forward]),
        "facts_heldout_forward.jsonl": render(
            [s.eval_row(f"forward-{i}") for i, s in enumerate(held_fwd)]
        ),
        "facts_heldout_reverse.jsonl": render(
            [s.eval_row(f"reverse-{i}") for i, s in enumerate(held_rev)]
        ),
        "facts_heldout_2hop.jsonl": render(
            [s.eval_row(f"2hop-{i}") for i, s in enumerate(held_hop)]
        ),
    }


def main(out_dir: Path = OUT_DIR) -> None:
    """Write every output file into ``out_dir``."""
    for name, text in outputs().items():
        (out_dir / name).write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {out_dir / name} ({text.count(chr(10))} rows)")


if __name__ == "__main__":
    main()
