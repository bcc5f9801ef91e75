"""CLI verbs after training: ``chat``, ``export`` and ``serve``.

``add_commands(subparsers)`` registers them on the main parser. If a ``chat`` parser exists
already, it is upgraded in place (missing flags added, handler replaced), so either order works.
Heavy imports happen inside the handlers; user errors are ``TunesmithError`` subclasses.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError

API_KEY_ENV = "TUNESMITH_API_KEY"


def _add(p: argparse.ArgumentParser, *flags: str, **kw: Any) -> None:
    """Add an argument unless the parser already has it (upgrading an existing parser)."""
    if flags[0].startswith("-") and any(f in p._option_string_actions for f in flags):
        return
    if not flags[0].startswith("-") and any(a.dest == flags[0] for a in p._actions):
        return
    p.add_argument(*flags, **kw)


def _model_args(p: argparse.ArgumentParser) -> None:
    _add(p, "--bits", type=int, choices=[4, 8], help="quantise the base with bitsandbytes")
    _add(p, "--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    _add(p, "--threads", type=int, help="torch CPU threads (1 is often fastest on a busy CPU)")


def _gen_args(p: argparse.ArgumentParser, *, max_new_tokens: int) -> None:
    _add(p, "--max-new-tokens", type=int, default=max_new_tokens)
    _add(p, "--temperature", type=float, default=0.0, help="0 = greedy")
    _add(p, "--top-p", type=float, default=1.0)
    _add(p, "--top-k", type=int, default=0, help="0 = off")
    _add(p, "--repetition-penalty", type=float, default=1.0)
    _add(p, "--stop", action="append", default=None, help="stop string (repeatable)")
    _add(p, "--seed", type=int, default=None)


def gen_params(args: argparse.Namespace) -> Any:
    """``GenParams`` from chat flags (flags an older parser lacks take their defaults)."""
    from tunesmith.infer.engine import GenParams

    return GenParams(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=getattr(args, "top_k", 0),
        repetition_penalty=getattr(args, "repetition_penalty", 1.0),
        stop=list(getattr(args, "stop", None) or []),
        seed=args.seed,
    ).check()


# -- chat ------------------------------------------------------------------------------------
def cmd_chat(args: argparse.Namespace) -> int:
    """Chat in the terminal, or answer one prompt."""
    from tunesmith.infer.chat import answer_once, chat_loop
    from tunesmith.infer.engine import Engine

    target = args.run or args.model
    if not target:
        raise ConfigError("chat: give a run directory or --model MODEL [--adapter PATH]")
    params = gen_params(args)
    images = None
    if getattr(args, "image", None):  # read first: a bad image fails before the model loads
        from tunesmith.data.images import load_image

        images = [load_image(p, where=f"--image {p}") for p in args.image]
    engine = Engine.load(
        target,
        adapter=args.adapter,
        bits=getattr(args, "bits", None),
        dtype=getattr(args, "dtype", "auto"),
        threads=getattr(args, "threads", None),
    )
    if images and not engine.takes_images:
        raise ConfigError(
            f"--image: {target} is a text-only model; give a vision-language run or model "
            "(e.g. builtin:tiny-llava)"
        )
    system = args.system
    if system is None:
        system = engine.system_prompt
    if args.prompt is not None:
        print(answer_once(engine, args.prompt, params, system, images=images))
        return 0
    chat_loop(engine, params, system=system, images=images)
    return 0


def add_chat(sub: Any) -> argparse.ArgumentParser:
    """Register (or upgrade) ``tunesmith chat``."""
    c = sub.choices.get("chat") or sub.add_parser("chat", help="chat with a trained run or a model")
    _add(c, "run", nargs="?", help="run directory (or model path)")
    _add(c, "--model", help="base model (path, hub id or builtin:...)")
    _add(c, "--adapter", help="LoRA adapter directory")
    _add(c, "--prompt", help="answer this one prompt and exit")
    _add(c, "--system", help="system prompt")
    _add(c, "--image", action="append", help="image file for a vision-language run (repeatable)")
    _gen_args(c, max_new_tokens=256)
    _model_args(c)
    c.set_defaults(func=cmd_chat)
    return c


# -- export ----------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    """Merge and write a Hugging Face folder (+ model card, Modelfile)."""
    from tunesmith.config.load import run_section
    from tunesmith.export.merge import export

    given = {
        "dir": args.out,
        "dtype": args.dtype,
        "max_shard_size": args.max_shard_size,
        "adapter_only": args.adapter_only or None,
        "calibration_samples": getattr(args, "calibration_samples", None),
        "gptq_group_size": getattr(args, "group_size", None),
    }
    opts: Any = run_section(args.run, "export", given)
    if opts.dir is None:
        raise ConfigError("export: give --out DIR (or set export.dir in the run's config)")
    result = export(
        args.run,
        opts.dir,
        adapter=args.adapter,
        dtype=opts.dtype,
        max_shard_size=opts.max_shard_size,
        adapter_only=opts.adapter_only,
        force=args.force,
        fmt=getattr(args, "format", "hf"),
        quant=getattr(args, "quant", None),
        calibration_samples=opts.calibration_samples,
        group_size=opts.gptq_group_size,
    )
    what = "merged model" if result.merged else "adapter" if opts.adapter_only else "model"
    print(f"wrote {what} to {result.out}: {', '.join(result.files)}")
    modelfile = "Modelfile" in result.files  # none for vision models and bnb/gptq quants
    ollama = f"   |   ollama create NAME -f {result.out}/Modelfile" if modelfile else ""
    print(f"try: tunesmith chat {result.out}{ollama}")
    return 0


def add_export(sub: Any) -> argparse.ArgumentParser:
    """Register ``tunesmith export`` (defaults come from the run's ``export`` section)."""
    e = sub.add_parser("export", help="merge a run into a standard Hugging Face folder")
    e.add_argument("run", help="run directory (or base model with --adapter)")
    e.add_argument("--out", help="destination folder (default: export.dir)")
    e.add_argument("--adapter", help="LoRA adapter folder (when RUN is a base model)")
    e.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    e.add_argument("--max-shard-size", help="e.g. 500MB, 2GB (default: export.max_shard_size)")
    e.add_argument("--adapter-only", action="store_true", help="copy the adapter, no merge")
    e.add_argument("--force", action="store_true", help="replace a non-empty --out")
    e.add_argument(
        "--format",
        default="hf",
        choices=["hf", "gguf"],
        help="gguf: also write model-QUANT.gguf (llama.cpp, Ollama); the Modelfile uses it",
    )
    e.add_argument(
        "--quant",
        metavar="Q",
        help="gguf: f16 (default), bf16, f32, q8_0, q4_0, q4_k_m (needs llama-cpp-python); "
        "hf: bnb-4bit or bnb-8bit (bitsandbytes safetensors), gptq-4bit or gptq-8bit (CUDA GPU, "
        "gptqmodel)",
    )
    e.add_argument(
        "--calibration-samples",
        type=int,
        help="GPTQ: training prompts to calibrate on (default: export.calibration_samples, 128)",
    )
    e.add_argument(
        "--group-size",
        type=int,
        help="GPTQ: columns per scale, must divide in_features (default: export.gptq_group_size)",
    )
    e.set_defaults(func=cmd_export)
    return e


# -- serve -----------------------------------------------------------------------------------
def parse_adapters(specs: list[str] | None) -> dict[str, str]:
    """``NAME=PATH`` items (a bare PATH is named after its folder)."""
    named: dict[str, str] = {}
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).resolve().name, spec
        if not name or not path:
            raise ConfigError(f"--adapter {spec!r}: expected NAME=PATH")
        if name in named:
            raise ConfigError(f"--adapter {spec!r}: the name {name!r} is used twice")
        named[name] = path
    return named


SERVE_FLAGS = (
    "host",
    "port",
    "max_batch",
    "max_tokens",
    "default_max_tokens",
    "max_concurrent",
    "max_body_bytes",
)


def cmd_serve_vllm(args: argparse.Namespace) -> int:
    """``--backend vllm``: the same target behind ``vllm serve`` (``infer/vllm_backend.py``)."""
    import tempfile

    from tunesmith.config.load import run_section
    from tunesmith.infer.vllm_backend import plan_vllm, run_vllm, vllm_available

    if not vllm_available():
        raise ConfigError(
            "--backend vllm: vllm is not installed (pip install vllm, on a CUDA GPU machine); "
            "the default backend serves the same API"
        )
    opts: Any = run_section(args.model, "serve", {k: getattr(args, k) for k in SERVE_FLAGS})
    with tempfile.TemporaryDirectory(prefix="tunesmith-vllm-") as work:
        plan = plan_vllm(
            args.model,
            parse_adapters(args.adapter),
            host=opts.host,
            port=opts.port,
            api_key=args.api_key or os.environ.get(opts.api_key_env) or None,
            dtype=args.dtype,
            bits=args.bits,
            max_batch=opts.max_batch,
            workdir=work,
        )
        print(f"serving {', '.join(plan.served)} with vLLM on http://{opts.host}:{opts.port}/v1")
        return run_vllm(plan)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve an OpenAI-compatible API."""
    if getattr(args, "backend", "tunesmith") == "vllm":
        return cmd_serve_vllm(args)
    try:
        from tunesmith.infer.server import Limits, serve
    except ImportError as exc:
        raise ConfigError(
            f"serve needs the server extras: pip install 'tunesmith[serve]' ({exc})"
        ) from None
    from tunesmith.config.load import run_section
    from tunesmith.infer.engine import Engine

    opts: Any = run_section(args.model, "serve", {k: getattr(args, k) for k in SERVE_FLAGS})
    engine = Engine.load(
        args.model,
        adapters=parse_adapters(args.adapter),
        bits=args.bits,
        dtype=args.dtype,
        max_batch=opts.max_batch,
        threads=args.threads,
    )
    api_key = args.api_key or os.environ.get(opts.api_key_env) or None
    max_images = getattr(args, "max_images", None)
    if max_images is not None and max_images < 0:
        raise ConfigError(f"--max-images {max_images}: must be >= 0")
    image_dirs = []
    for d in getattr(args, "image_dir", None) or []:
        if not Path(d).is_dir():
            raise ConfigError(f"--image-dir {d}: not a directory")
        image_dirs.append(str(Path(d).resolve()))
    max_pixels = getattr(args, "max_image_pixels", None)
    if max_pixels is not None and max_pixels < 1:
        raise ConfigError(f"--max-image-pixels {max_pixels}: must be at least 1")
    limits = Limits(
        max_body_bytes=opts.max_body_bytes,
        max_tokens=opts.max_tokens,
        default_max_tokens=min(opts.default_max_tokens, opts.max_tokens),
        max_concurrent=opts.max_concurrent,
        max_images=Limits.max_images if max_images is None else max_images,
        allow_remote_images=bool(getattr(args, "allow_remote_images", False)),
        image_dirs=tuple(image_dirs),
        max_image_pixels=Limits.max_image_pixels if max_pixels is None else max_pixels,
    )
    from tunesmith.infer.protocol import public_names

    ids = ", ".join(public_names(engine))  # as clients see them (folder names, not paths)
    print(f"serving {ids} on http://{opts.host}:{opts.port}/v1")
    if not api_key and opts.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: no --api-key (or ${opts.api_key_env}); anyone who can reach it may use it")
    serve(engine, host=opts.host, port=opts.port, api_key=api_key, limits=limits)
    return 0


def add_serve(sub: Any) -> argparse.ArgumentParser:
    """Register ``tunesmith serve`` (defaults come from the run's ``serve`` section)."""
    s = sub.add_parser("serve", help="OpenAI-compatible API for a run or model")
    s.add_argument("model", help="run directory, model folder, hub id or builtin:...")
    s.add_argument(
        "--adapter", action="append", metavar="NAME=PATH", help="extra LoRA adapter (repeatable)"
    )
    s.add_argument("--host", help="default 127.0.0.1 (serve.host)")
    s.add_argument("--port", type=int, help="default 8000 (serve.port)")
    s.add_argument("--api-key", help=f"require Authorization: Bearer KEY (or ${API_KEY_ENV})")
    s.add_argument(
        "--backend",
        default="tunesmith",
        choices=["tunesmith", "vllm"],
        help="vllm: run vLLM's OpenAI server on the same run/adapters (needs vllm and a GPU)",
    )
    _model_args(s)
    s.add_argument("--max-batch", type=int, help="sequences decoded together (default 32)")
    s.add_argument("--max-tokens", type=int, help="largest max_tokens accepted (default 4096)")
    s.add_argument("--default-max-tokens", type=int, help="default 512")
    s.add_argument("--max-concurrent", type=int, help="requests in flight (default 256)")
    s.add_argument("--max-body-bytes", type=int, help="default 1 MiB")
    s.add_argument("--max-images", type=int, help="images per request (default 8)")
    s.add_argument(
        "--allow-remote-images",
        action="store_true",
        help="download http(s) image_url parts (refused by default: base64 data: URIs only)",
    )
    s.add_argument(
        "--image-dir",
        action="append",
        metavar="DIR",
        help="clients may name image files under DIR (repeatable; default: none, base64 only)",
    )
    s.add_argument(
        "--max-image-pixels",
        type=int,
        metavar="N",
        help="largest width x height of one image, checked before decoding (default 16777216)",
    )
    s.set_defaults(func=cmd_serve)
    return s


def add_commands(sub: Any) -> None:
    """Register ``chat`` (or upgrade it), ``export`` and ``serve`` on the CLI's subparsers."""
    add_chat(sub)
    add_export(sub)
    add_serve(sub)
