"""The tiny LLaVA's vision tower: a small random CLIP, built offline (``tiny`` joins it to the tiny
Qwen2 LM with ``llava.compose_llava``: ``build_tiny_vlm`` / ``resolve_tiny_vlm``).

Deterministic (fixed seeds, same bytes every build) and cached like the other built-ins, so
``builtin:tiny-llava`` works in tests and demos without the hub. 32x32 images in 8x8 patches give
16 image tokens per image: small enough for CPU training, enough to see colours and shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunesmith.quiet import quiet_transformers


@dataclass(frozen=True)
class TinyVisionSpec:
    """Shape of the tiny CLIP vision tower (and how it is joined to the LM)."""

    image_size: int = 32
    patch_size: int = 8
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    projector_depth: int = 2
    feature_layer: int = -1
    seed: int = 0


def build_tiny_tower(out_dir: str | Path, spec: TinyVisionSpec | None = None) -> Path:
    """A random-init ``CLIPVisionModel`` and its PIL image processor, saved to ``out_dir``."""
    import torch
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

    quiet_transformers()
    spec = spec or TinyVisionSpec()
    config = CLIPVisionConfig(
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        projection_dim=spec.hidden_size,
    )
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        tower = CLIPVisionModel(config)
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
    )
    out = Path(out_dir)
    tower.save_pretrained(out)
    processor.save_pretrained(out)
    return out
