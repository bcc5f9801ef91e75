"""Model names (issue 15): local paths, hub ids and damaged weights, each with a one-line error.

A name that looks like a path and does not exist is "not found" at once, without a network
attempt; only a hub-looking id goes to the Hugging Face Hub, and an unreachable hub fails fast
with a hint about offline mode. Damaged weights name the file and what to do.
"""

from __future__ import annotations

import json
import shutil
import struct
import time
from pathlib import Path

import pytest

from tunesmith.errors import ConfigError
from tunesmith.model import tiny
from tunesmith.model.loader import load_model, looks_like_path, resolve_model_path


@pytest.mark.parametrize(
    "name",
    [
        "./runs/typo",
        "/no/such/dir/model",
        "~/no-such-tunesmith-model",
        "runs/identity/model",
        "model.safetensors",
        "my-config.yaml",
        "C:\\models\\x",
        "has space/model",
    ],
)
def test_path_like_names_are_not_found_at_once(
    name: str, online: Path, no_network: list[object]
) -> None:
    assert looks_like_path(name)
    t = time.perf_counter()
    with pytest.raises(ConfigError, match="not found") as err:
        resolve_model_path(name)
    assert time.perf_counter() - t < 1.0 and not no_network
    assert str(err.value).startswith(f"model.name {name!r}:") and "\n" not in str(err.value)


def test_org_name_is_a_path_when_org_is_a_local_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, online: Path, no_network: list[object]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert looks_like_path("runs/typo") and not looks_like_path("Qwen/Qwen2.5-0.5B-Instruct")
    with pytest.raises(ConfigError, match="not found"):
        resolve_model_path("runs/typo")
    assert not no_network


@pytest.mark.parametrize("name", ["Qwen/Qwen2.5-0.5B-Instruct", "gpt2", "meta-llama/Llama-3.2-1B"])
def test_hub_ids_do_not_look_like_paths(name: str) -> None:
    assert not looks_like_path(name)


def test_unreachable_hub_fails_fast_and_mentions_offline_mode(
    online: Path, no_network: list[object]
) -> None:
    t = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        resolve_model_path("someorg/some-model")
    assert time.perf_counter() - t < 2.0
    msg = str(err.value)
    assert msg.startswith("model.name 'someorg/some-model': not found locally")
    assert "cannot be reached" in msg and "HF_HUB_OFFLINE=1" in msg and "\n" not in msg
    assert 0 < len(no_network) <= 3  # one short probe, no retries


def test_reachable_hub_gets_the_id_and_is_probed_once(
    online: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.utils

    heads: list[str] = []

    class Session:
        def head(self, url: str, timeout: float) -> None:
            heads.append(url)

    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: Session())
    assert resolve_model_path("someorg/some-model") == "someorg/some-model"
    assert resolve_model_path("someorg/other-model") == "someorg/other-model"
    assert len(heads) == 1  # the answer is kept for a minute


def test_offline_mode_and_not_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        resolve_model_path("someorg/some-model", what="model.tokenizer")
    msg = str(err.value)
    assert msg.startswith("model.tokenizer 'someorg/some-model': not found locally")
    assert "HF_HUB_OFFLINE" in msg


def fake_cached(cache: Path, repo: str, source: Path) -> Path:
    """A hub cache entry for ``repo`` holding a copy of ``source`` (refs/main -> snapshot)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / ("a" * 40)
    shutil.copytree(source, snapshot)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("a" * 40)
    return snapshot


def test_cached_model_loads_from_the_cache_when_the_hub_is_unreachable(
    online: Path, no_network: list[object], tiny_qwen2: Path
) -> None:
    snapshot = fake_cached(online, "someorg/tiny", tiny_qwen2)
    assert Path(resolve_model_path("someorg/tiny")) == snapshot


# ---- issue 14: the right key, damaged weights ------------------------------------------------
def test_missing_tokenizer_path_names_model_tokenizer(tmp_path: Path) -> None:
    from tunesmith.config.load import load_config
    from tunesmith.model.loader import tokenizer_for

    cfg = load_config(
        tree={"data": {"datasets": [{"path": "builtin:general"}]}},
        overrides=[f"model.tokenizer={tmp_path / 'tok'}"],
    )
    with pytest.raises(ConfigError) as err:
        tokenizer_for(cfg.model)
    assert str(err.value).startswith(f"model.tokenizer {str(tmp_path / 'tok')!r}: ")
    assert "not found" in str(err.value)


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def cut(path: Path, size: int) -> None:
    with path.open("r+b") as f:
        f.truncate(size)


@pytest.mark.parametrize("keep", [0.5, 0.0001, 4])
def test_truncated_weights_name_the_file_and_the_fix(
    tmp_path: Path, tiny_qwen2: Path, keep: float
) -> None:
    folder = copy_model(tiny_qwen2, tmp_path / "m")
    weights = folder / "model.safetensors"
    cut(weights, int(weights.stat().st_size * keep) if keep < 1 else int(keep))
    with pytest.raises(ConfigError) as err:
        load_model(str(folder))
    msg = str(err.value)
    assert msg.startswith(f"model.name {str(folder)!r}: {weights} is damaged") and "\n" not in msg
    assert "cut off" in msg and "download" in msg


def test_missing_shard_is_named(tmp_path: Path, tiny_qwen2: Path) -> None:
    folder = copy_model(tiny_qwen2, tmp_path / "m")
    header_len = struct.unpack("<Q", (folder / "model.safetensors").read_bytes()[:8])[0]
    header = json.loads((folder / "model.safetensors").read_bytes()[8 : 8 + header_len])
    shard = "model-00002-of-00002.safetensors"
    index = {"metadata": {}, "weight_map": {k: shard for k in header if k[0] != "_"}}
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ConfigError, match=r"model-00002-of-00002\.safetensors is missing"):
        load_model(str(folder))


def test_damaged_hub_cache_entry_says_where_to_delete(
    online: Path, no_network: list[object], tiny_qwen2: Path
) -> None:
    snapshot = fake_cached(online, "someorg/tiny", tiny_qwen2)
    cut(snapshot / "model.safetensors", 1000)
    with pytest.raises(ConfigError) as err:
        load_model("someorg/tiny")
    assert str(online / "models--someorg--tiny") in str(err.value)


def test_damaged_builtin_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))
    path = tiny.resolve_builtin("builtin:tiny-qwen2")
    cut(path / "model.safetensors", 1000)
    assert tiny.resolve_builtin("builtin:tiny-qwen2") == path
    load_model("builtin:tiny-qwen2")  # whole again


# ---- issue 15: built-in models say they are random --------------------------------------------
def test_builtin_says_once_that_it_has_random_weights(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tiny_qwen2: Path
) -> None:
    monkeypatch.setattr(tiny, "_noticed", set())
    tiny.resolve_builtin("builtin:tiny-qwen2")
    tiny.resolve_builtin("builtin:tiny-qwen2")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("note: builtin:tiny-qwen2 has random weights")
    assert "testing" in err[0]
