"""On-disk cache of tokenised sources, shared by every run on the machine.

One entry per source: the rendered samples of that source (in file order, before shuffling and
mixing) plus its accounting (rows read, skipped by reason, truncated) and the seconds the work
took. The key is a fingerprint of everything that decides the result:

* the bytes of the data files (every file of a folder; ``dataset_info.json`` too),
* how they are read (format, columns, tags, split, ``max_samples``, ``on_error``),
* the identity substitution values and the training stage,
* the tokenizer (its full serialised form), the chat template and its stop strings, and the label
  options (``max_length``, truncation, ``train_on_prompt``, ``mask_history``, system prompt,
  loss weights),
* the code of the data engine itself, so an upgrade never reads stale samples.

Mixing (``samples``, ``weight``, ``shuffle``, ``val_size``, ``seed``) is *not* in the key: it is
redone on every run from the cached samples, which costs next to nothing. Hub datasets are not
cached (their contents cannot be fingerprinted offline). Entries are single ``.npz`` files written
atomically under ``cache_root()/data``; delete the folder to clear the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tunesmith.data.render import Rendered, Renderer

CACHE_VERSION = 1
_CHUNK = 1 << 20


def data_cache_dir() -> Path:
    """``cache_root()/data`` (``TUNESMITH_CACHE`` moves it)."""
    from tunesmith.model.tiny import cache_root

    return cache_root() / "data"


@dataclass
class CachedSource:
    """A source's rendered samples and its accounting."""

    samples: list[Rendered]
    rows_read: int
    skipped: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    seconds: float = 0.0


def _hash_file(h: Any, path: Path) -> None:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)


def path_digest(path: str | Path) -> str | None:
    """SHA-256 of a file's bytes, or of every file (name and bytes) under a folder.

    Returns ``None`` when the path does not exist locally (a hub dataset id).
    """
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        _hash_file(h, p)
    elif p.is_dir():
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(str(f.relative_to(p)).encode() + b"\0")
            _hash_file(h, f)
    else:
        return None
    return h.hexdigest()


@lru_cache(maxsize=1)
def code_digest() -> str:
    """Digest of the data engine's source files (rendering, formats, readers)."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256(str(CACHE_VERSION).encode())
    for f in sorted([*here.glob("*.py"), *here.glob("formats/*.py")]):
        if f.name not in ("preview.py", "commands.py", "cache.py", "report.py"):
            h.update(f.name.encode() + b"\0")
            _hash_file(h, f)
    return h.hexdigest()


def tokenizer_digest(tokenizer: Any) -> str:
    """Digest of a tokenizer's complete behaviour (vocabulary, merges, normaliser, specials)."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        vocab = tokenizer.get_vocab()
        h.update(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode())
    specials = getattr(tokenizer, "special_tokens_map", {}) or {}
    h.update(json.dumps(specials, sort_keys=True, default=str).encode())
    return h.hexdigest()


def renderer_digest(renderer: Renderer) -> str:
    """Digest of tokenizer + template + label options (the tokenizer part memoised)."""
    tok = getattr(renderer, "_tokenizer_digest", None)
    if tok is None:
        tok = tokenizer_digest(renderer.tokenizer)
        renderer._tokenizer_digest = tok  # type: ignore[attr-defined]
    return fingerprint(
        {
            "tokenizer": tok,
            "template": renderer.chat_template,
            "template_name": renderer.template_name,
            "stop": list(renderer.stop),
            "options": asdict(renderer.options),
        }
    )


def fingerprint(parts: Mapping[str, Any]) -> str:
    """A stable hex digest of JSON-able parts."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def entry_path(key: str) -> Path:
    """Where the entry for ``key`` lives."""
    return data_cache_dir() / key[:2] / f"{key}.npz"


def pack(samples: list[Rendered]) -> dict[str, Any]:
    """Samples as a few flat numpy arrays (compact on disk and cheap to send between processes)."""
    import numpy as np

    lengths = np.fromiter((len(s.input_ids) for s in samples), dtype=np.int64, count=len(samples))
    total = int(lengths.sum())
    return {
        "ids": np.fromiter((t for s in samples for t in s.input_ids), np.int32, count=total),
        "labels": np.fromiter((t for s in samples for t in s.labels), np.int32, count=total),
        "lengths": lengths,
        "has_w": np.array([s.weights is not None for s in samples], dtype=bool),
        "weights": np.array(
            [w for s in samples if s.weights is not None for w in s.weights], np.float32
        ),
        "truncated": np.array([s.truncated for s in samples], dtype=bool),
        # Image references as JSON text per sample ("" without images): no pickling needed.
        "images": np.array([json.dumps(s.images) if s.images else "" for s in samples], dtype=str),
    }


def unpack(arrays: Mapping[str, Any]) -> list[Rendered]:
    """The inverse of ``pack``."""
    ids, labels = arrays["ids"].tolist(), arrays["labels"].tolist()
    lengths, has_w = arrays["lengths"].tolist(), arrays["has_w"].tolist()
    weights, truncated = arrays["weights"].tolist(), arrays["truncated"].tolist()
    images = arrays["images"].tolist() if "images" in arrays else [""] * len(lengths)
    samples: list[Rendered] = []
    pos = wpos = 0
    for n, hw, tr, im in zip(lengths, has_w, truncated, images):
        w = None
        if hw:
            w, wpos = weights[wpos : wpos + n], wpos + n
        refs = json.loads(im) if im else None
        samples.append(Rendered(ids[pos : pos + n], labels[pos : pos + n], w, bool(tr), refs))
        pos += n
    return samples


def save(key: str, entry: CachedSource) -> Path:
    """Write an entry atomically (a crash never leaves a half-written entry behind)."""
    import numpy as np

    path = entry_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "rows_read": entry.rows_read,
        "skipped": dict(entry.skipped),
        "truncated": entry.truncated,
        "seconds": entry.seconds,
        "version": CACHE_VERSION,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **pack(entry.samples), meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(key: str) -> CachedSource | None:
    """Read an entry, or ``None`` when there is none (or it cannot be read)."""
    import numpy as np

    path = entry_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            samples = unpack(z)
    except (OSError, ValueError, KeyError):
        return None  # a damaged entry is a miss; it is rewritten
    return CachedSource(
        samples, meta["rows_read"], meta["skipped"], meta["truncated"], meta["seconds"]
    )
