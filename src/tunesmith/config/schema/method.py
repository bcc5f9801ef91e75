"""``method``: what trains and how (full / freeze / LoRA / QLoRA), and each stage's settings
(preference tuning, reward models, GRPO, distillation)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunesmith.config.schema.base import Section


class LoraConfig(Section):
    """LoRA-family adapter settings (peft)."""

    rank: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: str | list[str] = Field(
        "all-linear", description="'all-linear', a list of module names, or a regex."
    )
    modules_to_save: list[str] | None = None
    use_dora: bool = Field(False, description="DoRA: weight-decomposed LoRA.")
    use_rslora: bool = Field(False, description="rsLoRA: scale by alpha/sqrt(rank).")
    lora_plus_ratio: float | None = Field(
        None, gt=0, description="LoRA+: the B matrices learn this many times faster (e.g. 16)."
    )
    init: Literal["default", "gaussian", "pissa"] = Field(
        "default", description="Adapter initialisation; pissa starts from principal components."
    )


class FreezeConfig(Section):
    """Partial fine-tuning: only some decoder layers (and named modules) train."""

    trainable_layers: int = Field(
        2, description="Train the last N decoder layers (a negative N: the first |N|)."
    )
    extra_modules: list[str] = Field(
        default_factory=list, description="Also train modules whose name contains one of these."
    )


class QuantConfig(Section):
    """The quantised base of QLoRA (bitsandbytes; 4-bit works on CPU too)."""

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class PreferenceConfig(Section):
    """Preference-tuning settings (stages dpo, orpo, simpo, kto)."""

    beta: float = Field(0.1, gt=0)
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field("sigmoid", description="DPO variant.")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    gamma: float = Field(0.5, ge=0, description="SimPO target margin.")
    desirable_weight: float = Field(1.0, gt=0, description="KTO weight of desirable examples.")
    undesirable_weight: float = Field(1.0, gt=0, description="KTO weight of undesirable ones.")
    pref_ftx: float = Field(0.0, ge=0, description="Weight of an SFT term on chosen replies.")
    precompute_ref: bool = Field(
        False, description="Precompute reference log-probs once instead of a reference forward."
    )


# ---- online RL and reward models (stages rm, grpo; issue 19) ---------------------------------
class RewardModelConfig(Section):
    """Reward-model settings (stage rm): Bradley-Terry on a scalar head."""

    center_coef: float = Field(
        0.0, ge=0, description="Weight of a (r_chosen + r_rejected)^2 term keeping scores centred."
    )


class RewardSpec(Section):
    """One reward function of a GRPO run; several combine as a weighted sum."""

    kind: Literal["exact", "numeric", "regex", "length", "function", "model", "endpoint"] = Field(
        ...,
        description="exact: the completion equals the sample's answer; numeric: partial credit "
        "1/(1+|pred-answer|/scale) for its first number; regex: it matches "
        "`pattern`; length: a penalty past `target` tokens; function: `module:function`; "
        "model: a reward model (a stage rm run); endpoint: an OpenAI-compatible judge.",
    )
    weight: float = 1.0
    name: str | None = Field(None, description="Name in the metrics (default: the kind).")
    pattern: str | None = Field(None, description="regex: the pattern the completion must match.")
    target: int | None = Field(None, ge=0, description="length: tokens allowed before penalty.")
    scale: float | None = Field(
        None, gt=0, description="numeric: the distance that halves the score (default 1)."
    )
    function: str | None = Field(None, description="function: `module:function`.")
    path: str | None = Field(None, description="model: the rm run directory (or its model).")
    url: str | None = Field(None, description="endpoint: the API base, e.g. http://host/v1.")
    model: str | None = Field(None, description="endpoint: the model name at the endpoint.")
    api_key_env: str | None = Field(None, description="endpoint: env variable with the key.")


class GRPOConfig(Section):
    """Group relative policy optimisation (stage grpo)."""

    group_size: int = Field(4, ge=2, description="Completions generated per prompt (G).")
    max_new_tokens: int = Field(32, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    beta: float = Field(0.04, ge=0, description="KL weight to the reference; 0: no KL term.")
    epsilon: float = Field(0.2, gt=0, description="Clip range below (and above) ratio 1.")
    epsilon_high: float | None = Field(None, gt=0, description="DAPO's upper clip (default eps).")
    loss_level: Literal["sequence", "token"] = Field(
        "sequence",
        description="sequence: each completion's mean token loss, averaged (GRPO); token: "
        "every completion token of the step weighs the same (DAPO).",
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="Divide advantages by the group's std, the batch's, or not at all."
    )
    rewards: list[RewardSpec] = Field(
        default_factory=lambda: [RewardSpec(kind="exact")], min_length=1
    )
    warmup_steps: int = Field(
        0,
        ge=0,
        description="Full fine-tuning steps on the prompts' answers before RL, for a model "
        "that cannot yet answer in the format the rewards check; the warmed-up model is the "
        "reference and what LoRA adapts (0: none).",
    )
    warmup_lr: float | None = Field(None, gt=0, description="Warm-up learning rate (train.lr).")


# ---- distillation (stage distill; issue 20) ---------------------------------------------------
class DistillConfig(Section):
    """Logit distillation from a teacher with the same tokenizer (stage ``distill``)."""

    teacher: str | None = Field(
        None,
        description="The teacher (required): a run directory, a model folder, builtin:..., or a "
        "config (YAML file or recipe name) trained first unless its run already finished.",
    )
    kind: Literal["forward_kl", "reverse_kl", "jsd"] = Field(
        "forward_kl",
        description="forward_kl: KL(teacher || student), mean-seeking; reverse_kl: KL(student || "
        "teacher), mode-seeking; jsd: GKD's generalised Jensen-Shannon mix, weighted by beta.",
    )
    beta: float = Field(
        0.5, gt=0, lt=1, description="jsd: the teacher's weight in the mixture (GKD's beta)."
    )
    temperature: float = Field(
        1.0, gt=0, description="Both distributions are softened by it; the loss is scaled by T^2."
    )
    ce_weight: float = Field(
        0.0, ge=0, description="Weight of the cross-entropy on the labels added to the divergence."
    )
    teacher_4bit: bool = Field(
        False, description="Load the teacher in 4-bit nf4 (bitsandbytes; CPU too)."
    )


class MethodConfig(Section):
    """How parameters are tuned."""

    stage: Literal[
        "sft",
        "pt",
        "dpo",
        "orpo",
        "simpo",
        "kto",
        "vlm_pretrain",
        "vlm_sft",
        "rm",
        "grpo",
        "distill",
    ] = Field(
        "sft",
        description="sft: chat fine-tuning; pt: continued pre-training on plain text; "
        "dpo/orpo/simpo/kto: preference tuning; vlm_pretrain: train a LLaVA projector on "
        "image-caption pairs; vlm_sft: fine-tune a LLaVA model on image conversations; "
        "rm: a reward model from preference pairs; grpo: online RL with rewards; "
        "distill: learn a teacher's token distributions on chat data (method.distill).",
    )
    type: Literal["full", "freeze", "lora", "qlora"] = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    freeze: FreezeConfig = Field(default_factory=FreezeConfig)
    quant: QuantConfig = Field(default_factory=QuantConfig)
    pref: PreferenceConfig = Field(default_factory=PreferenceConfig)
    rm: RewardModelConfig = Field(default_factory=lambda: RewardModelConfig())
    grpo: GRPOConfig = Field(default_factory=lambda: GRPOConfig())
    distill: DistillConfig = Field(default_factory=lambda: DistillConfig())


PREFERENCE_STAGES = ("dpo", "orpo", "simpo", "kto")
VLM_STAGES = ("vlm_pretrain", "vlm_sft")
RL_STAGES = ("rm", "grpo")
