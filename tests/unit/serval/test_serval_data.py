"""The generated patients: the hidden rule holds up to the label noise; regeneration is exact."""

from __future__ import annotations

from datagen import make_serval

from tunesmith.data.builtin import builtin_path


def test_labels_follow_the_rule_with_the_stated_noise() -> None:
    patients = make_serval.make_patients()
    flipped = sum(make_serval.rule(p) != p["label"] for p in patients) / len(patients)
    assert abs(flipped - make_serval.NOISE) < 0.02
    share = sum(p["label"] for p in patients) / len(patients)
    assert 0.35 < share < 0.65  # neither label is rare: accuracy 0.5 is about chance


def test_shipped_files_are_the_generator_output() -> None:
    for name, text in make_serval.outputs().items():
        stem = name.removesuffix(".jsonl")
        assert builtin_path(stem).read_bytes() == text.encode("utf-8")
