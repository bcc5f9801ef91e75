"""A tiny LLaVA built offline: a small random CLIP vision tower + the tiny Qwen2 LM.

Deterministic (fixed seeds, same bytes every build) and cached like the other built-ins, so
``builtin:tiny-llava`` works in tests and demos without the hub. 32x32 images in 8x8 patches give
16 image tokens per image: small enough for CPU training, enough to see colours and shapes.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path


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

    from tunesmith.model.loader import quiet_transformers

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


def build_tiny_vlm(out_dir: str | Path, spec: TinyVisionSpec | None = None) -> Path:
    """Build the tiny LLaVA (vision tower + projector + tiny Qwen2) into ``out_dir``."""
    from tunesmith.model.loader import quiet_transformers
    from tunesmith.model.multimodal import compose_llava
    from tunesmith.model.tiny import resolve_builtin

    quiet_transformers()
    spec = spec or TinyVisionSpec()
    lm = resolve_builtin("builtin:tiny-qwen2")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-tower-", dir=out.parent))
    try:
        tower = build_tiny_tower(tmp, spec)
        return compose_llava(
            lm,
            tower,
            out,
            projector_depth=spec.projector_depth,
            feature_layer=spec.feature_layer,
            seed=spec.seed,
            tower_id="tunesmith/tiny-clip-vision",  # not the temporary or cache folders:
            lm_id="builtin:tiny-qwen2",  # the same bytes wherever it is built
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_tiny_vlm(spec: TinyVisionSpec | None = None) -> Path:
    """The cached ``builtin:tiny-llava`` build (built on first use)."""
    from tunesmith.model.tiny import TinySpec, build_fingerprint, cache_root

    spec = spec or TinyVisionSpec()
    h = hashlib.sha256(f"{build_fingerprint(TinySpec())}|{spec!r}".encode())
    for module in ("multimodal.py", "tiny_vlm.py"):  # the build code itself
        h.update((Path(__file__).parent / module).read_bytes())
    path = cache_root() / "models" / f"tiny-llava-{h.hexdigest()[:12]}"
    if not (path / "config.json").is_file():
        import torch

        with torch.random.fork_rng():  # building (the tiny LM too) must not shift the RNG
            build_tiny_vlm(path, spec)
    return path
