"""The optimiser and the learning-rate schedule of a run.

``train.optim`` picks the optimiser; every choice comes from a maintained package:

* ``adamw`` — ``torch.optim.AdamW`` (fused where the device supports it).
* ``adamw_8bit``, ``paged_adamw``, ``paged_adamw_8bit`` — bitsandbytes: 8-bit block-quantised
  moments (about 2 bytes of state per parameter instead of 8), paged state that CUDA can evict
  to host memory under pressure (on CPU, bitsandbytes runs them unpaged).
* ``galore_adamw`` (``galore-torch``), ``apollo_adamw`` (``apollo-torch``) — the 2-D weights of
  the decoder layers get low-rank (GaLore: gradient projection; APOLLO: random-projection
  learning-rate scaling) state of rank ``train.optim_args.rank``; everything else plain AdamW.
  ``galore_adamw_8bit`` (GaLore over bitsandbytes' 8-bit AdamW) needs CUDA.
* ``badam`` — the ``badam`` package's block coordinate descent: AdamW over one decoder layer at a
  time, switching every ``train.optim_args.block_switch_every`` steps (full fine-tuning only).
"""

from __future__ import annotations

from typing import Any

from tunesmith.config.schema import RunConfig
from tunesmith.errors import ConfigError


def _need(optim: str) -> Any:
    """Import the package behind ``optim`` or fail in one line naming the fix."""
    try:
        if optim == "badam":
            import badam as lib
        elif optim.startswith("galore"):
            import galore_torch as lib
        elif optim == "apollo_adamw":
            import apollo_torch as lib
        else:
            import bitsandbytes as lib
    except ImportError as exc:
        raise ConfigError(
            f"train.optim {optim}: needs the {exc.name} package; pip install 'tunesmith[optim]'"
        ) from None
    return lib


def param_groups(model: Any, cfg: RunConfig) -> list[dict[str, Any]]:
    """No weight decay on biases and norms; LoRA+ gives B matrices a higher lr."""
    tc = cfg.train
    ratio = cfg.method.lora.lora_plus_ratio if cfg.method.type in ("lora", "qlora") else None
    groups: dict[tuple[bool, bool], list[Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2 or "norm" in name
        fast = ratio is not None and "lora_B" in name
        groups.setdefault((no_decay, fast), []).append(p)
    return [
        {
            "params": ps,
            "weight_decay": 0.0 if no_decay else tc.weight_decay,
            "lr": tc.lr * (ratio if fast and ratio else 1.0),
        }
        for (no_decay, fast), ps in sorted(groups.items())
    ]


def lowrank_targets(model: Any) -> set[int]:
    """Ids of the trainable 2-D weights inside decoder layers (what GaLore/APOLLO project)."""
    from tunesmith.model.adapters import decoder_layers

    out: set[int] = set()
    for _, layer in decoder_layers(model):
        for p in layer.parameters():
            if p.requires_grad and p.ndim == 2:
                out.add(id(p))
    return out


def _lowrank_groups(model: Any, cfg: RunConfig, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """``param_groups`` with the decoder-layer matrices split off into projected groups."""
    targets = lowrank_targets(model)
    if not targets:
        raise ConfigError(
            f"train.optim {cfg.train.optim}: no trainable 2-D weight in the decoder layers to "
            "project; use it with method.type full or freeze"
        )
    out: list[dict[str, Any]] = []
    for g in param_groups(model, cfg):
        plain = [p for p in g["params"] if id(p) not in targets]
        low = [p for p in g["params"] if id(p) in targets]
        if plain:
            out.append({**g, "params": plain})
        if low:
            out.append({**g, "params": low, **extra})
    return out


def make_optimizer(model: Any, cfg: RunConfig) -> Any:
    """The optimiser ``train.optim`` names, over ``param_groups``."""
    import torch

    tc = cfg.train
    optim, a = tc.optim, tc.optim_args
    betas = tuple(tc.adam_betas)
    if optim == "adamw":
        params = param_groups(model, cfg)
        # The fused kernel is one pass over all parameters (4x faster than the per-tensor loop
        # on CPU); it needs floating-point parameters on a device it supports.
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        devices = set(_get_fused_kernels_supported_devices())
        fused = all(
            p.is_floating_point() and p.device.type in devices for g in params for p in g["params"]
        )
        return torch.optim.AdamW(params, lr=tc.lr, betas=betas, fused=fused or None)
    lib = _need(optim)
    if optim in ("adamw_8bit", "paged_adamw", "paged_adamw_8bit"):
        cls = {
            "adamw_8bit": lib.optim.AdamW8bit,
            "paged_adamw": lib.optim.PagedAdamW,
            "paged_adamw_8bit": lib.optim.PagedAdamW8bit,
        }[optim]
        import warnings

        with warnings.catch_warnings():  # "paged optimizers are not supported on CPU"
            warnings.filterwarnings("ignore", message=".*[Pp]aged optimizers.*")
            return cls(param_groups(model, cfg), lr=tc.lr, betas=betas)
    if optim in ("galore_adamw", "galore_adamw_8bit"):
        if optim == "galore_adamw_8bit" and not torch.cuda.is_available():
            raise ConfigError(
                "train.optim galore_adamw_8bit: galore-torch's 8-bit AdamW needs CUDA; "
                "use galore_adamw on this machine"
            )
        extra = {
            "rank": a.rank,
            "update_proj_gap": a.update_proj_gap,
            "scale": a.scale,
            "proj_type": a.proj_type,
        }
        cls = lib.GaLoreAdamW8bit if optim == "galore_adamw_8bit" else lib.GaLoreAdamW
        kw = {} if optim == "galore_adamw_8bit" else {"no_deprecation_warning": True}
        return cls(_lowrank_groups(model, cfg, extra), lr=tc.lr, betas=betas, **kw)
    if optim == "apollo_adamw":
        extra = {
            "rank": a.rank,
            "proj": a.apollo_proj,
            "scale_type": a.scale_type,
            "update_proj_gap": a.update_proj_gap,
            "scale": a.scale,
            "proj_type": a.proj_type,
        }
        return lib.APOLLOAdamW(_lowrank_groups(model, cfg, extra), lr=tc.lr, betas=betas)
    if optim == "badam":
        return _badam(model, cfg, lib)
    raise ConfigError(f"train.optim {optim!r}: unknown")  # the schema lists the choices


def _badam(model: Any, cfg: RunConfig, lib: Any) -> Any:
    """BAdam: one decoder layer trains at a time; the embeddings and the head stay frozen."""
    import torch

    from tunesmith.model.adapters import decoder_layers

    tc, a = cfg.train, cfg.train.optim_args
    layers = decoder_layers(model)
    if not layers:
        raise ConfigError("train.optim badam: the model has no decoder layers to train in blocks")
    blocks = [[f"{name}."] for name, _ in layers]
    base = torch.optim.AdamW(param_groups(model, cfg), lr=tc.lr, betas=tuple(tc.adam_betas))
    import warnings

    with warnings.catch_warnings():  # it expects bf16 weights; fp32 (CPU) works, with more memory
        warnings.filterwarnings("ignore", message=".*BAdam expect.*")
        return lib.BlockOptimizer(
            base,
            named_parameters_list=list(model.named_parameters()),
            block_prefix_list=blocks,
            switch_block_every=a.block_switch_every,
            switch_mode=a.block_switch_mode,
            verbose=0,
        )


def make_scheduler(optimizer: Any, cfg: RunConfig, total_steps: int) -> Any:
    """The learning-rate schedule (warmup, then cosine / linear / constant)."""
    from transformers import get_scheduler

    tc = cfg.train
    return get_scheduler(
        tc.scheduler if tc.scheduler != "constant" else "constant_with_warmup",
        optimizer,
        num_warmup_steps=round(tc.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
