"""Vision-language models in the inference engine: find, load, and turn prompts into inputs.

A VLM target is ``builtin:tiny-llava``, a run directory of the ``vlm_pretrain`` / ``vlm_sft``
stages (``model/``, or a LoRA ``adapter/`` that is merged into its recorded base), or a LLaVA
checkpoint folder. Prompts are rendered with the training chat template (the processor's); each
``<image>`` placeholder is expanded by the processor into the image tokens exactly as in
training, and the images become the ``pixel_values`` a request carries into its prefill.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.runs import RunRecord, is_run_dir, load_run

#: Image inputs the processor may return beyond ``pixel_values`` that the engine cannot batch.
_UNBATCHED = ("image_sizes", "image_grid_thw", "pixel_attention_mask", "aspect_ratio_ids")


def is_vlm_target(path_or_run: str, adapter: str | None = None) -> bool:
    """Whether ``path_or_run`` (with an optional adapter folder) is an image-text model."""
    from tunesmith.model.multimodal import resolve_vlm_path

    if path_or_run.startswith("builtin:"):
        return path_or_run == "builtin:tiny-llava"
    try:
        base, run_adapter = resolve_vlm_path(path_or_run)
    except (ConfigError, KeyError, OSError, ValueError):
        return False
    for folder in (adapter, run_adapter, base):
        if folder is None:
            continue
        if (Path(folder) / "processor_config.json").is_file():
            return True
    config = Path(base) / "config.json"
    if not config.is_file():
        return False
    try:
        return "vision_config" in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def load_vlm_target(
    path_or_run: str,
    *,
    adapter: str | None = None,
    dtype: str = "auto",
    adapters: dict[str, str] | None = None,
    bits: int | None = None,
    device: str = "auto",
) -> tuple[Any, Any, RunRecord | None, str]:
    """``(model, processor, run record or None, public name)`` for ``Engine.load``."""
    from tunesmith.infer.loading import pick_device

    if bits is not None:
        raise ConfigError(f"--bits {bits}: not supported for vision-language models yet")
    if adapters:
        raise ConfigError(
            "--adapter NAME=PATH: several adapters over one vision-language model are not "
            "supported yet; serve each run on its own"
        )
    run = load_run(path_or_run) if is_run_dir(path_or_run) else None
    model, processor = load_vlm_model(
        path_or_run, adapter=adapter, dtype=dtype, device=pick_device(device)
    )
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    name = Path(path_or_run).resolve().name if run is not None else path_or_run
    return model, processor, run, name


def load_vlm_model(
    path_or_run: str, *, adapter: str | None, dtype: str, device: str
) -> tuple[Any, Any]:
    """``(model, processor)`` in eval mode on ``device``; LoRA adapters are merged."""
    from tunesmith.model.multimodal import load_processor, load_vlm
    from tunesmith.model.source import quiet_peft

    if adapter is not None and not Path(adapter).is_dir():
        raise ConfigError(f"--adapter {adapter}: folder not found")
    with quiet_peft():
        model, processor = load_vlm(path_or_run, dtype=dtype)  # a run's own adapter: merged
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
            if (Path(adapter) / "processor_config.json").is_file():
                processor = load_processor(adapter)
    return model.to(device).eval(), processor


def to_images(images: Sequence[Any], *, where: str = "image") -> list[Any]:
    """RGB ``PIL.Image`` objects from images or references (paths, ``data:`` URIs)."""
    from tunesmith.data.images import load_image

    out = []
    for i, im in enumerate(images):
        if isinstance(im, str | Path):
            out.append(load_image(str(im), where=f"{where} {i}"))
        elif hasattr(im, "convert"):
            out.append(im.convert("RGB") if getattr(im, "mode", "RGB") != "RGB" else im)
        else:
            raise ConfigError(f"{where} {i}: expected a PIL image or a path, got {type(im)}")
    return out


def attach_placeholders(messages: list[dict[str, Any]], n: int, token: str) -> list[dict[str, Any]]:
    """Messages whose first user turn starts with ``n`` placeholders, unless some are there."""
    if n == 0 or any(token in str(m.get("content") or "") for m in messages):
        return messages
    out = [dict(m) for m in messages]
    for m in out:
        if m.get("role") == "user":
            m["content"] = token * n + str(m.get("content") or "")
            return out
    raise ConfigError(f"{n} image(s) but no user message to attach them to")


def encode_with_images(
    processor: Any, text: str, images: Sequence[Any], *, per_image: int
) -> tuple[list[int], Any]:
    """Prompt ids with every placeholder expanded, and the images' ``pixel_values``.

    Raises:
        ConfigError: placeholders and images differ in number, or the expansion is not the
            expected ``per_image`` tokens per image.
    """
    token = processor.image_token
    count = text.count(token)
    if count != len(images):
        raise ConfigError(
            f"{count} {token} placeholder(s) in the prompt but {len(images)} image(s); "
            f"give one image per {token}"
        )
    try:
        enc = processor(
            text=text, images=list(images), return_tensors="pt", add_special_tokens=False
        )
    except (ValueError, TypeError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"the processor refused the images ({first[:200]})") from None
    extra = [k for k in _UNBATCHED if enc.get(k) is not None]
    if extra:
        raise ConfigError(
            f"this model's processor returns {', '.join(extra)}; the engine batches LLaVA-style "
            "models (pixel_values only)"
        )
    ids = enc["input_ids"][0].tolist()
    image_id = processor.image_token_id
    if ids.count(image_id) != per_image * len(images):
        raise ConfigError(
            f"{ids.count(image_id)} image tokens for {len(images)} image(s); expected "
            f"{per_image} per image (text must not hold pre-expanded image tokens)"
        )
    return ids, enc["pixel_values"]
