"""GPTQ export through ``transformers``' maintained integration (``GPTQConfig``, backed by
``gptqmodel`` and ``optimum``): calibrate on the run's own training prompts, save safetensors.

GPU-only: ``gptqmodel``'s quantiser runs on CUDA. Every precondition is checked before anything
is loaded, each with a one-line error naming the fix. AWQ is refused: ``transformers`` 5.x loads
AWQ checkpoints but its AWQ quantizer is inference-only (``requires_calibration``), so there is
no maintained AWQ *export* path through it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError

GPTQ_QUANTS = {"gptq-4bit": 4, "gptq-8bit": 8}
AWQ_QUANTS = ("awq-4bit",)
NO_CUDA = (
    "GPTQ export needs a CUDA GPU; use --quant bnb-4bit or --format gguf --quant q4_k_m on CPU"
)
NO_AWQ = (
    "--quant {q}: transformers 5.x only loads AWQ checkpoints (its AWQ quantizer is "
    "inference-only); quantise to AWQ with llm-compressor or gptqmodel outside tunesmith, or use "
    "--quant gptq-4bit"
)


def check_shapes(model_path: str, group_size: int) -> int:
    """Refuse a group size that does not divide every quantised layer's ``in_features``.

    Built on the meta device from ``config.json`` (no weights read), so it runs on CPU.
    Returns the number of linear layers GPTQ would quantise.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if group_size != -1 and group_size < 1:
        raise ConfigError(f"export.gptq_group_size {group_size}: use a positive size or -1")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path))
    head = model.get_output_embeddings()
    linears = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear) and mod is not head  # GPTQ leaves lm_head alone
    ]
    if group_size == -1:
        return len(linears)
    for name, mod in linears:
        if mod.in_features % group_size:
            raise ConfigError(
                f"export.gptq_group_size {group_size}: does not divide {name}.in_features "
                f"({mod.in_features}); the GPTQ kernels need it to. Pass --group-size with a "
                f"divisor of {mod.in_features} (e.g. {_divisor(mod.in_features, group_size)}) or -1"
            )
    return len(linears)


def _divisor(n: int, near: int) -> int:
    """The largest power-of-two divisor of ``n`` not above ``near`` (a size the kernels like)."""
    d = 1
    while d * 2 <= near and n % (d * 2) == 0:
        d *= 2
    return d


def installed(pkg: str) -> bool:
    """Whether ``pkg`` is importable (without importing it: gptqmodel loads CUDA kernels)."""
    return importlib.util.find_spec(pkg) is not None


def check_environment() -> None:
    """CUDA first (the common case on a laptop), then the packages transformers needs."""
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"--quant gptq: {NO_CUDA}")
    for pkg in ("gptqmodel", "optimum"):
        if not installed(pkg):
            raise ConfigError(f"--quant gptq: {pkg} is not installed; pip install {pkg}")


def calibration_texts(run: Any, tokenizer: Any, n: int) -> tuple[list[str], int]:
    """Up to ``n`` training prompts of ``run``, rendered with its chat template.

    Uses the run's data config (the same sources, system prompt and train/val split as
    training). Each prompt is rendered with its reference reply when the data has one, so the
    calibration activations match what the model was tuned on. Returns the texts and how many
    prompts the data held (the caller reports a shortfall).
    """
    from tunesmith.train.rl.prompts import load_prompts

    if run is None:
        raise ConfigError(
            "--quant gptq: calibration uses the run's training data; export a run directory, "
            "not a base model with --adapter"
        )
    if n < 1:
        raise ConfigError(f"export.calibration_samples {n}: must be at least 1")
    prompts = load_prompts(run.config.data).train
    texts = []
    for p in prompts[:n]:
        msgs = list(p["messages"])
        if p["answer"] is not None:
            msgs.append({"role": "assistant", "content": p["answer"]})
        texts.append(
            tokenizer.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=p["answer"] is None
            )
        )
    return texts, len(prompts)


def quantize(
    scratch: Path,
    tmp: Path,
    tokenizer: Any,
    texts: list[str],
    bits: int,
    group_size: int,
    shard: str | int,
) -> Any:
    """Load the merged float16 folder ``scratch`` with ``GPTQConfig`` (which calibrates on
    ``texts``) and save the quantised model to ``tmp``."""
    import torch
    from transformers import AutoModelForCausalLM, GPTQConfig

    config = GPTQConfig(bits=bits, group_size=group_size, dataset=texts, tokenizer=tokenizer)
    model = AutoModelForCausalLM.from_pretrained(
        scratch, quantization_config=config, dtype=torch.float16, device_map="auto"
    )
    model.config.use_cache = True
    model.save_pretrained(tmp, max_shard_size=shard)
    return model


def card_note(bits: int, group_size: int, used: int, asked: int) -> str:
    """The model card's paragraph on how the weights were quantised."""
    short = f" ({asked} asked for; the run's data held only {used})" if used < asked else ""
    return (
        f"\n## Quantisation\n\nGPTQ {bits}-bit, group size {group_size}, through transformers' "
        f"`GPTQConfig` (gptqmodel), calibrated on {used} training prompts of this run rendered "
        f"with its chat template{short}. Loading needs `gptqmodel` and `optimum` and a GPU.\n"
    )
