"""``tunesmith serve --backend vllm``: the same run or model behind vLLM's OpenAI-compatible server.

vLLM (a GPU engine; ``pip install vllm`` on a CUDA machine) serves the same API surface as the
in-house server — ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions`` — with
continuous batching and paged attention. This module only translates what ``tunesmith serve``
knows into ``vllm serve`` arguments: the base weights (a ``builtin:`` model resolved to its
folder), every LoRA adapter under the same public names the in-house server uses (multi-LoRA:
``--enable-lora --lora-modules NAME=PATH``, ``--max-lora-rank`` from the adapters' ranks), the
chat template the run trained with (written to a file for ``--chat-template``), the API key,
dtype, bitsandbytes quantisation and batch size. The in-house engine stays the default.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import ConfigError

# vLLM's --max-lora-rank accepts these values.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass
class VllmPlan:
    """The ``vllm serve`` command for a run or model, and the ids clients will see."""

    argv: list[str]
    served: list[str]  # the base's public id first, then the adapters'
    chat_template: str | None = None


def vllm_available() -> bool:
    """Whether ``vllm`` is installed here (it needs a CUDA GPU to run)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def _public(name: str) -> str:
    p = Path(name)
    if not name.startswith("builtin:") and (p.is_absolute() or p.exists()):
        return p.resolve().name or name
    return name


def _lora_rank(adapter: str) -> int:
    cfg = Path(adapter) / "adapter_config.json"
    try:
        r = int(json.loads(cfg.read_text(encoding="utf-8")).get("r", 16))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{cfg}: cannot read the adapter's rank ({exc})") from None
    return r


def plan_vllm(
    model: str,
    adapters: dict[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    dtype: str = "auto",
    bits: int | None = None,
    max_batch: int = 32,
    workdir: str | Path,
) -> VllmPlan:
    """Translate a ``tunesmith serve`` target into a ``vllm serve`` command.

    Args:
        model: run directory, model folder, hub id or ``builtin:...``.
        adapters: more LoRA adapters by public name (``--adapter NAME=PATH``).
        workdir: where the chat-template file is written.
    """
    from tunesmith.infer.engine import _adapter_public_name
    from tunesmith.infer.vision import is_vlm_target
    from tunesmith.model.loader import resolve_model_path
    from tunesmith.model.source import load_tokenizer_from, locate
    from tunesmith.runs import has_tokenizer

    if is_vlm_target(model, None):
        raise ConfigError(f"{model}: --backend vllm serves text models here; use the default")
    if bits == 8:
        raise ConfigError("--bits 8: vLLM loads bitsandbytes 4-bit only; use --bits 4")
    where = locate(model)
    named: dict[str, str] = {}
    if where.adapter:
        named[_adapter_public_name(model, where)] = where.adapter
    for name, path in (adapters or {}).items():
        if name in named:
            raise ConfigError(f"--adapter {name}=...: the name {name!r} is used twice")
        if not Path(path).is_dir():
            raise ConfigError(f"--adapter {name}={path}: folder not found")
        named[name] = str(Path(path).resolve())
    is_run = where.run is not None
    base_id = _public(where.base if is_run and where.adapter else model)
    if is_run and not where.adapter:
        base_id = Path(model).resolve().name
    base_path = resolve_model_path(where.base, what=None)
    argv = [
        "vllm",
        "serve",
        str(base_path),
        "--served-model-name",
        base_id,
        "--host",
        host,
        "--port",
        str(port),
        "--dtype",
        dtype,
        "--max-num-seqs",
        str(max_batch),
    ]
    if api_key:
        argv += ["--api-key", api_key]
    if bits == 4:
        argv += ["--quantization", "bitsandbytes"]
    if named:
        rank = max(_lora_rank(p) for p in named.values())
        allowed = next((r for r in LORA_RANKS if r >= rank), None)
        if allowed is None:
            raise ConfigError(f"LoRA rank {rank}: vLLM serves ranks up to {LORA_RANKS[-1]}")
        argv += ["--enable-lora", "--max-lora-rank", str(allowed), "--max-loras", str(len(named))]
        argv += ["--lora-modules", *(f"{n}={Path(p).resolve()}" for n, p in named.items())]
    tok_source = where.tokenizer or next((p for p in named.values() if has_tokenizer(p)), None)
    template_file = None
    tokenizer = load_tokenizer_from(tok_source or where.base)
    if tokenizer.chat_template:
        # The template training used (the run's tokenizer), whatever the base folder holds.
        template_file = Path(workdir) / "chat_template.jinja"
        template_file.write_text(tokenizer.chat_template, encoding="utf-8")
        argv += ["--chat-template", str(template_file)]
    if tok_source:
        argv += ["--tokenizer", str(Path(tok_source).resolve())]
    return VllmPlan(argv, [base_id, *named], str(template_file) if template_file else None)


def run_vllm(plan: VllmPlan) -> int:
    """Run ``vllm serve`` in the foreground (its exit status is ours)."""
    import subprocess

    if not vllm_available():
        raise ConfigError(
            "--backend vllm: vllm is not installed (pip install vllm, on a CUDA GPU machine); "
            "the default backend serves the same API"
        )
    exe = shutil.which("vllm")
    head = [exe] if exe else [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    return subprocess.call([*head, *plan.argv[1:]])
