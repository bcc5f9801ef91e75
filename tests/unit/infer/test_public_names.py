"""Model ids the server shows: a local path becomes its folder's name, never the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.errors import ConfigError
from tunesmith.infer.api_error import APIError
from tunesmith.infer.protocol import public_names, resolve_model


class Names:
    """Just enough of an Engine: its names, and the adapter key of each."""

    def __init__(self, *names: str) -> None:
        self.names = list(names)

    def model_names(self) -> list[str]:
        return self.names

    def adapter_key(self, name: str) -> str | None:
        return None if name == self.names[0] else f"key:{name}"


def test_paths_become_folder_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "runs" / "nova").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    engine = Names(str(tmp_path / "models" / "base"), "runs/nova", "Qwen/Qwen2-0.5B", "builtin:x")
    names = public_names(engine)
    assert list(names) == ["base", "nova", "Qwen/Qwen2-0.5B", "builtin:x"]
    assert resolve_model(engine, "base", names) is None
    assert resolve_model(engine, "nova", names) == "key:runs/nova"
    with pytest.raises(APIError) as info:
        resolve_model(engine, str(tmp_path / "models" / "base"), names)
    assert info.value.status == 404 and info.value.code == "model_not_found"
    assert info.value.message.endswith("available: base, nova, Qwen/Qwen2-0.5B, builtin:x")


def test_two_models_with_one_id_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"both be served as 'nova'.*--adapter NAME=PATH"):
        public_names(Names(str(tmp_path / "a" / "nova"), "nova"))
