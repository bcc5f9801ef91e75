"""Compose a stock LLaVA from a vision tower, a fresh projector and a causal LM.

A leaf of ``tunesmith.model`` (``multimodal`` re-exports it): ``tiny`` builds the tiny LLaVA with
``compose_llava``, and ``multimodal`` resolves model names with ``loader`` and ``tiny``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.atomic import replace_dir
from tunesmith.errors import ConfigError
from tunesmith.model.paths import _first
from tunesmith.quiet import quiet_transformers

IMAGE_TOKEN = "<image>"
PROJECTOR_ACT = {1: "linear", 2: "gelu"}
VISION_CLASSES = {
    "clip": "CLIPVisionModel",
    "clip_vision_model": "CLIPVisionModel",
    "siglip": "SiglipVisionModel",
    "siglip_vision_model": "SiglipVisionModel",
}


# ---- composing ------------------------------------------------------------------------------
def load_vision_tower(name: str) -> tuple[Any, Any]:
    """A CLIP/SigLIP vision model (from a full or a vision-only checkpoint) and its processor."""
    import transformers
    from transformers import AutoConfig, AutoImageProcessor

    try:
        model_type = AutoConfig.from_pretrained(name).model_type
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.vision.tower {name!r}: cannot load ({_first(exc)})") from None
    cls_name = VISION_CLASSES.get(model_type)
    if cls_name is None:
        raise ConfigError(
            f"model.vision.tower {name!r}: a {model_type!r} model; use a CLIP or SigLIP vision "
            "model (e.g. openai/clip-vit-large-patch14-336)"
        )
    tower = getattr(transformers, cls_name).from_pretrained(name, dtype="auto")
    processor = AutoImageProcessor.from_pretrained(name, backend="pil")
    return tower, processor


def compose_llava(
    lm: str | Path,
    tower: str | Path,
    out_dir: str | Path,
    *,
    projector_depth: int = 2,
    feature_layer: int = -2,
    select_strategy: str | None = None,
    seed: int = 0,
    tower_id: str | None = None,
    lm_id: str | None = None,
) -> Path:
    """Compose vision tower + fresh projector + causal LM and save it with its processor.

    The ``<image>`` token is added to the tokenizer (and the embeddings grown) when missing.
    The projector is initialised from ``seed``; everything else keeps its pretrained weights.
    ``tower_id`` / ``lm_id`` are recorded as the origins (default: ``tower`` / ``lm``). The
    folder is written atomically; weights keep their saved dtypes.
    """
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    quiet_transformers()
    if projector_depth not in PROJECTOR_ACT:  # stock LLaVA's projector has two linear layers
        raise ConfigError(f"model.vision.projector_depth {projector_depth}: choose 1 or 2")
    vision, image_processor = load_vision_tower(str(tower))
    vision.config._name_or_path = tower_id or str(tower)
    tokenizer = AutoTokenizer.from_pretrained(str(lm))
    causal = AutoModelForCausalLM.from_pretrained(str(lm), dtype="auto")
    causal.config._name_or_path = lm_id or str(lm)
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    if len(tokenizer) > causal.get_input_embeddings().weight.shape[0]:
        causal.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    is_clip = vision.config.model_type.startswith("clip")
    strategy = select_strategy or ("default" if is_clip else "full")
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision.config.patch_size,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1 if is_clip else 0,
        chat_template=tokenizer.chat_template,
    )
    config = LlavaConfig(
        vision_config=vision.config,
        text_config=causal.config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=image_seq_length(processor),
        projector_hidden_act=PROJECTOR_ACT[projector_depth],
        vision_feature_select_strategy=strategy,
        vision_feature_layer=feature_layer,
        tie_word_embeddings=bool(getattr(causal.config, "tie_word_embeddings", False)),
    )
    with torch.device("meta"):  # no throw-away random copy of the LM and the tower
        model = LlavaForConditionalGeneration(config)
    model.model.vision_tower = vision
    model.model.language_model = getattr(causal, causal.base_model_prefix)
    model.lm_head = causal.lm_head
    with torch.random.fork_rng():  # a build on first use must not shift the caller's RNG
        torch.manual_seed(seed)
        model.model.multi_modal_projector = LlavaMultiModalProjector(config)
    model.generation_config = causal.generation_config
    meta = [n for n, p in model.named_parameters() if p.is_meta]
    if meta:
        raise ConfigError(f"model.vision: composition left parameters unset ({meta[0]}, ...)")
    return _save_atomic(model, processor, Path(out_dir))


def _save_atomic(model: Any, processor: Any, out: Path) -> Path:
    with replace_dir(out, prefix=".llava-") as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return out


def image_seq_length(processor: Any) -> int:
    """Tokens one image takes in the sequence (measured through the processor itself)."""
    from PIL import Image

    size = 64
    crop = getattr(processor.image_processor, "crop_size", None) or {}
    if isinstance(crop, dict) and crop.get("height"):
        size = int(crop["height"])
    enc = processor(
        text=IMAGE_TOKEN,
        images=[Image.new("RGB", (size, size))],
        return_tensors="pt",
        add_special_tokens=False,
    )
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    return int((enc["input_ids"] == image_id).sum())
