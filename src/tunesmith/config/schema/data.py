"""``data``: the sources, how they mix and render, identity fill-in, augmentation, packing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tunesmith.config.names import FORMAT_NAMES
from tunesmith.config.schema.base import LossWeights, Section, unknown_name


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
