"""``tunesmith <command>``: the one entry point.

Heavy libraries (torch, transformers) are imported inside the commands, so ``tunesmith --help``
answers at once. Every user-fixable error prints as one line without a traceback (``--debug``
shows it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from tunesmith import __version__
from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.recipes import recipe_dir, resolve_config_arg


def recipe_list() -> dict[str, str]:
    """Recipe name -> its one-line description (the file's first comment line)."""
    out = {}
    for f in sorted(recipe_dir().glob("*.yaml")):
        first = f.read_text(encoding="utf-8").splitlines()[0]
        out[f.stem] = first.lstrip("# ").strip()
    return out


#: What each shipped recipe does on the built-in tiny model, whose weights are random (from the
#: recipes' header comments): ``learns`` something chat / eval show, ``partly``, or only runs the
#: pipeline (``demo``: LoRA on random weights learns nothing meaningful).
TINY_RESULT = {
    "identity": "learns",  # full fine-tuning: name and language (identity score 0.95-0.97)
    "identity-lora": "partly",  # the identity, not the general data
    "vlm-pretrain": "partly",  # stage 1 of 2: the projector only; chat after vlm-sft
    "vlm-sft": "learns",  # colour and shape of held-out images
    # Lab-notes demo: answers in the right form, facts near chance; general data keeps general
    # perplexity low (README)
    "labnotes-notes-short": "partly",
    "labnotes-notes-long": "partly",
    "labnotes-mix-short": "partly",
    "labnotes-mix-long": "partly",
    # Reversal-curse experiment (issue 20): every forward fact, no reversed/2-hop ones, even
    # augmented (README)
    "reversal-forward": "partly",
    "reversal-augmented": "partly",
    # Distillation demo: the teacher (general chat), then the half-width student distilled from it
    "distill-teacher-tiny": "partly",
    "distill-tiny": "partly",
    # Online RL (issue 19): pairwise accuracy above chance; GRPO after an SFT warm-up (README)
    "rm-lora": "partly",
    "grpo-lora": "partly",
    # SERVAL (issue 21): the vertical model learns from the LLM's soft labels; the LLM's AUC
    # moves a little after a textbook warm-up (README)
    "serval-demo": "partly",
    "sft-lora": "demo",
    "dpo-lora": "demo",
    "kto-lora": "demo",
    "orpo-lora": "demo",
    "simpo-lora": "demo",
}
TINY_LEGEND = (
    "TINY: what the recipe does on the built-in tiny model (random weights): learns = trains "
    "something chat and eval show; partly = see the recipe's header comment; demo = runs the "
    "pipeline only (LoRA on random weights learns nothing meaningful): set model.name to a real "
    "model"
)


# ---- commands -------------------------------------------------------------------------------
def cmd_recipes(args: argparse.Namespace) -> int:
    """List shipped recipes, with what each learns on the tiny model."""
    import textwrap

    recipes = recipe_list()
    width = max(len(n) for n in (*recipes, "RECIPE"))
    print(f"{'RECIPE':<{width}}  {'TINY':<6}  DESCRIPTION")
    for name, desc in recipes.items():
        print(f"{name:<{width}}  {TINY_RESULT.get(name, '?'):<6}  {desc}")
    print("\n" + textwrap.fill(TINY_LEGEND, 100))
    print("\ncopy one with: tunesmith new RECIPE [PATH]")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    """Print versions, CPU, GPUs, precision / attention choices and caches (for bug reports)."""
    from tunesmith.sysinfo import collect, format_text

    info = collect(measure=args.measure)
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(format_text(info), end="")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    """Copy a recipe for editing."""
    recipes = recipe_list()
    if args.recipe not in recipes:
        import difflib

        near = difflib.get_close_matches(args.recipe, list(recipes), n=1)
        hint = f"did you mean {near[0]}?" if near else "see `tunesmith recipes`"
        raise ConfigError(f"unknown recipe {args.recipe!r}; {hint}")
    dest = Path(args.path or f"{args.recipe}.yaml")
    if dest.is_dir():
        dest = dest / f"{args.recipe}.yaml"
    if dest.exists() and not args.force:
        raise ConfigError(f"{dest}: already exists; pass --force to overwrite")
    shutil.copyfile(recipe_dir() / f"{args.recipe}.yaml", dest)
    print(f"wrote {dest}; edit it, then: tunesmith train {dest}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Print the resolved config, or its errors."""
    from tunesmith.config.load import dump_config, load_config

    cfg = load_config(resolve_config_arg(args.config), args.overrides)
    print(dump_config(cfg), end="")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train from a config file."""
    from rich.console import Console

    from tunesmith.config.load import load_config

    flags = {"train.resume=auto": args.resume, "output.overwrite=true": args.overwrite}
    overrides = [*args.overrides, *(override for override, on in flags.items() if on)]
    cfg = load_config(resolve_config_arg(args.config), overrides)
    from tunesmith.api import check_model_names, train  # the one stage -> recipe dispatch

    if args.nproc > 1 or args.nnodes > 1 or args.accelerate_config:
        check_model_names(cfg)  # one error here rather than one per process
        return launch_distributed(args, overrides)
    train(cfg, console=Console(stderr=True), progress=not args.no_progress)
    return 0


def launch_distributed(args: argparse.Namespace, overrides: list[str]) -> int:
    """Re-run this training command in several processes (see ``train/launch.py``)."""
    from tunesmith.train import launch

    spec = launch.Launch(
        nproc=args.nproc,
        nnodes=args.nnodes,
        node_rank=args.node_rank,
        master_addr=args.master_addr,
        master_port=args.master_port,
        accelerate_config=args.accelerate_config,
    )
    train_args = [
        *(["--debug"] if args.debug else []),
        "train",
        resolve_config_arg(args.config),
        *overrides,
        *(["--no-progress"] if args.no_progress else []),
    ]
    return launch.run(spec, train_args)


def cmd_model_tiny(args: argparse.Namespace) -> int:
    """Build a tiny model offline."""
    from tunesmith.model.tiny import TinySpec, build_tiny

    sizes = {
        "hidden_size": args.hidden_size,
        "intermediate_size": args.intermediate_size,
        "num_layers": args.layers,
        "num_heads": args.heads,
        "num_kv_heads": args.kv_heads,
    }
    if args.arch == "llava" and any(v is not None for v in sizes.values()):
        raise ConfigError("model tiny --arch llava: the size flags are for llama / qwen2")
    spec = TinySpec(arch=args.arch, seed=args.seed, **{k: v for k, v in sizes.items() if v})
    for name in ("hidden_size", "intermediate_size"):
        if getattr(spec, name) % 32:
            raise ConfigError(f"--{name.replace('_', '-')}: use a multiple of 32 (4-bit blocks)")
    if spec.hidden_size % spec.num_heads or spec.num_heads % spec.num_kv_heads:
        raise ConfigError("--heads must divide --hidden-size, and --kv-heads must divide --heads")
    out = build_tiny(args.out, spec)
    print(f"built tiny {args.arch} in {out}")
    return 0


def cmd_eval_identity(args: argparse.Namespace) -> int:
    """Identity score and false-claim rate of a run."""
    from tunesmith.config.schema import EvalConfig
    from tunesmith.evaluate.identity import identity_of, read_questions, run_identity_eval
    from tunesmith.infer.engine import Engine

    engine = Engine.load(args.run)
    name, system = identity_of(engine.run) if args.name is None else (args.name, None)
    ev = engine.run.config.eval if engine.run is not None else EvalConfig()
    heldout = read_questions(args.heldout or ev.identity_heldout)
    general = read_questions(args.general or ev.general_prompts)
    result = run_identity_eval(
        engine, name, heldout, general, max_new_tokens=args.max_new_tokens, system=system
    )
    out = Path(args.run) / "identity_eval.json"
    if out.parent.is_dir():
        full = {
            **result.summary(),
            "identity": result.identity_answers,
            "general": result.general_answers,
        }
        out.write_text(json.dumps(full, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result.summary(), ensure_ascii=False))
        return 0
    misses = [r for r in result.identity_answers if not r["ok"]]
    claims = [r for r in result.general_answers if r["claims"]]
    print(f"identity score   {result.identity_score:.3f}  ({result.n} held-out questions)")
    print(f"false claim rate {result.false_claim_rate:.3f}  ({result.n_general} general prompts)")
    for r in misses[:5]:
        print(f"  missed: {r['question']!r} -> {r['answer'][:80]!r}")
    for r in claims[:5]:
        print(f"  claimed: {r['question']!r} -> {r['answer'][:80]!r}")
    return 0


EVAL_TYPES = "perplexity, generation, multiple_choice, identity"


def cmd_eval(args: argparse.Namespace) -> int:
    """``eval RUN_OR_MODEL [CONFIG]``, or the identity check as ``eval identity RUN``."""
    if args.target == "identity" and args.config and not args.config.endswith((".yaml", ".yml")):
        args.run = args.config
        args.max_new_tokens = args.max_new_tokens or 48
        return cmd_eval_identity(args)
    if args.target == "identity" and not Path("identity").exists():
        raise ConfigError("eval identity: give the run directory: tunesmith eval identity RUN")
    from tunesmith.api import run_eval
    from tunesmith.evaluate.report import eval_specs, print_results

    specs = eval_specs(args)
    results = run_eval(
        args.target,
        specs,
        out_dir=args.out,
        batch_size=args.batch_size,
        seed=args.seed,
        say=(lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr)),
    )
    print_results(results, as_json=args.json)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Runs side by side: one HTML page (plus its Markdown summary) or Markdown."""
    from datetime import datetime, timezone

    from tunesmith.evaluate.compare import collect
    from tunesmith.evaluate.compare_html import write_report

    comp = collect(
        args.runs,
        prompts=args.prompt or (),
        prompts_file=args.prompts,
        max_new_tokens=args.max_new_tokens,
        say=lambda line: print(line, file=sys.stderr),
    )
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    files, text = write_report(comp, args.out, fmt_name=args.format, generated=when)
    if text is not None:
        print(text, end="")
    for f in files:
        print(f"wrote {f}", file=sys.stderr)
    return 0


# ---- parser ---------------------------------------------------------------------------------
def cmd_estimate(args: argparse.Namespace) -> int:
    """Exact parameter counts and a memory estimate per device (issue 23)."""
    from tunesmith.config.load import load_config
    from tunesmith.model.estimate import estimate, report

    cfg = load_config(resolve_config_arg(args.config), args.overrides)
    target = args.target
    if args.measure:
        import torch

        if args.devices != 1 or args.sharding not in ("none", "ddp"):
            raise ConfigError("--measure: runs on this one device; drop --devices/--sharding")
        target = "gpu" if torch.cuda.is_available() else "cpu"
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
    est = estimate(cfg, devices=args.devices, sharding=args.sharding, target=target)
    print(report(cfg, est))
    if args.measure:
        from tunesmith.model.estimate import error_line, measure

        print(error_line(est, measure(cfg, steps=args.steps)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (kept free of heavy imports)."""
    p = argparse.ArgumentParser(
        prog="tunesmith",
        description="Fine-tune open LLMs on your own data from one YAML file.",
    )
    p.add_argument("--version", action="version", version=f"tunesmith {__version__}")
    p.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks for errors, and third-party deprecation warnings",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    from tunesmith.data.commands import add_commands as add_data_commands

    add_data_commands(sub)

    t = sub.add_parser("train", help="train from a YAML config (or a recipe name)")
    t.add_argument("config", help="config file or recipe name, e.g. identity")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=2e-4")
    t.add_argument(
        "--no-progress",
        action="store_true",
        help="a plain log line every train.log_every steps instead of the bar (logs, CI)",
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest intact checkpoint (starts fresh, and says so, without one)",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in the run directory (output.overwrite=true)",
    )
    t.add_argument("--nproc", type=int, default=1, help="processes per node (via torchrun)")
    t.add_argument("--nnodes", type=int, default=1)
    t.add_argument("--node-rank", type=int, default=0)
    t.add_argument("--master-addr", default="127.0.0.1")
    t.add_argument("--master-port", type=int, default=29500)
    t.add_argument(
        "--accelerate-config",
        metavar="FILE",
        help="launch through Accelerate with this config (FSDP, DeepSpeed on GPUs); a path or a "
        "shipped one: ddp, fsdp, fsdp-offload, zero2, zero3",
    )
    t.set_defaults(func=cmd_train)

    v = sub.add_parser("validate", help="print the resolved config or its errors")
    v.add_argument("config")
    v.add_argument("overrides", nargs="*")
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("recipes", help="list shipped recipes")
    r.set_defaults(func=cmd_recipes)

    en = sub.add_parser("env", help="versions, CPU/GPU, precision and caches (for bug reports)")
    en.add_argument("--json", action="store_true", help="one JSON object")
    en.add_argument(
        "--measure", action="store_true", help="time bf16 vs fp32 as precision auto does (~1 s)"
    )
    en.set_defaults(func=cmd_env)

    n = sub.add_parser("new", help="copy a shipped recipe for editing")
    n.add_argument("recipe")
    n.add_argument("path", nargs="?")
    n.add_argument("--force", action="store_true")
    n.set_defaults(func=cmd_new)

    m = sub.add_parser("model", help="model utilities")
    msub = m.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    tiny = msub.add_parser("tiny", help="build a tiny model + tokenizer offline")
    tiny.add_argument("--arch", choices=["llama", "qwen2", "llava"], default="qwen2")
    tiny.add_argument("--out", required=True)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--hidden-size", type=int, help="default 256")
    tiny.add_argument("--intermediate-size", type=int, help="default 768")
    tiny.add_argument("--layers", type=int, help="default 4")
    tiny.add_argument("--heads", type=int, help="default 8")
    tiny.add_argument("--kv-heads", type=int, help="default 4")
    tiny.set_defaults(func=cmd_model_tiny)

    e = sub.add_parser(
        "eval",
        help="evaluate a run or model: eval.tasks, or --task (also: eval identity RUN)",
        description="tunesmith eval RUN_OR_MODEL [CONFIG]: run the eval.tasks of the run (or of "
        "CONFIG), or --task with --data; prints a table, writes <run>/eval/*.json. "
        "tunesmith eval identity RUN: the identity score as before.",
    )
    e.add_argument("target", metavar="RUN_OR_MODEL", help="run directory, model folder or name")
    e.add_argument("config", nargs="?", metavar="CONFIG", help="config file whose eval.tasks run")
    e.add_argument("--task", action="append", help="task type (repeatable): " + EVAL_TYPES)
    e.add_argument(
        "--data", help="data file of the --task (generation, multiple_choice, perplexity)"
    )
    e.add_argument("--json", action="store_true", help="print JSON (identity: one line)")
    e.add_argument("--out", help="results folder (default: RUN/eval)")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--max-samples", type=int, help="evaluate at most this many examples")
    e.add_argument("--name", help="identity: name to look for (default: data.identity.name)")
    e.add_argument("--heldout", help="identity: held-out identity questions (JSONL)")
    e.add_argument("--general", help="identity: general prompts (JSONL)")
    e.add_argument("--max-new-tokens", type=int, help="default: 48 (identity), 128 (generation)")
    e.set_defaults(func=cmd_eval)

    cmp = sub.add_parser("compare", help="runs side by side: configs, data, curves, answers")
    cmp.add_argument("runs", nargs="+", metavar="RUN", help="two or more run directories")
    cmp.add_argument("--out", help="report.html (a report.md lands beside it); md: the file")
    cmp.add_argument("--format", choices=["html", "md"], default="html")
    cmp.add_argument("--prompt", action="append", help="a prompt every run answers (repeatable)")
    cmp.add_argument("--prompts", metavar="FILE", help=".txt (one a line) or JSONL with prompts")
    cmp.add_argument("--max-new-tokens", type=int, help="default: the runs' eval.max_new_tokens")
    cmp.set_defaults(func=cmd_compare)

    # ---- estimate (issue 23) ----
    est = sub.add_parser("estimate", help="parameter counts and memory per device before training")
    est.add_argument("config", help="config file or recipe name")
    est.add_argument("overrides", nargs="*", help="dotted overrides, e.g. method.type=qlora")
    est.add_argument("--devices", type=int, default=1, help="data-parallel devices")
    est.add_argument(
        "--sharding",
        default="none",
        choices=["none", "ddp", "zero2", "zero3", "fsdp", "fsdp-offload"],
    )
    est.add_argument("--target", default="gpu", choices=["gpu", "cpu"])
    est.add_argument(
        "--measure",
        action="store_true",
        help="also run real steps here (CUDA if present, else CPU) and print the error",
    )
    est.add_argument("--steps", type=int, default=2, help="--measure: optimiser steps")
    est.set_defaults(func=cmd_estimate)

    from tunesmith.infer.commands import add_commands as add_infer_commands

    add_infer_commands(sub)  # chat, export, serve
    from tunesmith.serval.command import add_command as add_serval_command

    add_serval_command(sub)  # serval (issue 21)
    from tunesmith.board.command import add_commands as add_board_commands

    add_board_commands(sub)  # board (issue 22)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides may follow options (`train cfg.yaml --no-progress train.lr=1e-4`).
    if extra:
        if hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
            args.overrides += extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from tunesmith.quiet import quiet_third_party

    quiet_third_party(verbose=args.debug)  # deprecations inside libraries: not the user's to fix
    try:
        return int(args.func(args) or 0)
    except TunesmithError as exc:
        if args.debug:
            raise
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
