"""Load a tokenizer and a causal LM: built-in tiny models, local paths or hub ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.model.tiny import BUILTIN_PREFIX, resolve_builtin


def resolve_model_path(name: str) -> str:
    """A loadable path or hub id for ``model.name`` (built-ins are built on first use)."""
    if name.startswith(BUILTIN_PREFIX):
        return str(resolve_builtin(name))
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ConfigError(f"model.name {name!r}: folder has no config.json; is it a model?")
        return str(p)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ConfigError(f"model.name {name!r}: path not found")
    return name  # a hub id, for users with network access


def quiet_transformers() -> None:
    """Silence per-load progress bars and advisory warnings that clutter a CLI."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_tokenizer(name: str, *, trust_remote_code: bool = False) -> Any:
    """Load a tokenizer, with a pad token set (falling back to eos)."""
    from transformers import AutoTokenizer

    quiet_transformers()
    path = resolve_model_path(name)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise ConfigError(f"model.name {name!r}: cannot load tokenizer ({_first(exc)})") from None
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def pick_dtype(dtype: str) -> Any:
    """Map a config dtype to torch (``auto``: bf16 on GPUs that support it, else fp32)."""
    import torch

    if dtype == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_model(
    name: str,
    *,
    dtype: str = "auto",
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
    revision: str | None = None,
    quant: Any = None,
) -> Any:
    """Load a causal LM for training or inference.

    Args:
        quant: A ``QuantConfig`` (bits, quant_type, double_quant, compute_dtype) to load the
            weights through bitsandbytes, or ``None`` for full precision.
    """
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    path = resolve_model_path(name)
    extra: dict[str, Any] = {}
    if quant is not None:
        extra["quantization_config"] = bnb_config(path, quant, trust_remote_code)
    try:
        return AutoModelForCausalLM.from_pretrained(
            path,
            dtype=pick_dtype(dtype),
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            revision=revision,
            **extra,
        )
    except (OSError, ValueError, ImportError) as exc:
        raise ConfigError(f"model.name {name!r}: cannot load model ({_first(exc)})") from None


def bnb_config(path: str, quant: Any, trust_remote_code: bool = False) -> Any:
    """A ``BitsAndBytesConfig`` for ``quant``, after checking the model's shapes allow it."""
    from transformers import AutoConfig, BitsAndBytesConfig

    from tunesmith.model.adapters import check_quantizable

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(
            "method.quant: bitsandbytes is not installed; pip install 'tunesmith[quant]'"
        ) from None
    check_quantizable(
        AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code), quant.bits
    )
    if quant.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=pick_dtype(quant.compute_dtype),
    )


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
