"""The run configuration: one pydantic model, parsed once, passed everywhere.

Sections follow the pipeline: ``model`` -> ``data`` -> ``method`` -> ``train`` -> ``eval`` ->
``output``, then ``export`` / ``serve``: the defaults of the commands run after training.
Unknown keys are errors (``extra="forbid"``); cross-field checks live on the section that owns
them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tunesmith.config.names import FORMAT_NAMES, TEMPLATE_NAMES, closest


class Section(BaseModel):
    """Base for every section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def unknown_name(what: str, name: str, choices: tuple[str, ...], fix: str) -> PydanticCustomError:
    """An error for a name missing from a registry, with the nearest one (no "Value error, ")."""
    near = closest(name, choices)
    hint = f"did you mean {near!r}? " if near else ""
    # The text goes in as context: a template would read braces in it as placeholders.
    return PydanticCustomError(
        "unknown_name", "{text}", {"text": f"unknown {what} {name!r}; {hint}{fix}"}
    )


def _check_loss_weights(v: dict[str, float] | None) -> dict[str, float] | None:
    """``loss_weights`` (``data`` and each source): non-empty markers, weights >= 0."""
    for marker, weight in (v or {}).items():
        if not marker or weight < 0:
            raise ValueError("markers must be non-empty strings and weights >= 0")
    return v


LossWeights = Annotated[dict[str, float] | None, AfterValidator(_check_loss_weights)]
"""Span loss weights, marker -> weight (one validator for ``data`` and ``data.datasets.N``)."""


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


class Identity(Section):
    """Values substituted for ``{{name}}`` / ``{{author}}`` in self-cognition data."""

    name: str | dict[str, str] = Field(
        ..., description='Assistant name, or per-language values {"en": ..., "zh": ...}.'
    )
    author: str | dict[str, str] = Field(..., description="Who built it (per-language allowed).")


class DatasetConfig(Section):
    """One data source in the mix."""

    path: str | None = Field(None, description="File, folder, builtin:NAME or hub dataset id.")
    from_info: str | None = Field(None, description="A LLaMA-Factory dataset_info.json to read.")
    name: str | None = Field(None, description="Entry name in dataset_info.json; display name.")
    format: str = Field("auto", description="alpaca, sharegpt, openai, xtuner, llava, ... or auto.")
    columns: dict[str, str] | None = Field(None, description="Our field name -> the file's name.")
    tags: dict[str, str] | None = None
    split: str = "train"
    samples: int | None = Field(None, ge=1, description="Absolute count, resampled if needed.")
    weight: float | None = Field(None, gt=0, description="Share of the final mix (a ratio).")
    max_samples: int | None = Field(None, ge=1, description="Read at most this many rows.")
    shuffle: bool = True
    media_dir: str | None = None
    loss_weights: LossWeights = Field(
        None, description="Span loss weights for this source (overrides data.loss_weights)."
    )
    encoding: str | None = Field(
        None,
        description="Text encoding of the files (default UTF-8), e.g. cp1252 for a CSV saved by "
        "Excel on Windows; any Python codec name.",
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str | None) -> str | None:
        import codecs

        from pydantic_core import PydanticCustomError

        from tunesmith.config.names import unknown_encoding

        if v is not None:
            try:
                codecs.lookup(v)
            except LookupError:  # the message as context: no "Value error, " before it
                raise PydanticCustomError(
                    "encoding", "{text}", {"text": unknown_encoding(v)}
                ) from None
        return v

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        if v != "auto" and v not in FORMAT_NAMES:
            fix = f"use auto or one of {', '.join(FORMAT_NAMES)}"
            raise unknown_name("format", v, FORMAT_NAMES, fix)
        return v

    @model_validator(mode="after")
    def _one_source(self) -> DatasetConfig:
        if (self.path is None) == (self.from_info is None):
            raise ValueError("give exactly one of 'path' or 'from_info' (with 'name')")
        if self.from_info is not None and self.name is None:
            raise ValueError("'from_info' needs 'name': the entry in dataset_info.json")
        if self.samples is not None and self.weight is not None:
            raise ValueError("give 'samples' (a count) or 'weight' (a ratio), not both")
        return self

    @property
    def display_name(self) -> str:
        """Name used in reports."""
        return self.name or str(self.path)


class AugmentConfig(Section):
    """Samples generated from a fact graph (``data/augment/``), mixed in like one more source."""

    triples: str = Field(
        ...,
        description="Triples JSONL/CSV (subject, relation, object), a .txt of fact "
        "sentences, or builtin:NAME.",
    )
    relations: str | None = Field(
        None, description="Relation table (JSON/YAML); default: the built-in one."
    )
    columns: dict[str, str] | None = Field(
        None, description="subject/relation/object -> the file's column names."
    )
    kinds: list[Literal["forward", "reverse", "hop", "negative"]] = Field(
        ["forward", "reverse", "hop"], min_length=1, description="Kinds of samples to generate."
    )
    max_hops: int = Field(2, ge=2, le=4, description="Longest composed path for 'hop'.")
    hop_inverse: bool = Field(True, description="Compose 'hop' paths through inverse relations.")
    langs: list[Literal["en", "zh"]] = Field(["en"], min_length=1)
    negatives: int = Field(1, ge=0, description="False yes/no claims per fact ('negative').")
    name: str | None = Field(None, description="Display name in reports.")
    samples: int | None = Field(None, ge=1, description="Absolute count, resampled if needed.")
    weight: float | None = Field(None, gt=0, description="Share of the final mix (a ratio).")
    seed: int = 0

    @model_validator(mode="after")
    def _count_or_ratio(self) -> AugmentConfig:
        if self.samples is not None and self.weight is not None:
            raise ValueError("give 'samples' (a count) or 'weight' (a ratio), not both")
        return self


class DataConfig(Section):
    """Sources, mixing, rendering and packing."""

    datasets: list[DatasetConfig] = Field(..., min_length=1)
    identity: Identity | None = Field(None, description="Substitute {{name}}/{{author}}.")
    system: str | None = Field(None, description="System prompt added to every conversation.")
    max_length: int = Field(
        2048, ge=16, description="Longest sample in tokens (LLaMA-Factory's cutoff_len)."
    )
    truncation: Literal["drop", "truncate_left", "truncate_right"] = Field(
        "truncate_right",
        description="Rows longer than max_length: truncate_right keeps the first whole exchanges "
        "(then cuts tokens at the end), truncate_left the last ones, drop skips the row. Either "
        "way a console warning counts them when more than 1% of a source is affected.",
    )
    allow_drop: bool = Field(
        False,
        description="Train even when a source loses more than half its rows (dropped for length "
        "or skipped as bad); without it `tunesmith train` refuses to start.",
    )
    packing: bool = True
    group_by_length: bool = Field(
        True, description="Without packing: batch samples of similar length (less padding)."
    )
    train_on_prompt: bool = False
    mask_history: bool = False
    on_error: Literal["raise", "skip"] = "raise"
    total_samples: int | None = Field(
        None, ge=1, description="Size of the mix when datasets use 'weight'."
    )
    val_size: float | int = Field(
        0.0, ge=0, description="Held-out share (<1) or count per source for validation loss."
    )
    seed: int = 42
    loss_weights: LossWeights = Field(
        None,
        description=(
            "Per-span loss weights inside trained assistant turns, marker -> weight, e.g. "
            '{"Action:": 2, "Observation:": 0}: each marker starts a span running to the next '
            "marker or the end of the turn's text; 0 removes the span from the loss."
        ),
    )
    cache: bool = Field(True, description="Cache tokenised sources on disk (run-independent).")
    num_proc: int | None = Field(
        None, ge=1, description="Processes for tokenisation (default: automatic by source size)."
    )
    augment: list[AugmentConfig] = Field(
        default_factory=list,
        description="Fact-graph samples (forward/reversed/k-hop/negative) mixed in as sources.",
    )


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


TaskName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
"""A task name: its files are ``eval/<name>.json`` and ``eval/<name>.predictions.jsonl``."""


class PerplexitySpec(Section):
    """Loss and perplexity on a validation set, rendered and labelled as in training."""

    type: Literal["perplexity"] = "perplexity"
    name: TaskName = "perplexity"
    datasets: list[DatasetConfig] | None = Field(
        None,
        description="Dataset entries in the data.datasets syntax, every row scored; none: the "
        "run's own validation split (data.val_size).",
    )
    max_samples: int | None = Field(None, ge=1, description="Score at most this many samples.")


class GenerationSpec(Section):
    """Answers to prompts scored against references: exact match, BLEU, ROUGE-1/2/L."""

    type: Literal["generation"] = "generation"
    name: TaskName = "generation"
    data: str = Field(
        description="JSONL/JSON/CSV/Parquet file: prompt|question|instruction(+input) and "
        "reference|answer|output|response columns (or the columns named below)."
    )
    prompt_column: str | None = None
    reference_column: str | None = None
    max_samples: int | None = Field(None, ge=1)
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0, description="0: greedy; above: sampled with seed.")
    seed: int | None = Field(None, description="Sampling seed (default: the evaluation's seed).")
    lang: Literal["auto", "en", "zh"] = Field(
        "auto", description="zh: BLEU on sacrebleu's zh tokenizer, ROUGE on characters."
    )


class MultipleChoiceSpec(Section):
    """MMLU/C-Eval/CMMLU-style questions scored by the log-likelihood of each option."""

    type: Literal["multiple_choice"] = "multiple_choice"
    name: TaskName = "multiple_choice"
    data: str = Field(
        description="JSONL/JSON/CSV/Parquet: question, A, B, C, D, answer[, subject]."
    )
    dev: str | None = Field(None, description="Few-shot examples file (same columns).")
    shots: int = Field(
        0, ge=0, description="Few-shot examples per question (from dev, per subject)."
    )
    score: Literal["letter", "text"] = Field(
        "letter", description="letter: log-likelihood of the answer letter; text: of the option."
    )
    max_samples: int | None = Field(None, ge=1)


class IdentitySpec(Section):
    """Identity score on held-out questions and false-claim rate on general prompts."""

    type: Literal["identity"] = "identity"
    name: TaskName = "identity"
    identity_name: str | dict[str, str] | None = Field(
        None, description="Name to look for (default: the run's data.identity.name)."
    )
    heldout: str | None = Field(None, description="Default: eval.identity_heldout.")
    general: str | None = Field(None, description="Default: eval.general_prompts.")
    max_new_tokens: int = Field(48, ge=1)


PERTURBATIONS = ("punctuation", "casing", "width", "clause_order", "synonym")
"""Built-in question perturbations of the consistency task (``evaluate/perturb.py``)."""


class ConsistencySpec(Section):
    """Do answers stay the same when a question is rephrased; does the model contradict itself?"""

    type: Literal["consistency"] = "consistency"
    name: TaskName = "consistency"
    data: str | None = Field(
        None,
        description="Questions (JSONL/JSON/CSV/Parquet): question|prompt and optional reference, "
        "or a user-given variant set in variants: [...] (used as is).",
    )
    contradictions: str | None = Field(
        None,
        description="Contradiction pairs (JSONL/JSON/CSV/Parquet): statement and negation, each "
        "asked as a yes/no question; yes to both or no to both is a contradiction.",
    )
    variants: int = Field(4, ge=1, description="Perturbed variants per question (besides it).")
    perturbations: list[Literal[PERTURBATIONS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(PERTURBATIONS), min_length=1
    )
    reference_match: Literal["exact", "contains"] = Field(
        "exact",
        description="An answer agrees with the reference when equal or when containing it "
        "(both normalised).",
    )
    seed: int | None = Field(None, description="Perturbation seed (default: the evaluation's).")
    max_samples: int | None = Field(None, ge=1)
    max_new_tokens: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _has_data(self) -> ConsistencySpec:
        if not (self.data or self.contradictions):
            raise ValueError("give data (questions) and/or contradictions (statement pairs)")
        return self


class JudgeSpec(Section):
    """Answers scored by a judge model behind any OpenAI-compatible endpoint (off by default)."""

    type: Literal["judge"] = "judge"
    name: TaskName = "judge"
    data: str = Field(
        description="Prompts (JSONL/JSON/CSV/Parquet): question|prompt and optional reference."
    )
    url: str = Field(
        description="Base URL of the judge's OpenAI-compatible API, e.g. http://host:8000/v1 "
        "(requests go to URL/chat/completions)."
    )
    model: str = Field(description="The judge model's name at that endpoint.")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (never stored)."
    )
    rubric: str | None = Field(
        None,
        description="Rubric prompt file with {question}, {answer}, {reference} placeholders "
        "(default: the built-in 1-10 helpfulness/correctness rubric).",
    )
    min_score: float = 1
    max_score: float = 10
    max_new_tokens: int = Field(128, ge=1, description="Answer length of the evaluated model.")
    judge_max_tokens: int = Field(256, ge=1)
    retries: int = Field(3, ge=0, description="Retries on 5xx, 429, timeouts, refused connections.")
    backoff: float = Field(1.0, ge=0, description="First retry delay in seconds (doubles).")
    timeout: float = Field(60.0, gt=0, description="Seconds per request.")
    concurrency: int = Field(4, ge=1, description="Judge requests in flight at once.")
    cache: bool = Field(
        True, description="Reuse scores of identical requests from an on-disk cache."
    )
    cache_dir: str | None = Field(
        None, description="Default: TUNESMITH_CACHE or the user cache/judge."
    )
    max_samples: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _scale(self) -> JudgeSpec:
        if self.min_score >= self.max_score:
            raise ValueError("min_score must be below max_score")
        return self


EvalTaskSpec = Annotated[
    PerplexitySpec
    | GenerationSpec
    | MultipleChoiceSpec
    | IdentitySpec
    | ConsistencySpec
    | JudgeSpec,
    Field(discriminator="type"),
]
"""One entry of ``eval.tasks``, told apart by ``type``."""


class EvalConfig(Section):
    """Evaluation during and after training."""

    every: int | None = Field(
        None, ge=1, description="Validation loss and sample generations every N steps."
    )
    val_split: float | int | None = Field(
        None,
        ge=0,
        description="Another name for data.val_size (the one that counts): copied there and "
        "cleared; giving both with different values is an error.",
    )
    prompts: list[str] = Field(
        default_factory=list, description="Answered before training, every N steps and at the end."
    )
    max_new_tokens: int = Field(48, ge=1)
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without a better val loss."
    )
    identity_heldout: str = Field(
        "builtin:identity_heldout", description="Held-out identity questions (JSONL)."
    )
    general_prompts: str = Field(
        "builtin:general_eval", description="General prompts for the false-claim rate (JSONL)."
    )
    tasks: list[EvalTaskSpec] = Field(
        default_factory=list,
        description="Evaluations run at the end of training and by `tunesmith eval RUN`.",
    )


class OutputConfig(Section):
    """Where the run directory goes."""

    name: str = Field("run", description="Run name; the default directory is runs/<name>.")
    dir: str | None = Field(None, description="Run directory (default: runs/<name>).")
    overwrite: bool = Field(
        False,
        description="Replace an earlier run in the run directory (--overwrite). Without it a "
        "finished or started run there is kept and training stops with the ways out (--resume).",
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not v or any(c in v for c in "/\\"):
            raise ValueError("must be a plain name without slashes")
        return v

    @property
    def run_dir(self) -> str:
        """The run directory path."""
        return self.dir or f"runs/{self.name}"


class ExportConfig(Section):
    """Defaults of ``tunesmith export RUN`` for this run (command-line flags win)."""

    dir: str | None = Field(None, description="Destination folder (the --out flag).")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="Cast the exported weights (default: as trained)."
    )
    max_shard_size: str = Field("2GB", description="Largest safetensors shard, e.g. 500MB, 2GB.")
    adapter_only: bool = Field(False, description="Copy the adapter instead of merging it.")
    calibration_samples: int = Field(
        128, ge=1, description="GPTQ export: training prompts of the run to calibrate on."
    )
    gptq_group_size: int = Field(
        128,
        ge=-1,
        description="GPTQ export: columns per scale (-1: one per column); must divide in_features.",
    )


class ServeConfig(Section):
    """Defaults of ``tunesmith serve RUN`` for this run (command-line flags win)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_key_env: str = Field(
        "TUNESMITH_API_KEY", description="Environment variable holding the API key, if any."
    )
    max_batch: int = Field(32, ge=1, description="Sequences decoded together.")
    max_tokens: int = Field(4096, ge=1, description="Largest max_tokens a request may ask for.")
    default_max_tokens: int = Field(512, ge=1, description="max_tokens when a request sets none.")
    max_concurrent: int = Field(256, ge=1, description="Requests in flight before 429s.")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body.")


# ---- serval (issue 21): LLM <-> vertical-model co-training, `tunesmith serval CONFIG` ----------
class ServalFTConfig(Section):
    """vertical.model ft_transformer: the FT-Transformer's size and training (torch, CPU)."""

    blocks: int = Field(
        3, ge=1, le=6, description="Transformer blocks (the library's default width for it)."
    )
    epochs: int = Field(50, ge=1, description="Most epochs (early stopping may stop it).")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate (the paper's default).")
    batch_size: int = Field(64, ge=1, description="Rows per step.")
    patience: int = Field(
        5, ge=1, description="Early stopping: epochs without a better held-out loss."
    )


class ServalVerticalConfig(Section):
    """The small vertical model that learns from the LLM's soft labels."""

    kind: Literal["table", "text"] = Field(
        "table",
        description="table: vertical.model on serval.table's feature columns; text: a "
        "transformers classifier on the record text.",
    )
    model: Literal["gbm", "logistic", "mlp", "ft_transformer"] = Field(
        "gbm",
        description="kind table: gradient boosting, logistic regression, an MLP (scikit-learn) "
        "or an FT-Transformer (rtdl_revisiting_models, settings in vertical.ft).",
    )
    ft: ServalFTConfig = Field(default_factory=ServalFTConfig)
    text_model: str = Field(
        "builtin:tiny-qwen2",
        description="kind text: the encoder / causal LM that gets a classification head.",
    )
    epochs: int = Field(8, ge=1, description="kind text: most epochs (early stopping may stop it).")
    lr: float = Field(5e-4, gt=0, description="kind text: learning rate.")
    batch_size: int = Field(16, ge=1, description="kind text: rows per step.")
    max_length: int = Field(128, ge=8, description="kind text: tokens per record.")
    patience: int = Field(
        2, ge=1, description="Early stopping: rounds without a better held-out loss."
    )


class ServalNoiseConfig(Section):
    """How the noisy LLM labels are filtered and weighted (DivideMix-style)."""

    threshold: float = Field(
        0.7,
        gt=0.5,
        le=1.0,
        description="Keep an LLM label as confident when max(p, 1-p) >= this (paper: 0.9).",
    )
    gmm: bool = Field(
        True,
        description="Fit a two-component Gaussian mixture to the per-sample losses of a first "
        "fit and keep only the low-loss (clean) component's confident rows.",
    )
    weights: Literal["confidence", "none"] = Field(
        "confidence", description="Sample weights: 2*|p-0.5| (confidence) or 1."
    )
    min_kept: int = Field(
        20, ge=2, description="Fewest confident rows to fit on; the most confident fill up to it."
    )
    holdout: float = Field(
        0.2, gt=0, lt=1, description="Share of the kept rows held out for early stopping."
    )


class ServalBacktuneConfig(Section):
    """The SFT step that teaches the LLM the vertical model's confident predictions."""

    threshold: float = Field(
        0.8, gt=0.5, le=1.0, description="Vertical predictions with max(p, 1-p) >= this train."
    )
    max_rows: int = Field(400, ge=1, description="Most task conversations per iteration.")
    general_share: float = Field(
        0.3,
        ge=0,
        lt=1,
        description="Share of each back-tuning mix drawn from data.datasets (against forgetting).",
    )
    max_steps: int | None = Field(
        None, ge=1, description="Steps per back-tuning (default: train.max_steps / epochs)."
    )
    lr: float | None = Field(
        None, gt=0, description="Learning rate of the back-tunings (default: train.lr)."
    )


class ServalConfig(Section):
    """LLM <-> vertical-model co-training (SERVAL): `tunesmith serval CONFIG`.

    The run's ``model`` is the LLM; ``data`` is the general data of the warm-up and of each
    back-tuning mix; ``method`` and ``train`` are the back-tuning SFT settings.
    """

    records: str = Field(
        "builtin:serval_patients",
        description="JSONL of id, split (train/val/test), text, label (0/1; train rows' labels "
        "are never read, val rows only with val_labels).",
    )
    table: str | None = Field(
        "builtin:serval_patients_table",
        description="JSONL of id, split, label and numeric feature columns (vertical.kind table).",
    )
    prompt: str = Field(
        "{text}\nDoes this patient have the condition? Answer yes or no.",
        description="User turn asking the LLM; {text} is the record.",
    )
    label_words: tuple[str, str] = Field(
        ("no", "yes"), description="The answer for label 0 and for label 1."
    )
    read: Literal["tokens", "parse"] = Field(
        "tokens",
        description="tokens: p(label 1) from the log-likelihoods of the label words; parse: a "
        "generated number in [0, 1] (unparsable answers fall back to tokens, counted).",
    )
    parse_prompt: str = Field(
        "{text}\nHow likely does this patient have the condition? Answer with a probability "
        "between 0.0 (very unlikely) and 1.0 (very likely).",
        description="User turn for read: parse.",
    )
    calibrate: bool = Field(
        True,
        description="Centre the LLM's log-odds over the train records before thresholding "
        "(removes a shared preference for one label word; the reported zero-shot accuracy is "
        "the raw one, llm_acc_cal the centred one).",
    )
    iterations: int = Field(3, ge=1, description="Annotate -> fit -> back-tune rounds.")
    warmup_steps: int = Field(
        0, ge=0, description="SFT steps on data.datasets before the first annotation (0: none)."
    )
    warmup_data: list[DatasetConfig] = Field(
        default_factory=list,
        description="Sources added to data.datasets in the warm-up only (not in back-tuning "
        "mixes), e.g. domain knowledge a random tiny LLM lacks (builtin:serval_textbook).",
    )
    warmup_full: bool = Field(
        True,
        description="The warm-up fine-tunes every weight (a stand-in for pretraining) whatever "
        "method.type the back-tunings use; false: the warm-up uses method too.",
    )
    max_train: int | None = Field(None, ge=1, description="Use at most this many train rows.")
    val_labels: int = Field(
        0,
        ge=0,
        description="Labelled val rows used for early stopping and reporting only (0: none; "
        "early stopping uses a held-out part of the confident rows).",
    )
    vertical: ServalVerticalConfig = Field(default_factory=ServalVerticalConfig)
    noise: ServalNoiseConfig = Field(default_factory=ServalNoiseConfig)
    backtune: ServalBacktuneConfig = Field(default_factory=ServalBacktuneConfig)

    @model_validator(mode="after")
    def _table_when_needed(self) -> ServalConfig:
        if self.warmup_data and not self.warmup_steps:
            raise ValueError("warmup_data needs warmup_steps > 0 (the warm-up that reads it)")
        if self.vertical.model == "ft_transformer" and self.vertical.kind != "table":
            raise ValueError(
                "vertical.model 'ft_transformer' is a table model: set vertical.kind table"
            )
        if self.vertical.kind == "table" and not self.table:
            raise ValueError("vertical.kind 'table' needs serval.table (a JSONL of features)")
        if "{text}" not in self.prompt:
            raise ValueError("prompt must contain {text} (where the record goes)")
        if len(set(self.label_words)) != 2 or not all(w.strip() for w in self.label_words):
            raise ValueError("label_words: two different non-empty words")
        return self


class RunConfig(Section):
    """A whole run: everything `tunesmith train` needs."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    method: MethodConfig = Field(default_factory=MethodConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    serval: ServalConfig | None = Field(
        None, description="LLM <-> vertical-model co-training (`tunesmith serval`)."
    )

    @model_validator(mode="after")
    def _eval_split(self) -> RunConfig:
        # data.val_size is the source of truth; eval.val_split is only another name for it.
        split = self.eval.val_split
        if split is not None:
            given = "val_size" in self.data.model_fields_set
            if given and self.data.val_size != split:
                raise _rule_error(
                    [
                        (
                            ("eval", "val_split"),
                            split,
                            f"another name for data.val_size, which is {self.data.val_size!r}; "
                            "give one of them",
                        )
                    ]
                )
            self.data.val_size = split
            self.eval.val_split = None  # the resolved config holds the value once
        if self.eval.early_stopping_patience and not (self.data.val_size and self.eval.every):
            raise _rule_error(
                [
                    (
                        ("eval", "early_stopping_patience"),
                        self.eval.early_stopping_patience,
                        "needs a validation split (data.val_size) and eval.every",
                    )
                ]
            )
        return self

    @model_validator(mode="after")
    def _optim_method(self) -> RunConfig:
        # The projected / block-wise optimisers act on base weights; adapters have none to give.
        o, kind = self.train.optim, self.method.type
        need = {"badam": ("full",), "galore_adamw": ("full", "freeze")}
        need["galore_adamw_8bit"] = need["apollo_adamw"] = need["galore_adamw"]
        if o in need and kind not in need[o]:
            raise _rule_error(
                [
                    (
                        ("train", "optim"),
                        o,
                        f"trains base weights (method.type {' or '.join(need[o])}); method.type "
                        f"is {kind}: use adamw, adamw_8bit or paged_adamw with adapters",
                    )
                ]
            )
        return self

    @model_validator(mode="after")
    def _stage_settings(self) -> RunConfig:
        if self.method.stage in (*PREFERENCE_STAGES, *RL_STAGES):
            # Pairs are padded in data order: the resolved (and saved) config says so, rather
            # than carrying SFT's packing defaults that this stage would ignore.
            for name in ("packing", "group_by_length"):
                if name not in self.data.model_fields_set:
                    setattr(self.data, name, False)
        problems = stage_problems(self)
        if problems:
            raise _rule_error(problems)
        return self


PREFERENCE_STAGES = ("dpo", "orpo", "simpo", "kto")
VLM_STAGES = ("vlm_pretrain", "vlm_sft")
RL_STAGES = ("rm", "grpo")

Problem = tuple[tuple[str | int, ...], Any, str]
"""A cross-field error: the dotted path (as a tuple), the value found there, what is wrong."""


def _rule_error(problems: list[Problem]) -> ValidationError:
    """A ValidationError whose lines name each problem's own path (not the top level)."""
    return ValidationError.from_exception_data(
        "RunConfig",
        [
            InitErrorDetails(
                type=PydanticCustomError("stage_setting", "{text}", {"text": text}),
                loc=loc,
                input=value,
            )
            for loc, value, text in problems
        ],
    )


def stage_problems(cfg: RunConfig) -> list[Problem]:
    """Settings that the chosen ``method.stage`` does not honour: errors, not silently ignored.

    Every rule here reads the config alone, so ``tunesmith validate`` refuses what ``train``
    would. Default values are never refused (a stage that ignores a setting ignores its default
    too). What needs the model stays with the model code: the decoder-layer count of
    ``method.freeze``, 4-bit shapes (``model/adapters.py``), LoRA targets matching nothing, the
    tower's image tokens (``model/multimodal.py``), ``train.ce_impl`` on this device and model
    (``train/loop.py``).
    """
    stage, m, t, d = cfg.method.stage, cfg.method, cfg.train, cfg.data
    out: list[Problem] = []

    def bad(loc: tuple[str | int, ...], value: Any, text: str) -> None:
        out.append((loc, value, text))

    p, p0 = m.pref, PreferenceConfig()
    if stage not in PREFERENCE_STAGES:
        for name in PreferenceConfig.model_fields:
            if getattr(p, name) != getattr(p0, name):
                bad(
                    ("method", "pref", name),
                    getattr(p, name),
                    f"applies to the preference stages ({', '.join(PREFERENCE_STAGES)}); "
                    f"stage is {stage}; remove it",
                )
    else:
        if p.loss_type != "sigmoid" and stage != "dpo":
            bad(
                ("method", "pref", "loss_type"),
                p.loss_type,
                f"{p.loss_type!r} is a DPO variant; stage is {stage}; remove it or use stage dpo",
            )
        if p.label_smoothing and (stage in ("orpo", "kto") or p.loss_type != "sigmoid"):
            bad(
                ("method", "pref", "label_smoothing"),
                p.label_smoothing,
                "applies to DPO (sigmoid) and SimPO only; set it to 0",
            )
        if p.pref_ftx and stage == "orpo":
            bad(
                ("method", "pref", "pref_ftx"),
                p.pref_ftx,
                "ORPO already trains on the chosen replies; set it to 0",
            )
        if p.gamma != p0.gamma and stage != "simpo":
            bad(("method", "pref", "gamma"), p.gamma, f"the SimPO margin; stage is {stage}")
        for name in ("desirable_weight", "undesirable_weight"):
            if getattr(p, name) != getattr(p0, name) and stage != "kto":
                bad(("method", "pref", name), getattr(p, name), f"a KTO weight; stage is {stage}")
        if p.precompute_ref and stage in ("orpo", "simpo"):
            bad(
                ("method", "pref", "precompute_ref"),
                True,
                f"{stage.upper()} uses no reference model; set it to false",
            )
        # What the preference recipe does not do: pairs are padded, in data order (packing and
        # length grouping are on by default for SFT, so only an explicit `true` is refused),
        # labels cover the replies only, and the step is pref_step's own full-logits forward in
        # whole micro-batches.
        for name, why in (
            ("packing", "preference pairs are padded, never packed"),
            ("group_by_length", "preference pairs are batched in data order"),
        ):
            if name in d.model_fields_set and getattr(d, name):
                bad(("data", name), True, f"{why}; remove it or set it to false")
        for name, why in (
            ("train_on_prompt", "preference stages train on the replies only"),
            ("mask_history", "a pair's prompt is never trained"),
        ):
            if getattr(d, name):
                bad(("data", name), True, f"{why}; set it to false")
        if d.loss_weights:
            bad(("data", "loss_weights"), d.loss_weights, "not used by preference stages")
        for i, ds in enumerate(d.datasets):
            if ds.loss_weights:
                bad(
                    ("data", "datasets", i, "loss_weights"),
                    ds.loss_weights,
                    "not used by preference stages",
                )
        if t.ce_impl != "auto":
            bad(
                ("train", "ce_impl"),
                t.ce_impl,
                "preference stages score full logits (the SFT loss paths do not apply); use auto",
            )
    if stage in PREFERENCE_STAGES or stage in VLM_STAGES:
        kind = "preference" if stage in PREFERENCE_STAGES else "vlm"
        if t.compile:
            bad(("train", "compile"), True, f"the {kind} recipe does not compile; set it to false")
        if isinstance(t.pass_tokens, int):
            why = "micro-batches with images" if kind == "vlm" else "preference micro-batches"
            bad(
                ("train", "pass_tokens"),
                t.pass_tokens,
                f"{why} are never split into passes; use auto or null",
            )

    v = cfg.model.vision
    if stage not in VLM_STAGES:
        if v is not None:
            bad(("model", "vision"), v.model_dump(), f"applies to the vlm stages; stage is {stage}")
    elif stage == "vlm_pretrain":
        if t.gradient_checkpointing:
            bad(
                ("train", "gradient_checkpointing"),
                True,
                "vlm_pretrain trains no LLM layer; set it to false",
            )
        if m.type != "lora":  # the default: vlm_pretrain ignores method.type
            bad(("method", "type"), m.type, "vlm_pretrain trains the projector only; remove it")
        if v is not None and v.train_vision != "frozen":
            bad(
                ("model", "vision", "train_vision"),
                v.train_vision,
                "vlm_pretrain trains the projector only; use it in vlm_sft",
            )
        if v is not None and not v.train_projector:
            bad(
                ("model", "vision", "train_projector"),
                False,
                "vlm_pretrain trains the projector (only); remove it",
            )
    else:  # vlm_sft (apply_vlm_method in model/multimodal.py checks the same when called alone)
        train_vision = v.train_vision if v is not None else "frozen"
        if m.type not in ("full", "lora"):
            bad(("method", "type"), m.type, "stage vlm_sft trains the LLM with 'full' or 'lora'")
        elif m.type == "full" and train_vision == "lora":
            bad(
                ("model", "vision", "train_vision"),
                train_vision,
                "'lora' needs method.type 'lora'; use 'full' or 'frozen'",
            )
        if m.lora.init == "pissa" and (m.type == "lora" or train_vision == "lora"):
            bad(("method", "lora", "init"), "pissa", "not supported by the vlm stages; use default")
    out.extend(rl_problems(cfg))
    out.extend(distill_problems(cfg))
    if cfg.serval is not None and stage != "sft":  # serval back-tunes with the SFT recipe
        bad(("method", "stage"), stage, "serval back-tunes with stage sft; use sft")
    return out


def rl_problems(cfg: RunConfig) -> list[Problem]:
    """The rules of stages rm and grpo (issue 19)."""
    stage, m, t, d = cfg.method.stage, cfg.method, cfg.train, cfg.data
    out: list[Problem] = []
    for name, owner, section in (("rm", "rm", RewardModelConfig), ("grpo", "grpo", GRPOConfig)):
        if stage != owner and getattr(m, name) != section():
            out.append(
                (
                    ("method", name),
                    getattr(m, name).model_dump(),
                    f"applies to stage {owner}; stage is {stage}; remove it",
                )
            )
    if stage not in RL_STAGES:
        return out
    for name in ("packing", "group_by_length"):
        if name in d.model_fields_set and getattr(d, name):
            out.append((("data", name), True, f"stage {stage} does not pack or group; remove it"))
    for name in ("train_on_prompt", "mask_history"):
        if getattr(d, name):
            out.append((("data", name), True, f"not used by stage {stage}; set it to false"))
    if t.ce_impl != "auto":
        out.append((("train", "ce_impl"), t.ce_impl, f"stage {stage} scores full logits; use auto"))
    if t.compile:
        out.append((("train", "compile"), True, f"stage {stage} does not compile; set it to false"))
    if isinstance(t.pass_tokens, int):
        out.append((("train", "pass_tokens"), t.pass_tokens, "never split into passes; use auto"))
    if m.type == "lora" and m.lora.init == "pissa":
        out.append((("method", "lora", "init"), "pissa", f"not supported by stage {stage}"))
    if stage == "rm" and m.type == "qlora":
        out.append((("method", "type"), "qlora", "stage rm trains 'lora', 'full' or 'freeze'"))
    if stage == "grpo":
        g = m.grpo
        for i, r in enumerate(g.rewards):
            need = {"regex": "pattern", "function": "function", "model": "path", "endpoint": "url"}
            field = need.get(r.kind)
            if field and not getattr(r, field):
                out.append(
                    (
                        ("method", "grpo", "rewards", i, field),
                        None,
                        f"reward kind {r.kind!r} needs {field}",
                    )
                )
            if r.kind != "numeric" and r.scale is not None:
                out.append(
                    (
                        ("method", "grpo", "rewards", i, "scale"),
                        r.scale,
                        "only kind 'numeric' uses scale; drop it or set kind numeric",
                    )
                )
            if r.kind == "endpoint" and not r.model:
                out.append(
                    (
                        ("method", "grpo", "rewards", i, "model"),
                        None,
                        "reward kind 'endpoint' needs model",
                    )
                )
            if r.kind == "function" and r.function and ":" not in r.function:
                out.append(
                    (
                        ("method", "grpo", "rewards", i, "function"),
                        r.function,
                        "give it as module:function",
                    )
                )
        if g.warmup_steps and m.type == "qlora":
            out.append(
                (
                    ("method", "grpo", "warmup_steps"),
                    g.warmup_steps,
                    "the warm-up fine-tunes the full weights, which qlora keeps in 4 bits; "
                    "set it to 0 and start from an sft run's model",
                )
            )
        names = [r.name or r.kind for r in g.rewards]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            out.append((("method", "grpo", "rewards"), dup, "two rewards share a name; set name"))
    return out


def distill_problems(cfg: RunConfig) -> list[Problem]:
    """The rules of ``method.distill`` and of stage ``distill`` (part of ``stage_problems``)."""
    stage, k, t = cfg.method.stage, cfg.method.distill, cfg.train
    k0, out = DistillConfig(), []
    if stage != "distill":
        for name in DistillConfig.model_fields:
            if getattr(k, name) != getattr(k0, name):
                out.append(
                    (
                        ("method", "distill", name),
                        getattr(k, name),
                        f"applies to stage distill; stage is {stage}; remove it",
                    )
                )
        return out
    if not k.teacher:
        out.append(
            (
                ("method", "distill", "teacher"),
                None,
                "stage distill needs a teacher: a run directory or model folder "
                "with the student's tokenizer",
            )
        )
    if k.beta != k0.beta and k.kind != "jsd":
        out.append(
            (("method", "distill", "beta"), k.beta, f"weights the jsd mix; kind is {k.kind}")
        )
    if t.ce_impl in ("chunked", "liger"):
        out.append(
            (
                ("train", "ce_impl"),
                t.ce_impl,
                "distillation compares the student's logits with the teacher's; "
                "use auto, logits or full",
            )
        )
    if t.compile:
        out.append(
            (("train", "compile"), True, "the distill recipe does not compile; set it to false")
        )
    return out
