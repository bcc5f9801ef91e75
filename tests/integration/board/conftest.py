"""The board in this process on a free port, and a headless Chromium driven by Playwright.

The browser is Debian's ``chromium`` (or ``$TUNESMITH_CHROMIUM``); Playwright's own browser
download is never used. When no browser is found and the tests run as root on a machine with
``apt-get`` (CI, a fresh container), the set-up installs Debian's package once
(``TUNESMITH_NO_BROWSER_INSTALL=1`` turns that off); otherwise the browser tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """A Chromium executable on this machine, or ``None``."""
    given = os.environ.get("TUNESMITH_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def install_chromium() -> str | None:
    """Install Debian's ``chromium`` with apt when allowed (root, apt-get present); its path."""
    if os.environ.get("TUNESMITH_NO_BROWSER_INSTALL") or not shutil.which("apt-get"):
        return None
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    for cmd in (install, ["apt-get", "update", "-q"], install):  # stale lists: update, retry
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if cmd is install and done.returncode == 0:
            break
    return find_chromium()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium (skips the module when Playwright or a browser is missing)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install -e '.[dev]')"
    )
    exe = find_chromium() or install_chromium()
    if exe is None:
        pytest.skip(
            "no Chromium found and none could be installed here: apt-get install chromium "
            "(as root), or set TUNESMITH_CHROMIUM to a Chromium executable"
        )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@dataclass(frozen=True)
class Served:
    """The board under test: its address and its server-side state."""

    url: str
    board: Any


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> Iterator[Served]:
    """The board on 127.0.0.1 with a fresh work folder (jobs train the built-in tiny model)."""
    pytest.importorskip("gradio", reason="gradio not installed (pip install -e '.[board]')")
    from tunesmith.board.app import CSS, build
    from tunesmith.board.state import Board

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    work = tmp_path_factory.mktemp("board-work")
    board = Board(workdir=work, runs="runs", threads=1)
    app = build(board)
    port = _free_port()
    app.queue().launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, css=CSS, quiet=True
    )
    yield Served(f"http://127.0.0.1:{port}", board)
    app.close()
    board.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: ``$TUNESMITH_BOARD_SHOTS`` when set (to look at), else tmp."""
    out = Path(os.environ.get("TUNESMITH_BOARD_SHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out
