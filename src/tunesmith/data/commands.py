"""``tunesmith data ...``: preview, stats and the template list.

Registered by ``cli.py`` with ``add_commands(sub)``. Heavy imports stay inside the commands so the
CLI answers ``--help`` at once; user errors are ``TunesmithError`` subclasses printed as one line.
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path
from typing import Any


def add_commands(subparsers: Any) -> None:
    """Register ``data preview``, ``stats``, ``templates`` and ``toy-shapes``."""
    d = subparsers.add_parser("data", help="inspect the training data: preview, stats, templates")
    dsub = d.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    p = dsub.add_parser("preview", help="rendered samples with the trained tokens highlighted")
    p.add_argument("config", help="config file or recipe name")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.max_length=256")
    p.add_argument("-n", type=int, default=3, help="samples to show (default 3)")
    p.add_argument("--plain", action="store_true", help="[[...]] markers instead of colour")
    p.set_defaults(func=cmd_preview)

    s = dsub.add_parser("stats", help="the mix report (per source counts, shares, tokens)")
    s.add_argument("config", help="config file or recipe name")
    s.add_argument("overrides", nargs="*", help="dotted overrides")
    s.add_argument("--json", action="store_true", help="print one JSON object for scripts")
    s.set_defaults(func=cmd_stats)

    t = dsub.add_parser("templates", help="list the built-in chat templates")
    t.set_defaults(func=cmd_templates)

    y = dsub.add_parser(
        "toy-shapes",
        aliases=["toy-colors"],
        help="write the toy image task (coloured shapes + captions) for the vlm recipes",
    )
    y.add_argument("--out", required=True, help="folder to write (e.g. data/toy-shapes)")
    y.add_argument("--train", type=int, default=360, help="training images (default 360)")
    y.add_argument("--heldout", type=int, default=90, help="held-out images (default 90)")
    y.add_argument("--seed", type=int, default=0)
    y.set_defaults(func=cmd_toy_shapes)
    _add_graph(dsub)
    _add_synth(dsub)


def _config_path(name: str) -> str:
    """A config path, or the path of a shipped recipe called ``name``."""
    if Path(name).is_file() or name.endswith((".yaml", ".yml")):
        return name
    recipe = Path(str(resources.files("tunesmith") / "config" / "recipes")) / f"{name}.yaml"
    return str(recipe) if recipe.is_file() else name


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Config -> tokenizer -> renderer -> prepared data (the same path training takes, for every
    stage: preference and KTO stages get their pairs / labelled examples)."""
    from tunesmith.config.load import load_config
    from tunesmith.data.engine import build_renderer, prepare
    from tunesmith.model.loader import tokenizer_for

    cfg = load_config(_config_path(args.config), args.overrides)
    stage = cfg.method.stage
    if stage.startswith("vlm_"):  # the processor's tokenizer; <image> expanded as in training
        from tunesmith.model.multimodal import image_seq_length, vlm_processor

        processor = vlm_processor(cfg.model)
        tokenizer = processor.tokenizer
        vision = cfg.model.vision
        renderer = build_renderer(
            tokenizer,
            cfg.data,
            cfg.model.template,
            image_token="<image>",
            image_seq_length=image_seq_length(processor),
            allow_remote_images=bool(vision and vision.allow_remote_images),
        )
        return prepare(cfg.data, renderer, refuse=False), tokenizer, renderer
    tokenizer = tokenizer_for(cfg.model)  # errors name model.tokenizer or model.name
    renderer = build_renderer(tokenizer, cfg.data, cfg.model.template, stage=stage)
    # refuse=False: show what train would refuse (in the report's warnings) instead of failing
    return prepare(cfg.data, renderer, stage=stage, refuse=False), tokenizer, renderer


def cmd_preview(args: argparse.Namespace) -> int:
    """Show ``-n`` rendered samples, the mix report and the length histogram."""
    from tunesmith.data.preview import preview_text, print_preview

    data, tokenizer, renderer = _prepare(args)
    n = max(0, args.n)
    if args.plain:
        print(
            preview_text(
                data.train, data.report, tokenizer, n, template_name=renderer.template_name
            ),
            end="",
        )
    else:
        print_preview(data.train, data.report, tokenizer, n, template_name=renderer.template_name)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Print the mix report (Markdown, or ``--json``)."""
    data, _, _ = _prepare(args)
    if args.json:
        print(json.dumps(data.report.as_dict(), ensure_ascii=False))
    else:
        print(data.report.markdown(), end="")
    return 0


def cmd_templates(args: argparse.Namespace) -> int:
    """List the built-in chat templates."""
    from tunesmith.data.templates import builtin_template_names, get_template

    names = builtin_template_names()
    width = max(len(n) for n in names)
    for name in names:
        t = get_template(name)
        flags = ", ".join(
            f for f, on in (("tools", t.supports_tools), ("no system", not t.supports_system)) if on
        )
        print(f"{name:<{width}}  {t.description}" + (f" [{flags}]" if flags else ""))
    print("\nuse one with model.template: NAME (default: the tokenizer's own template)")
    return 0


def cmd_toy_shapes(args: argparse.Namespace) -> int:
    """Write the coloured-shapes toy data set."""
    from tunesmith.data.toy_images import make_toy_shapes

    out = make_toy_shapes(args.out, train=args.train, heldout=args.heldout, seed=args.seed)
    print(f"wrote {args.train} training and {args.heldout} held-out images with captions to {out}")
    return 0


# ---- tunesmith data graph (issue 20: fact-graph augmentation) --------------------------------
def _add_graph(dsub: Any) -> None:
    """Register ``data graph``: triples -> samples + a graph report and picture."""
    g = dsub.add_parser(
        "graph",
        help="facts (triples or sentences) -> forward/reversed/k-hop/negative QA + a graph report",
    )
    g.add_argument("triples", help="triples JSONL/CSV (subject, relation, object), .txt, builtin:")
    g.add_argument("--out", required=True, help="folder for samples.jsonl, report.md, subgraph.png")
    g.add_argument("--relations", help="relation table (JSON/YAML; default: the built-in one)")
    g.add_argument(
        "--kinds",
        nargs="+",
        default=["forward", "reverse", "hop"],
        help="forward reverse hop negative (default: forward reverse hop)",
    )
    g.add_argument("--max-hops", type=int, default=2, help="longest composed path (default 2)")
    g.add_argument("--langs", nargs="+", default=["en"], help="en and/or zh (default en)")
    g.add_argument("--negatives", type=int, default=1, help="false claims per fact (default 1)")
    g.add_argument("--no-hop-inverse", action="store_true", help="hops along stated facts only")
    g.add_argument(
        "--columns", nargs="*", default=[], metavar="FIELD=COLUMN", help="e.g. subject=head"
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--nodes", type=int, default=12, help="entities in the picture (default 12)")
    g.set_defaults(func=cmd_graph)


def cmd_graph(args: argparse.Namespace) -> int:
    """Generate the samples of a fact graph, with its report and a sample-subgraph picture."""
    from pydantic import ValidationError

    from tunesmith.config.schema import AugmentConfig
    from tunesmith.data.augment.mix import build
    from tunesmith.data.augment.report import draw_subgraph, make_report
    from tunesmith.errors import ConfigError

    columns: dict[str, str] = {}
    for item in args.columns:
        field, sep, column = item.partition("=")
        if not sep or not field or not column:
            raise ConfigError(f"--columns {item!r}: write FIELD=COLUMN, e.g. subject=head")
        columns[field] = column
    try:
        aug = AugmentConfig(
            triples=args.triples,
            relations=args.relations,
            columns=columns or None,
            kinds=args.kinds,
            max_hops=args.max_hops,
            langs=args.langs,
            negatives=args.negatives,
            hop_inverse=not args.no_hop_inverse,
            seed=args.seed,
        )
    except ValidationError as e:
        err = e.errors()[0]
        flag = "--" + str(err["loc"][0]).replace("_", "-")
        raise ConfigError(f"{flag}: {err['msg']}") from None
    fg, samples, removed = build(aug, "data graph")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = "".join(json.dumps(s.conversation(), ensure_ascii=False) + "\n" for s in samples)
    (out / "samples.jsonl").write_text(rows, encoding="utf-8", newline="\n")
    report = make_report(fg, samples, removed)
    (out / "report.md").write_text(report.markdown(), encoding="utf-8")
    picture = draw_subgraph(fg, out / "subgraph.png", args.nodes)
    print(report.markdown(), end="")
    print(f"\nwrote {len(samples)} samples to {out / 'samples.jsonl'}, the report and {picture}")
    return 0


# ---- tunesmith data synth (issue 20: teacher synthesis) --------------------------------------
def _add_synth(dsub: Any) -> None:
    """Register ``data synth``: a teacher endpoint answers / rephrases / writes QA from docs."""
    s = dsub.add_parser(
        "synth",
        help="a teacher model (any OpenAI-compatible endpoint) answers questions, rephrases "
        "samples or writes QA from documents; cached, filtered, with a token/cost report",
    )
    s.add_argument("config", help="synth YAML (endpoint, jobs, filters, out)")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. endpoint.concurrency=2")
    s.add_argument("--json", action="store_true", help="print the report as one JSON object")
    s.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    """Run a synth config; write its JSONL and ``<out>.report.json``; print the report."""
    from tunesmith.data.synth.config import load_synth_config
    from tunesmith.data.synth.run import synthesise

    cfg = load_synth_config(args.config, args.overrides)
    rows, report = synthesise(cfg)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(report.markdown(), end="")
        print(f"\nwrote {len(rows)} samples to {cfg.out}")
    return 0
