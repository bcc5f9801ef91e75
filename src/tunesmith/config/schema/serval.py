"""``serval``: LLM <-> vertical-model co-training (``tunesmith serval``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunesmith.config.schema.base import Section
from tunesmith.config.schema.data import DatasetConfig


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
