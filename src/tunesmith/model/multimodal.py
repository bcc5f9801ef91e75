"""LLaVA-style vision-language models: compose, load, choose what trains, prepare inputs.

``compose_llava`` joins a CLIP or SigLIP vision tower, a projector and a causal LM into a stock
``LlavaForConditionalGeneration`` saved with a ``LlavaProcessor`` (PIL image processor, no
torchvision), so the folder reloads with plain ``AutoProcessor`` / ``AutoModelForImageTextToText``.
Stock LLaVA's projector is Linear-act-Linear: depth 2 is LLaVA-1.5's GELU MLP, depth 1 uses the
identity activation (one linear map). Existing LLaVA checkpoints load directly.

Freeze policy per stage (``apply_vlm_method``): ``vlm_pretrain`` trains the projector only;
``vlm_sft`` trains the projector (``vision.train_projector``), the LLM fully or through LoRA
(``method.type``), and the vision tower only when ``vision.train_vision`` says ``lora``/``full``.

Inference: ``load_vlm(path_or_run)`` -> ``(model, processor)``; ``prepare_inputs`` turns chat
messages and PIL images into the model's keyword arguments, with the training template.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from tunesmith.config.schema import MethodConfig, ModelConfig, VisionConfig
from tunesmith.errors import ConfigError, DataError
from tunesmith.model.llava import (  # noqa: F401  (re-exported: callers import them from here)
    IMAGE_TOKEN,
    PROJECTOR_ACT,
    VISION_CLASSES,
    compose_llava,
    image_seq_length,
    load_vision_tower,
)
from tunesmith.model.loader import pick_dtype, quiet_transformers, resolve_model_path
from tunesmith.model.paths import _first, cache_root
from tunesmith.model.tiny import resolve_builtin

PROJECTOR = "multi_modal_projector"


def composed_path(model: ModelConfig) -> Path:
    """Compose ``model.name`` (a causal LM) with ``model.vision.tower`` once, cached."""
    v = model.vision
    assert v is not None and v.tower is not None
    lm = resolve_model_path(model.name)
    tower = v.tower if not Path(v.tower).exists() else str(Path(v.tower).resolve())
    lm_key = str(Path(lm).resolve()) if Path(lm).exists() else lm
    key = json.dumps([lm_key, tower, v.projector_depth, v.feature_layer, v.select_strategy])
    path = cache_root() / "models" / f"llava-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if not (path / "config.json").is_file():
        compose_llava(
            lm,
            tower,
            path,
            projector_depth=v.projector_depth,
            feature_layer=v.feature_layer,
            select_strategy=v.select_strategy,
        )
    return path


# ---- locating and loading -------------------------------------------------------------------
def resolve_vlm_path(name: str | Path) -> tuple[Path, Path | None]:
    """``(model folder, adapter folder or None)`` for a built-in, run directory or model folder.

    A run directory resolves to its ``model/`` (full weights) or ``adapter/`` (LoRA, whose base
    is recorded in ``adapter_config.json``).
    """
    text = str(name)
    if text.startswith("builtin:"):
        return resolve_builtin(text), None
    path = Path(text).expanduser()
    if path.exists():
        path = path.resolve()  # recorded as an adapter's base: must work from any directory
    if (path / "model" / "config.json").is_file():
        return path / "model", None
    adapter = path / "adapter" if (path / "adapter").is_dir() else path
    if (adapter / "adapter_config.json").is_file():
        cfg = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
        return Path(cfg["base_model_name_or_path"]), adapter
    if (path / "config.json").is_file():
        return path, None
    if path.exists() or text.startswith((".", "/", "~")):
        raise ConfigError(
            f"model.name {text!r}: not a model folder or a run directory with model/ or adapter/"
        )
    return path, None  # a hub id, for users with network access


def is_vlm(path_or_run: str | Path) -> bool:
    """Whether ``path_or_run`` (as ``load_vlm`` takes it) holds a local image-text model."""
    try:
        base, adapter = resolve_vlm_path(path_or_run)
    except ConfigError:
        return False
    return (Path(adapter or base) / "processor_config.json").is_file()


def load_processor(path: str | Path) -> Any:
    """The saved processor (``AutoProcessor``; image processing through PIL)."""
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(str(path), backend="pil")
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot load a processor ({_first(exc)})") from None


def load_vlm(
    path_or_run: str | Path,
    *,
    dtype: str = "auto",
    attn_implementation: str = "sdpa",
    merge: bool = True,
) -> tuple[Any, Any]:
    """Load a vision-language model and its processor for inference (``eval()`` mode).

    Accepts ``builtin:tiny-llava``, a model folder, a LLaVA hub id, or a run directory (its
    ``model/`` or its LoRA ``adapter/`` on top of the recorded base, merged when ``merge``).
    """
    from transformers import AutoModelForImageTextToText

    quiet_transformers()
    base, adapter = resolve_vlm_path(path_or_run)
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            str(base), dtype=pick_dtype(dtype), attn_implementation=attn_implementation
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path_or_run}: cannot load an image-text model ({_first(exc)})"
        ) from None
    processor = load_processor(adapter or base)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return model, processor


def vlm_processor(model_cfg: ModelConfig) -> Any:
    """The processor a vlm stage will use (composing the model first when needed)."""
    vision = model_cfg.vision
    if vision is not None and vision.tower is not None:
        return load_processor(composed_path(model_cfg))
    base, adapter = resolve_vlm_path(model_cfg.name)
    return load_processor(adapter or base)


def load_llava_for_training(model_cfg: ModelConfig) -> tuple[Any, Any, Path]:
    """``(model, processor, folder)`` for a vlm stage: composed, built-in, run dir or checkpoint."""
    from transformers import LlavaForConditionalGeneration

    quiet_transformers()
    vision = model_cfg.vision
    if vision is not None and vision.tower is not None:
        path = composed_path(model_cfg)
    else:
        path, adapter = resolve_vlm_path(model_cfg.name)
        if adapter is not None:
            raise ConfigError(
                f"model.name {model_cfg.name!r}: holds a LoRA adapter only; start from a run "
                "with full weights (the vlm_pretrain stage saves model/), or merge it first"
            )
    config_file = path / "config.json"
    model_type = (
        json.loads(config_file.read_text()).get("model_type") if config_file.is_file() else None
    )
    if model_type is not None and model_type != "llava":
        raise ConfigError(
            f"model.name {model_cfg.name!r}: a {model_type!r} model; the vlm stages train LLaVA "
            "(model_type llava) models, or compose one with model.vision.tower"
        )
    try:
        model = LlavaForConditionalGeneration.from_pretrained(
            str(path),
            dtype=pick_dtype(model_cfg.dtype),
            attn_implementation=model_cfg.attn_implementation,
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.name {model_cfg.name!r}: cannot load ({_first(exc)})") from None
    processor = load_processor(path)
    if vision is not None and vision.image_tokens is not None:
        got = image_seq_length(processor)
        if got != vision.image_tokens:
            raise ConfigError(
                f"model.vision.image_tokens {vision.image_tokens}: this model's vision tower "
                f"gives {got} tokens per image; fix the value or remove it"
            )
    return model, processor, path


# ---- what trains ----------------------------------------------------------------------------
def vlm_parts(model: Any) -> dict[str, Any]:
    """The vision tower, the projector and the LLM (decoder + lm_head) of a LLaVA model."""
    inner = model.model
    return {
        "vision": inner.vision_tower,
        "projector": getattr(inner, PROJECTOR),
        "llm": [inner.language_model, model.lm_head],
    }


def _set_trainable(part: Any, on: bool) -> None:
    for module in part if isinstance(part, list) else [part]:
        module.requires_grad_(on)


def lora_targets(model: Any, scopes: list[str], targets: str | list[str]) -> list[str]:
    """Full names of the linear layers under ``scopes`` that LoRA wraps.

    ``targets``: ``all-linear``, a list of layer names (``q_proj``), or a regex matched against
    the full module name.
    """
    import torch

    out = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or not name.startswith(tuple(scopes)):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if targets == "all-linear":
            hit = True
        elif isinstance(targets, list):
            hit = leaf in targets
        else:
            hit = re.fullmatch(targets, name) is not None
        if hit:
            out.append(name)
    return out


def apply_vlm_method(
    model: Any, stage: str, method: MethodConfig, vision: VisionConfig | None
) -> Any:
    """Freeze and wrap ``model`` for ``stage``; returns the model to optimise.

    Raises:
        ConfigError: a method the vlm stages do not support, or LoRA targets matching nothing.
    """
    vision = vision or VisionConfig()
    parts = vlm_parts(model)
    for p in model.parameters():
        p.requires_grad_(False)
    if stage == "vlm_pretrain":
        _set_trainable(parts["projector"], True)
        return model
    if method.type not in ("full", "lora"):
        raise ConfigError(
            f"method.type {method.type!r}: stage vlm_sft trains the LLM with 'full' or 'lora'"
        )
    if method.type == "full" and vision.train_vision == "lora":
        raise ConfigError(
            "model.vision.train_vision 'lora' needs method.type 'lora'; use 'full' or 'frozen'"
        )
    scopes = []
    if method.type == "lora":
        scopes.append("model.language_model.")
    if vision.train_vision == "lora":
        scopes.append("model.vision_tower.")
    if not scopes:  # full LLM, no adapters
        _set_trainable(parts["llm"], True)
        _set_trainable(parts["projector"], vision.train_projector)
        _set_trainable(parts["vision"], vision.train_vision == "full")
        return model
    from peft import LoraConfig, get_peft_model

    lc = method.lora
    if lc.init == "pissa":
        raise ConfigError("method.lora.init 'pissa': not supported by the vlm stages; use default")
    names = lora_targets(model, scopes, lc.targets)
    if not names:
        raise ConfigError(f"method.lora.targets {lc.targets!r}: matches no linear layer")
    save = list(lc.modules_to_save or [])
    save += [PROJECTOR] if vision.train_projector else []
    save += ["vision_tower"] if vision.train_vision == "full" else []
    config = LoraConfig(
        r=lc.rank,
        lora_alpha=lc.alpha,
        lora_dropout=lc.dropout,
        target_modules=names,
        modules_to_save=save or None,
        use_dora=lc.use_dora,
        use_rslora=lc.use_rslora,
        init_lora_weights=True if lc.init == "default" else lc.init,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


# ---- inference inputs -----------------------------------------------------------------------
def _as_text(content: Any) -> str:
    """Message content as text, OpenAI image parts becoming ``<image>`` placeholders."""
    if isinstance(content, str):
        return content
    texts = []
    for part in content or []:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind in ("image", "image_url"):
            texts.append(IMAGE_TOKEN)
        else:
            raise DataError(f"message part {str(part)[:40]!r}: use text and image_url parts")
    return "".join(texts)


def prepare_inputs(
    processor: Any,
    messages: list[dict[str, Any]],
    images: list[Any],
    *,
    add_generation_prompt: bool = True,
) -> dict[str, Any]:
    """Model kwargs (``input_ids``, ``attention_mask``, ``pixel_values``) for a chat.

    Args:
        processor: From ``load_vlm``.
        messages: ``[{"role", "content"}]``; content is text with ``<image>`` placeholders, or a
            list of OpenAI parts (``text`` / ``image_url`` / ``image``), each image part a
            placeholder.
        images: ``PIL.Image`` objects, one per placeholder, in order (decode references with
            ``tunesmith.data.images.load_image``, which refuses remote URLs unless allowed).
        add_generation_prompt: End with the assistant header (for generation).

    Raises:
        DataError: the number of placeholders differs from the number of images.
    """
    msgs = [{**m, "content": _as_text(m.get("content"))} for m in messages]
    count = sum(m["content"].count(IMAGE_TOKEN) for m in msgs)
    if count != len(images):
        raise DataError(
            f"{count} {IMAGE_TOKEN} placeholder(s) in the messages but {len(images)} image(s); "
            "give one image per placeholder"
        )
    tokenizer = processor.tokenizer
    template = getattr(processor, "chat_template", None) or tokenizer.chat_template
    text = tokenizer.apply_chat_template(
        msgs, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    return dict(
        processor(
            text=text,
            images=list(images) or None,
            return_tensors="pt",
            add_special_tokens=False,
        )
    )
