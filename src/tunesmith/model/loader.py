"""Load a tokenizer and a causal LM: built-in tiny models, local paths or hub ids.

A model name is read as a local path when it looks like one (``./x``, ``/x``, ``~/x``, ``a/b/c``,
``x.yaml``, ``org/name`` where ``org`` is a local folder, or anything that is not a valid hub
id): a missing one is "not found" at once. Only hub-looking ids (``org/name``, ``gpt2``) go to
the Hugging Face Hub, after one short reachability check, so a typo or an offline machine costs
a second rather than a minute of retries. Weights that fail to load are checked file by file, so
a cut-off download names its file and what to do.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.model.paths import (  # noqa: F401  (re-exported: callers import them from here)
    BUILTIN_PREFIX,
    _first,
    damaged_file,
    safetensors_problem,
)
from tunesmith.model.tiny import resolve_builtin
from tunesmith.quiet import quiet_transformers

#: Endings that mark a name as a file path, never a hub id.
_SUFFIXES = (
    "yaml yml json jsonl safetensors bin pt pth ckpt gguf ggml onnx h5 msgpack model txt csv "
    "parquet zip tar gz tgz py"
)
PATH_SUFFIXES = frozenset(f".{s}" for s in _SUFFIXES.split())
_HUB_PART = r"[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"{_HUB_PART}(?:/{_HUB_PART})?")
#: Seconds the reachability check waits (``HF_HUB_ETAG_TIMEOUT``, when set, wins).
HUB_PROBE_TIMEOUT = 5.0
_hub_probe: dict[str, tuple[float, str | None]] = {}  # endpoint -> (when, why unreachable)
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model", "vocab.json")


def is_hub_id(name: str) -> bool:
    """Whether ``name`` is a valid Hugging Face Hub model id (``org/name`` or ``name``)."""
    return bool(_HUB_ID.fullmatch(name)) and ".." not in name and "--" not in name


def looks_like_path(name: str) -> bool:
    """Whether ``name`` is meant as a local path rather than a Hugging Face Hub id.

    True for names that start with ``.``, ``/`` or ``~``, hold a path separator beyond a single
    ``org/name`` (or a backslash), end in a file extension (``.yaml``, ``.safetensors``, ...),
    are ``org/name`` with ``org`` an existing local folder, or are not valid hub ids at all.
    """
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:
        return True
    if Path(name).suffix.lower() in PATH_SUFFIXES:
        return True
    if "/" in name and Path(name).parent.is_dir():  # runs/typo beside an existing runs/
        return True
    return not is_hub_id(name)


def resolve_model_path(
    name: str,
    *,
    what: str | None = "model.name",
    revision: str | None = None,
    tokenizer: bool = False,
) -> str:
    """A loadable path or hub id for a model name (built-ins are built on first use).

    Args:
        name: ``builtin:...``, a local folder, or a Hugging Face Hub id.
        what: the config key or flag the name came from, for error messages (``None``: the name
            was given on the command line as a run directory or model).
        revision: hub revision (branch, tag or commit) looked up in the local cache.
        tokenizer: the folder only needs a tokenizer, not a model's ``config.json``.

    Raises:
        ConfigError: a path that does not exist or holds no model, or a hub id that is neither
            cached nor reachable.
    """
    label = _label(name, what)
    if name.startswith(BUILTIN_PREFIX):
        return str(resolve_builtin(name))
    p = Path(name).expanduser()
    if p.exists():
        if p.is_file():
            raise ConfigError(f"{label}: is a file; give the folder that holds the model")
        needed = TOKENIZER_FILES if tokenizer else ("config.json",)
        if not any((p / f).is_file() for f in needed):
            kind = "a tokenizer" if tokenizer else "a model"
            raise ConfigError(f"{label}: folder has no {needed[0]}; is it {kind}?")
        return str(p)
    if looks_like_path(name):
        raise ConfigError(f"{label}: {_not_found(name, what)}")
    return _hub_or_cache(name, label, revision)


def _label(name: str, what: str | None) -> str:
    return f"{what} {name!r}" if what else name


def _not_found(name: str, what: str | None) -> str:
    text = "path not found" if what else "not found: no such run directory or model folder"
    parent = Path(name).expanduser().parent
    if "/" in name and name.count("/") == 1 and parent.is_dir() and not name.startswith("."):
        text += f" (read as a path because {parent}/ is a local folder)"
    return text


def _hub_or_cache(name: str, label: str, revision: str | None) -> str:
    """A hub id: the cached snapshot when the hub is off or unreachable, else the id."""
    from huggingface_hub import constants

    cached = cached_snapshot(name, revision)
    if constants.HF_HUB_OFFLINE:
        if cached is None:
            raise ConfigError(
                f"{label}: not found locally or in the Hugging Face cache "
                f"({constants.HF_HUB_CACHE}), and HF_HUB_OFFLINE is set so nothing is "
                "downloaded; check the name, or unset HF_HUB_OFFLINE to download it"
            )
        return str(cached)
    reason = hub_unreachable()
    if reason is None:
        return name  # transformers downloads it (or checks the cached copy is current)
    if cached is not None:
        return str(cached)
    raise ConfigError(
        f"{label}: not found locally, and the Hugging Face Hub ({constants.ENDPOINT}) cannot be "
        f"reached ({reason}); check the name (a local path needs ./ or /), or set "
        f"HF_HUB_OFFLINE=1 to use only models already in the cache ({constants.HF_HUB_CACHE})"
    )


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The local snapshot folder of a hub model in the Hugging Face cache, if it is there."""
    from huggingface_hub import constants, try_to_load_from_cache

    for filename in ("config.json", "tokenizer_config.json"):
        try:
            hit = try_to_load_from_cache(
                repo_id, filename, cache_dir=constants.HF_HUB_CACHE, revision=revision
            )
        except ValueError:  # not a valid repo id after all
            return None
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def hub_unreachable(timeout: float | None = None) -> str | None:
    """Why the Hugging Face Hub cannot be reached, or ``None`` when it answers.

    One request with a short timeout (``HF_HUB_ETAG_TIMEOUT`` if set, else
    ``HUB_PROBE_TIMEOUT`` seconds) and no retries; the answer is kept for a minute.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    endpoint = constants.ENDPOINT
    now = time.monotonic()
    seen = _hub_probe.get(endpoint)
    if seen is not None and now - seen[0] < 60:
        return seen[1]
    if timeout is None:
        timeout = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or HUB_PROBE_TIMEOUT)
    reason: str | None = None
    try:
        get_session().head(endpoint, timeout=timeout)
    except Exception as exc:  # any failure to get an answer means "not reachable"
        reason = _first(exc)[:120]
    _hub_probe[endpoint] = (now, reason)
    return reason


def _damage_or(path: str, label: str, action: str, exc: BaseException) -> ConfigError:
    """A one-line error for a failed load: the damaged file if one is found, else the cause."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        folder = cached_snapshot(path) or folder
    problem = damaged_file(folder) if folder.is_dir() else None
    if problem:
        return ConfigError(f"{label}: {problem}")
    return ConfigError(f"{label}: cannot load {action} ({_first(exc)})")


def load_tokenizer(
    name: str, *, trust_remote_code: bool = False, what: str | None = "model.name"
) -> Any:
    """Load a tokenizer, with a pad token set (falling back to eos).

    Args:
        name: ``builtin:...``, a local folder or a hub id.
        trust_remote_code: allow the model's own tokenizer code.
        what: the config key the name came from (``model.tokenizer``), for errors.
    """
    from transformers import AutoTokenizer

    quiet_transformers()
    path = resolve_model_path(name, what=what, tokenizer=True)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _damage_or(path, _label(name, what), "tokenizer", exc) from None
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def tokenizer_for(model: Any) -> Any:
    """The tokenizer a config's ``model`` section names: ``model.tokenizer``, else ``model.name``.

    Errors name the key the path came from.
    """
    key, name = (
        ("model.tokenizer", model.tokenizer) if model.tokenizer else ("model.name", model.name)
    )
    return load_tokenizer(name, trust_remote_code=model.trust_remote_code, what=key)


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
    what: str | None = "model.name",
) -> Any:
    """Load a causal LM for training or inference.

    Args:
        name: ``builtin:...``, a local folder or a hub id.
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
        attn_implementation: transformers' attention implementation (``sdpa``, ...).
        trust_remote_code: allow the model's own modelling code.
        revision: hub revision.
        quant: A ``QuantConfig`` (bits, quant_type, double_quant, compute_dtype) to load the
            weights through bitsandbytes, or ``None`` for full precision.
        what: the config key or flag the name came from, for errors.

    Raises:
        ConfigError: a missing or damaged model (the damaged file is named).
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    path = resolve_model_path(name, what=what, revision=revision)
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
    except (OSError, ValueError, KeyError, ImportError, SafetensorError) as exc:
        raise _damage_or(path, _label(name, what), "model", exc) from None


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
