"""Folders written whole or not at all: a build into a temporary folder beside the target."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replace_dir(out: Path, prefix: str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; on success it replaces ``out`` whole.

    Beside ``out`` so the final rename stays on one filesystem. If the block raises, ``out`` is
    left as it was and the temporary folder is removed.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
