"""Picking data sources on the Configure tab: a file or ``builtin:NAME``, or an entry of a
LLaMA-Factory ``dataset_info.json``, appended to the ``data.datasets`` YAML box."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tunesmith.errors import ConfigError


def builtin_sources() -> list[str]:
    """The shipped data sets as ``builtin:NAME`` (generated families as ``builtin:FAMILY/PART``)."""
    from tunesmith.data.builtin import _FILES, _GENERATED

    generated = [f"{f}/{p}" for f, parts in _GENERATED.items() for p in parts]
    return [f"builtin:{name}" for name in sorted([*_FILES, *generated])]


def info_entries(info_path: str) -> list[str]:
    """The dataset names in a ``dataset_info.json`` (the file, or the folder holding it).

    Raises:
        DataError: the file is missing, is not JSON, or is not an object of named datasets.
    """
    from tunesmith.data.dataset_info import _load

    path = Path(info_path).expanduser()
    return list(_load(path / "dataset_info.json" if path.is_dir() else path))


def add_source(datasets_yaml: str, source: dict[str, Any]) -> str:
    """``data.datasets`` (its YAML box) with ``source`` appended.

    Raises:
        ConfigError: the box holds YAML that is not a list of sources.
    """
    try:
        current = yaml.safe_load(datasets_yaml or "") or []
    except yaml.YAMLError:
        raise ConfigError("data.datasets: invalid YAML; fix the box before adding to it") from None
    if not isinstance(current, list):
        raise ConfigError("data.datasets: must be a list of sources (- path: ...)")
    return yaml.safe_dump([*current, source], sort_keys=False, allow_unicode=True)
