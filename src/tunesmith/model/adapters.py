"""Which parameters train: full fine-tuning or the LoRA family through peft."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.config.schema import MethodConfig


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
    from peft import LoraConfig, get_peft_model

    lc = method.lora
    config = LoraConfig(
        r=lc.rank,
        lora_alpha=lc.alpha,
        lora_dropout=lc.dropout,
        target_modules=lc.targets,
        modules_to_save=lc.modules_to_save,
        use_dora=lc.use_dora,
        use_rslora=lc.use_rslora,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def param_report(model: Any) -> ParamReport:
    """Count trainable and total parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return ParamReport(trainable, total)
