"""Shared fixtures: offline environment, tiny models built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built-in models go to a per-session cache, never the user's."""
    cache = tmp_path_factory.mktemp("tunesmith-cache")
    os.environ["TUNESMITH_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_qwen2(_isolated_cache: Path) -> Path:
    """The built-in tiny Qwen2 (tokenizer + random-init model), built once."""
    from tunesmith.model.tiny import resolve_builtin

    return resolve_builtin("builtin:tiny-qwen2")


@pytest.fixture(scope="session")
def tiny_llama(_isolated_cache: Path) -> Path:
    """The built-in tiny Llama, built once."""
    from tunesmith.model.tiny import resolve_builtin

    return resolve_builtin("builtin:tiny-llama")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (real public demo data)."""
    return SHARED_DATA
