"""Where built-in models live and whether a model folder's files are damaged.

A leaf of ``tunesmith.model``: ``tiny`` (which builds the built-ins) and ``loader`` (which loads
any model) both use it, and it imports neither.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

BUILTIN_PREFIX = "builtin:"


def cache_root() -> Path:
    """Where built-in models are cached (``TUNESMITH_CACHE`` overrides the user cache dir)."""
    env = os.environ.get("TUNESMITH_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tunesmith"))


# ---- damaged files -----------------------------------------------------------------------------
def damaged_file(folder: Path) -> str | None:
    """What is wrong with a model folder's files (``None`` when nothing is visibly wrong).

    Checks the JSON files transformers reads, the shard index and every safetensors file's
    header and length (a cut-off download). Returns one phrase naming the file and the fix.
    """
    fix = _fix(folder)
    for f in sorted(folder.glob("*.json")):
        try:
            json.loads(f.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            return f"{f} is damaged (not valid JSON: {_first(exc)}); {fix}"
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))
        weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
        if not isinstance(weight_map, dict):
            return f"{index} is damaged (it has no weight_map); {fix}"
        shards = [folder / str(s) for s in sorted(set(map(str, weight_map.values())))]
        for shard in shards:
            if not shard.is_file():
                return f"{shard} is missing (listed in {index.name}); {fix}"
    else:
        shards = sorted(folder.glob("*.safetensors"))
    for shard in shards:
        problem = safetensors_problem(shard)
        if problem:
            return f"{shard} is damaged ({problem}); {fix}"
    return None


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file cannot be read (cut off, not safetensors), or ``None``."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if head.startswith(b"version "):
            return "a Git LFS pointer, not the weights; run `git lfs pull`"
        if len(head) < 8:
            return f"cut off at {size} bytes, before its header ends"
        n = struct.unpack("<Q", head)[0]
        if n > 100_000_000:
            return "not a safetensors file (its header length is implausible)"
        if 8 + n > size:
            return f"cut off at {_size(size)}, before its header ends"
        raw = fh.read(n)
    try:
        header = json.loads(raw)
        end = max(
            (v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0
        )
    except (ValueError, KeyError, TypeError, IndexError):
        return "its header is not valid safetensors JSON"
    if size < 8 + n + end:
        return f"cut off at {_size(size)} of {_size(8 + n + end)}"
    return None


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n:,} bytes"


def _fix(folder: Path) -> str:
    """What to do about a damaged file in ``folder``."""
    from huggingface_hub import constants

    resolved = folder.resolve()
    hub = Path(constants.HF_HUB_CACHE).resolve()
    if resolved.is_relative_to(hub):
        repo = next((p for p in resolved.parents if p.parent == hub), resolved)
        return f"an interrupted download? delete {repo} and load it again to re-download it"
    if resolved.is_relative_to(cache_root().resolve()):
        return f"delete {folder}; it is rebuilt on next use"
    return (
        "an interrupted download or copy? download or copy it again (or rebuild it: "
        "`tunesmith model tiny` for a tiny model, `tunesmith export` for an exported run)"
    )


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["BUILTIN_PREFIX", "cache_root", "damaged_file", "safetensors_problem"]
