"""``builtin:toy-shapes/...``: the toy image task, generated into the cache on first use."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from tunesmith.data.builtin import builtin_path
from tunesmith.data.sources import load_examples
from tunesmith.errors import DataError


def test_generated_on_first_use_into_the_cache(_isolated_cache: Path) -> None:
    path = builtin_path("toy-shapes/pretrain")
    assert path.is_file() and path.name == "pretrain.jsonl"
    assert _isolated_cache in path.parents
    folder = path.parent
    assert builtin_path("toy-shapes/sft") == folder / "sft.jsonl"
    assert builtin_path("toy-shapes/heldout") == folder / "heldout.jsonl"
    assert not list(folder.parent.glob(".*"))  # no temporary folder left behind
    stamp = path.stat().st_mtime_ns
    assert builtin_path("toy-shapes/pretrain").stat().st_mtime_ns == stamp  # written once


def test_same_files_as_the_data_command(tmp_path: Path) -> None:
    from tunesmith.cli import main

    assert main(["data", "toy-shapes", "--out", str(tmp_path / "toy")]) == 0
    cached = builtin_path("toy-shapes/sft").parent
    names = ["pretrain.jsonl", "sft.jsonl", "heldout.jsonl", "images/heldout-0089.png"]
    match, mismatch, errors = filecmp.cmpfiles(cached, tmp_path / "toy", names, shallow=False)
    assert match == names, (mismatch, errors)


def test_images_resolve_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name, fmt in (("pretrain", "llava"), ("sft", "openai")):
        result = load_examples(f"builtin:toy-shapes/{name}", fmt=fmt)
        assert len(result.examples) == 360
        images = [img for ex in result.examples[:5] for img in ex.images]
        assert images and all(Path(img).is_absolute() and Path(img).is_file() for img in images)


def test_unknown_part_names_the_valid_ones() -> None:
    with pytest.raises(DataError, match=r"toy-shapes/pretrain.*toy-shapes/sft"):
        builtin_path("toy-shapes/nope")
