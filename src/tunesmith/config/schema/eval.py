"""``eval``: validation loss during training, and the task specs ``tunesmith eval`` runs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from tunesmith.config.schema.base import Section
from tunesmith.config.schema.data import DatasetConfig

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
