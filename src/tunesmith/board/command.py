"""``tunesmith board``: the web board (registered by ``cli.py`` with ``add_commands(sub)``).

It binds to 127.0.0.1 unless ``--host`` says otherwise; a public Gradio link only with
``--share``; a password (user ``board``) from the environment variable ``--password-env`` names.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from tunesmith.errors import ConfigError

USER = "board"


def add_commands(sub: Any) -> None:
    """Register ``tunesmith board``."""
    b = sub.add_parser(
        "board",
        help="web board: configure, launch, watch, chat and compare in the browser",
        description="Gradio board over the same config schema, CLI verbs and run directories.",
    )
    b.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    b.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    b.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    b.add_argument(
        "--password-env",
        metavar="VAR",
        help=f"ask for a password (user {USER!r}) read from this environment variable",
    )
    b.add_argument(
        "--runs", default="runs", help="folder of run directories to list (default runs)"
    )
    b.add_argument("--workdir", default=".", help="folder jobs run in (default: here)")
    b.add_argument("--threads", type=int, help="torch threads for chat and compare answers")
    b.set_defaults(func=cmd_board)


def auth_from(var: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from the environment variable ``var`` (``None``: no password).

    Raises:
        ConfigError: the variable is unset or empty.
    """
    if var is None:
        return None
    password = os.environ.get(var, "")
    if not password:
        raise ConfigError(f"--password-env {var}: the environment variable is unset or empty")
    return USER, password


def cmd_board(args: argparse.Namespace) -> int:
    """Serve the board until interrupted."""
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: use 1..65535")
    auth = auth_from(args.password_env)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ConfigError("board needs gradio: pip install 'tunesmith[board]'") from None
    from tunesmith.board.app import CSS, build
    from tunesmith.board.state import Board

    board = Board(workdir=args.workdir, runs=args.runs, threads=args.threads)
    app = build(board)
    try:
        app.queue(default_concurrency_limit=4).launch(
            server_name=args.host,
            server_port=args.port,
            share=args.share,
            auth=auth,
            css=CSS,
            inbrowser=False,
            show_error=True,
        )
    finally:
        board.close()
    return 0
