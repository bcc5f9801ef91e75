"""Question perturbations: exact outputs for given seeds, and when each one does not apply."""

from __future__ import annotations

import random

from tunesmith.evaluate.perturb import (
    PERTURBATIONS,
    casing,
    clause_order,
    punctuation,
    synonym,
    variants,
    width,
)


def rng(seed: int = 7) -> random.Random:
    return random.Random(seed)


def test_punctuation_drops_adds_or_switches_width() -> None:
    # Seed 7 picks the full-width switch; seed 1 drops the final mark.
    assert punctuation("Who wrote Hamlet?", rng(7), False) == "Who wrote Hamlet？"
    assert punctuation("Who wrote Hamlet?", rng(1), False) == "Who wrote Hamlet"
    assert punctuation("谁写了《哈姆雷特》？", rng(7), True) == "谁写了《哈姆雷特》?"
    # No final mark: one is added (the only option).
    assert punctuation("Who wrote Hamlet", rng(7), False) == "Who wrote Hamlet?"
    assert punctuation("谁写的", rng(7), True) == "谁写的？"


def test_casing_and_width() -> None:
    assert casing("Who wrote Hamlet?", rng(0), False) == "WHO WROTE HAMLET?"
    assert casing("Who wrote Hamlet?", rng(1), False) == "who wrote hamlet?"
    assert casing("谁？", rng(0), True) is None  # no Latin letters
    assert width("On 4/14?", rng(), False) == "Ｏｎ ４/１４?"
    assert width("在４月１４日", rng(), True) == "在4月14日"
    assert width("谁？", rng(), True) is None


def test_clause_order_only_where_safe() -> None:
    assert clause_order("On 4/14, who gave the talk?", rng(), False) == "Who gave the talk on 4/14?"
    assert clause_order("If it rains, what should I buy?", rng(), False) == (
        "What should I buy if it rains?"
    )
    assert clause_order("如果下雨，我该带什么？", rng(), True) == "我该带什么，如果下雨？"
    assert clause_order("Paris, France, is big?", rng(), False) is None  # two commas
    assert clause_order("Well, who knows?", rng(), False) is None  # not a movable opener
    assert clause_order("今天，谁来？", rng(), True) is None


def test_synonym_table_en_zh_keeps_case() -> None:
    assert synonym("Who gave the big talk?", rng(0), False) == "Who gave the large talk?"
    assert synonym("Who gave the big talk?", rng(1), False) == "Who delivered the big talk?"
    assert synonym("谁做了报告？", rng(7), True) == "谁做了汇报？"
    assert synonym("BIG deal", rng(7), False) == "LARGE deal"
    assert synonym("Hello there", rng(7), False) is None
    assert synonym("A bigger one", rng(7), False) is None  # whole words only
    assert synonym("What's your name?", rng(0), False) == "What is your name?"
    assert synonym("Who presented at the 2026-01-17 lab meeting?", rng(0), False) == (
        "Who presented at the 2026-01-17 group meeting?"
    )
    assert synonym("Who presented at the 2026-01-17 lab meeting?", rng(1), False) == (
        "Who gave a talk at the 2026-01-17 lab meeting?"
    )
    assert synonym("你叫什么来着？", rng(0), True) == "你叫啥来着？"
    assert synonym("你叫什么来着？", rng(1), True) == "您叫什么来着？"


def test_variants_are_distinct_and_seeded() -> None:
    made = variants("If it rains, what should I buy?", 3, list(PERTURBATIONS), "a")
    assert made == [
        ("clause_order", "What should I buy if it rains?"),
        ("casing", "if it rains, what should i buy?"),
        ("casing", "If it rains, what should i buy?"),
    ]
    assert variants("If it rains, what should I buy?", 3, list(PERTURBATIONS), "a") == made
    assert variants("If it rains, what should I buy?", 3, list(PERTURBATIONS), "b") != made
    # Fewer variants than asked when the text allows no more; never the text itself.
    assert variants("Hi", 6, ["casing"], "a") == [("casing", "HI"), ("casing", "hi")]
    assert variants("谁？", 2, ["casing"], "a") == []
