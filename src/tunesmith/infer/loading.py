"""Loading what the engine serves: device choice, a base model (optionally 4/8-bit), adapters."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.model.source import quiet_peft


def pick_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_base(name: str, *, dtype: str = "auto", bits: int | None = None, device: str = "auto"):
    """Load base weights, optionally quantised to 4 or 8 bits with bitsandbytes."""
    from tunesmith.model.loader import load_model

    device = pick_device(device)
    if bits is None:
        return load_model(name, dtype=dtype).to(device)
    if bits not in (4, 8):
        raise ConfigError(f"--bits {bits}: choose 4 or 8")
    return _load_quantized(name, dtype=dtype, bits=bits, device=device)


def check_quantizable(path: str, bits: int, device: str) -> None:
    """Fail early, in one line, when bitsandbytes cannot run this model's shapes."""
    if bits != 4 or not device.startswith("cpu"):
        return
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    head = skeleton.get_output_embeddings()
    for name, mod in skeleton.named_modules():
        linear = isinstance(mod, torch.nn.Linear) and mod is not head
        if linear and (mod.out_features % 32 or mod.in_features % 2):
            raise ConfigError(
                f"--bits 4: layer {name} is {mod.in_features}->{mod.out_features}; 4-bit on "
                "CPU needs output sizes that are multiples of 32; use --bits 8 or no --bits"
            )


def _load_quantized(name: str, *, dtype: str, bits: int, device: str) -> Any:
    from tunesmith.model.loader import (
        damaged_file,
        pick_dtype,
        quiet_transformers,
        resolve_model_path,
    )

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"--bits {bits} needs bitsandbytes: pip install 'tunesmith[quant]'"
        ) from None
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quiet_transformers()
    path = resolve_model_path(name)
    check_quantizable(path, bits, device)
    compute = pick_dtype(dtype)
    if bits == 4:
        q = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute
        )
    else:
        q = BitsAndBytesConfig(load_in_8bit=True)
        # bitsandbytes warns on every 8-bit matmul on CPU that inputs are cast to fp16.
        warnings.filterwarnings("ignore", message=r"MatMul8bitLt: inputs will be cast")
    from safetensors import SafetensorError

    try:
        return AutoModelForCausalLM.from_pretrained(
            path, quantization_config=q, dtype=compute, device_map={"": device}
        )
    except (OSError, ValueError, ImportError, SafetensorError) as exc:
        problem = damaged_file(Path(path)) if Path(path).is_dir() else None
        first = problem or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"--bits {bits}: cannot load {name!r} quantised ({first})") from None


def attach_adapters(model: Any, named: dict[str, str]) -> tuple[Any, dict[str, str]]:
    """Load LoRA adapters onto ``model``; returns the PeftModel and public -> peft names."""
    from peft import PeftModel
    from safetensors import SafetensorError

    from tunesmith.model.loader import damaged_file

    keys: dict[str, str] = {}
    peft_model = model
    for i, (public, path) in enumerate(named.items()):
        key = re.sub(r"\W", "_", public) + f"_{i}"  # peft names must be module-safe
        if not Path(path).is_dir():  # peft would take a missing folder for a hub id
            raise ConfigError(f"adapter {public!r} at {path}: folder not found")
        try:
            with quiet_peft():
                if i == 0:
                    peft_model = PeftModel.from_pretrained(model, path, adapter_name=key)
                else:
                    peft_model.load_adapter(path, adapter_name=key)
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
            problem = damaged_file(Path(path))
            if problem:
                raise ConfigError(f"adapter {public!r}: {problem}") from None
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(
                f"adapter {public!r} at {path}: cannot load ({first[:200]})"
            ) from None
        keys[public] = key
    return peft_model, keys
