"""Which parameters train: full, freeze (some layers), or the LoRA family through peft."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tunesmith.config.schema import FreezeConfig, MethodConfig
from tunesmith.errors import ConfigError


@dataclass
class ParamReport:
    """Trainable vs total parameter counts."""

    trainable: int
    total: int

    @property
    def percent(self) -> float:
        """Share of parameters that train, in percent."""
        return 100.0 * self.trainable / max(self.total, 1)

    def __str__(self) -> str:
        return f"trainable {self.trainable:,} / total {self.total:,} ({self.percent:.2f}%)"


def apply_method(model: Any, method: MethodConfig) -> Any:
    """Prepare ``model`` for training under ``method`` and return the model to optimise."""
    if method.type == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if method.type == "freeze":
        return apply_freeze(model, method.freeze)
    if method.type == "qlora":
        from peft import prepare_model_for_kbit_training

        # Keeps norms in fp32 and enables input grads; no activation checkpointing unless asked.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return apply_lora(model, method)


def apply_lora(model: Any, method: MethodConfig) -> Any:
    """Wrap ``model`` with a LoRA / DoRA / rsLoRA / PiSSA adapter."""
    from peft import LoraConfig, get_peft_model

    lc = method.lora
    targets: str | list[str] = lc.targets
    init: bool | str = {"default": True, "gaussian": "gaussian", "pissa": "pissa"}[lc.init]
    config = LoraConfig(
        r=lc.rank,
        lora_alpha=lc.alpha,
        lora_dropout=lc.dropout,
        target_modules=targets,
        modules_to_save=lc.modules_to_save,
        use_dora=lc.use_dora,
        use_rslora=lc.use_rslora,
        init_lora_weights=init,
        # With tied embeddings, a trained copy of lm_head must stay tied to the embeddings.
        ensure_weight_tying=bool(
            lc.modules_to_save and getattr(model.config, "tie_word_embeddings", False)
        ),
        task_type="CAUSAL_LM",
    )
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"method.lora.targets {targets!r}: {first}") from None
    if lc.init == "pissa":
        # PiSSA rewrites the base weights into a residual. Keep the initial adapter so the saved
        # one can be converted back into a plain LoRA that applies to the *original* base.
        import tempfile

        init_dir = tempfile.mkdtemp(prefix="tunesmith-pissa-init-")
        peft_model.peft_config["default"].init_lora_weights = True
        peft_model.save_pretrained(init_dir)
        peft_model.peft_config["default"].init_lora_weights = "pissa"
        peft_model.pissa_init_dir = init_dir
    from tunesmith.model.fused_lora import fuse_lora

    fuse_lora(peft_model)  # same maths and weights, fewer passes over the activations
    return peft_model


def decoder_layers(model: Any) -> list[tuple[str, Any]]:
    """The repeated decoder blocks, as ``(qualified name, module)``, in order."""
    import torch

    best: list[tuple[str, Any]] = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > len(best):
            best = [(f"{name}.{i}", m) for i, m in enumerate(module)]
    return best


def apply_freeze(model: Any, fc: FreezeConfig) -> Any:
    """Train only the last (or first) N decoder layers plus named extra modules."""
    layers = decoder_layers(model)
    n = fc.trainable_layers
    if not layers or n == 0 or abs(n) > len(layers):
        raise ConfigError(
            f"method.freeze.trainable_layers {n}: the model has {len(layers)} decoder layers; "
            f"choose 1..{len(layers)} (or a negative number for the first layers)"
        )
    chosen = layers[-n:] if n > 0 else layers[:-n]
    prefixes = tuple(f"{name}." for name, _ in chosen)
    for p in model.parameters():
        p.requires_grad_(False)
    matched_extra = set()
    for name, p in model.named_parameters():
        extra = [m for m in fc.extra_modules if re.search(rf"(^|\.){re.escape(m)}(\.|$)", name)]
        matched_extra.update(extra)
        if name.startswith(prefixes) or extra:
            p.requires_grad_(True)
    missing = sorted(set(fc.extra_modules) - matched_extra)
    if missing:
        raise ConfigError(
            f"method.freeze.extra_modules: no parameters named {', '.join(missing)} in this "
            "model (e.g. embed_tokens, lm_head, norm)"
        )
    return model


def check_quantizable(model_config: Any, bits: int) -> None:
    """Fail early when linear shapes cannot be quantised (bitsandbytes blocks of 32)."""
    if bits != 4:
        return
    sizes = {
        "hidden_size": getattr(model_config, "hidden_size", None),
        "intermediate_size": getattr(model_config, "intermediate_size", None),
    }
    bad = {k: v for k, v in sizes.items() if isinstance(v, int) and v % 32}
    if bad:
        what = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise ConfigError(
            f"method.quant.bits 4: this model's linear layers cannot be 4-bit quantised ({what}; "
            "sizes must be multiples of 32); use method.type lora, or quant.bits 8"
        )


def param_report(model: Any) -> ParamReport:
    """Count trainable and total parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return ParamReport(trainable, total)
