"""``train``: the optimisation loop (schedule, batching, precision, checkpoints, logging)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from tunesmith.config.schema.base import Section


class OptimArgs(Section):
    """Settings of the memory-lean optimisers (``train.optim``; ``train/optim.py``)."""

    rank: int = Field(128, ge=1, description="galore/apollo: rank of the projected state.")
    update_proj_gap: int = Field(200, ge=1, description="galore/apollo: steps between projections.")
    scale: float = Field(0.25, gt=0, description="galore/apollo: scale of the projected update.")
    proj_type: Literal["std", "reverse_std", "right", "left", "full"] = Field(
        "std", description="galore/apollo: which side of each matrix is projected."
    )
    apollo_proj: Literal["random", "svd"] = Field("random", description="apollo: the projection.")
    scale_type: Literal["channel", "tensor"] = Field(
        "channel", description="apollo: learning-rate scaling per channel or per tensor."
    )
    block_switch_every: int = Field(50, ge=1, description="badam: steps before the next block.")
    block_switch_mode: Literal["ascending", "descending", "random", "fixed"] = Field(
        "ascending", description="badam: the order decoder layers take their turn in."
    )


class TrainConfig(Section):
    """Optimiser, schedule and loop settings."""

    lr: float = Field(2e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="Overrides epochs when set.")
    batch_size: int = Field(8, ge=1, description="Sequences (or packed rows) per micro-batch.")
    grad_accum: int = Field(1, ge=1)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    optim: Literal[
        "adamw",
        "adamw_8bit",
        "paged_adamw",
        "paged_adamw_8bit",
        "galore_adamw",
        "galore_adamw_8bit",
        "apollo_adamw",
        "badam",
    ] = Field(
        "adamw",
        description="adamw (torch); adamw_8bit / paged_adamw / paged_adamw_8bit (bitsandbytes); "
        "galore_adamw / galore_adamw_8bit (galore-torch, 8-bit needs CUDA); apollo_adamw "
        "(apollo-torch); badam (block-wise full fine-tuning).",
    )
    optim_args: OptimArgs = Field(default_factory=OptimArgs)
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    gradient_checkpointing: bool = False
    compile: bool = Field(
        False, description="torch.compile the model (first step compiles; see train_summary.json)."
    )
    log_every: int = Field(5, ge=1)
    save_every: int | None = Field(None, ge=1, description="Checkpoint every N steps.")
    keep_last: int = Field(2, ge=1)
    resume: str | bool = Field(
        False, description="'auto' (newest complete checkpoint), a checkpoint path, or false."
    )
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all cores).")
    ce_impl: Literal["auto", "logits", "chunked", "liger", "full"] = Field(
        "auto",
        description="How the loss meets the vocabulary: chunked (fused lm_head + cross-entropy, "
        "no [tokens, vocab] logits), logits (lm_head on trained positions only), liger (CUDA), "
        "full (every position); auto picks liger > chunked > logits.",
    )
    ce_chunk_size: int = Field(4096, ge=1, description="Tokens per chunk of the fused loss.")
    pass_tokens: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        "auto",
        description="Run each micro-batch as forward/backward passes of at most this many tokens "
        "(whole rows); the loss is normalised over the optimiser step, so the result is the same. "
        "auto: 2048 on CPU (activations that stay in cache train faster), no split on GPUs; "
        "null: never split.",
    )
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=list,
        description="Also log metrics to these trackers (through Accelerate; must be installed): "
        "a list, or one name / comma-separated names (report_to: tensorboard).",
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        # `train.report_to=tensorboard` (YAML or override) is a string, as in transformers.
        if v is None:
            return []
        if isinstance(v, str):
            return [name.strip() for name in v.split(",") if name.strip()]
        return v
