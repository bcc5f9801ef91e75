"""``tunesmith serval CONFIG [overrides]``: the argument parser entry (no heavy imports)."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_serval(args: argparse.Namespace) -> int:
    """Run or resume the SERVAL loop of a config."""
    from tunesmith.config.load import load_config
    from tunesmith.recipes import resolve_config_arg
    from tunesmith.serval.loop import run

    cfg = load_config(resolve_config_arg(args.config), args.overrides)
    run(cfg, overwrite=args.overwrite)
    return 0


def add_command(sub: Any) -> None:
    """Add ``serval`` to the CLI's subparsers."""
    s = sub.add_parser(
        "serval",
        help="LLM <-> vertical-model co-training without labels (a serval section)",
        description="Annotate records with the LLM's soft labels, fit a vertical model on the "
        "confident ones, back-tune the LLM on its predictions; repeat serval.iterations times. "
        "A rerun with the same config resumes after the last finished iteration.",
    )
    s.add_argument("config", help="config file or recipe name, e.g. serval-demo")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. serval.iterations=2")
    s.add_argument("--overwrite", action="store_true", help="start again in output.dir")
    s.set_defaults(func=cmd_serval)
