"""``model``: the base model to load (and, for LLaVA-style models, its vision side)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tunesmith.config.names import TEMPLATE_NAMES
from tunesmith.config.schema.base import Section, unknown_name


class VisionConfig(Section):
    """The vision side of a LLaVA-style model (stages ``vlm_pretrain`` / ``vlm_sft``)."""

    tower: str | None = Field(
        None,
        description="CLIP/SigLIP vision model (path or hub id) composed with model.name, a causal "
        "LM; leave unset when model.name is already a LLaVA model or a vlm run directory.",
    )
    projector_depth: int = Field(
        2,
        ge=1,
        le=2,
        description="2: Linear-GELU-Linear (LLaVA-1.5); 1: a linear map. Deeper projectors have "
        "no stock transformers class.",
    )
    feature_layer: int = Field(-2, description="Vision layer whose features are projected.")
    select_strategy: Literal["default", "full"] | None = Field(
        None, description="default: drop the CLS token (CLIP); full: keep all (SigLIP's default)."
    )
    image_tokens: int | None = Field(
        None, ge=1, description="Expected tokens per image; checked against the tower when set."
    )
    train_vision: Literal["frozen", "lora", "full"] = Field(
        "frozen", description="vlm_sft: the vision tower stays frozen, gets LoRA, or trains fully."
    )
    train_projector: bool = Field(True, description="vlm_sft: the projector trains too.")
    allow_remote_images: bool = Field(
        False, description="Fetch http(s) image URLs in data (refused by default)."
    )


class ModelConfig(Section):
    """Which model and tokenizer to load, and how."""

    name: str = Field(
        "builtin:tiny-qwen2",
        description="Hub id, local path, or builtin:tiny-llama / builtin:tiny-qwen2 / "
        "builtin:tiny-qwen2-narrow (offline).",
    )
    tokenizer: str | None = Field(None, description="Tokenizer path if it differs from the model.")
    template: str | None = Field(
        None, description="Built-in chat template name; default: the tokenizer's own template."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    trust_remote_code: bool = False
    revision: str | None = None
    vision: VisionConfig | None = Field(
        None, description="Vision tower, projector and what trains (vlm stages)."
    )

    @field_validator("template")
    @classmethod
    def _known_template(cls, v: str | None) -> str | None:
        if v is not None and v not in TEMPLATE_NAMES:
            fix = f"built-ins: {', '.join(TEMPLATE_NAMES)} (see `tunesmith data templates`)"
            raise unknown_name("chat template", v, TEMPLATE_NAMES, fix)
        return v
