"""The ``tunesmith data synth`` config: the teacher endpoint, the jobs with their prompt
templates, the filters and the output (a YAML file of its own, typed and strict).

Prompt templates use ``{name}`` placeholders (as the judge rubric does); only the names a job
knows are replaced, so other braces (JSON examples in a prompt) stay as written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from tunesmith.config.schema import Section
from tunesmith.errors import ConfigError

ANSWER_PROMPT = "{question}"
REPHRASE_PROMPT = (
    "Rewrite the question below in other words, keeping its meaning and language. "
    "Reply with the rewritten question only.\n\nQuestion: {question}"
)
QA_PROMPT = (
    "Read the text below and write {n} question-answer pairs about it, each answerable from the "
    "text alone, in the text's language. Write each pair as two lines:\nQ: <question>\n"
    "A: <answer>\n\nText:\n{document}"
)
JUDGE_PROMPT = (
    "Rate how well the answer responds to the question, from 1 (useless or wrong) to 10 "
    "(correct and helpful). Reply as 'Score: N'.\n\nQuestion: {question}\n\nAnswer: {answer}"
)

PLACEHOLDERS = {
    "answer": {"question", "system"},
    "rephrase": {"question", "answer", "k"},
    "qa": {"document", "n", "title"},
    "judge": {"question", "answer"},
}
"""What each job's prompt may use (a template naming anything else is refused)."""


class EndpointConfig(Section):
    """An OpenAI-compatible chat endpoint (``tunesmith serve``, vLLM, a hosted API)."""

    url: str = Field(description="The API's base, e.g. http://127.0.0.1:8000/v1.")
    model: str = Field(description="The model's name at that endpoint.")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the API key (never written anywhere)."
    )
    concurrency: int = Field(4, ge=1, description="Requests in flight at once.")
    retries: int = Field(3, ge=0, description="Retries on 5xx, 429, timeouts, refused connections.")
    backoff: float = Field(1.0, ge=0, description="Seconds before the first retry (doubles).")
    timeout: float = Field(120.0, gt=0, description="Seconds per request.")
    temperature: float = Field(0.7, ge=0)
    max_tokens: int = Field(256, ge=1, description="Reply length limit per request.")
    seed: int | None = Field(0, description="Sent to the endpoint; rephrasings use seed + k.")
    price_prompt: float = Field(
        0.0, ge=0, description="Price per million prompt tokens (the cost report)."
    )
    price_completion: float = Field(
        0.0, ge=0, description="Price per million completion tokens (the cost report)."
    )

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(
                f"{v!r} is not an http(s) URL; give the API's base, e.g. http://127.0.0.1:8000/v1"
            )
        return v


class _Job(Section):
    """What every job has: its kind, input, prompt template and an optional system message."""

    type: str
    prompt: str
    data: str = Field(description="Input file/folder (JSONL, JSON, CSV, Parquet, text, builtin:).")
    system: str | None = Field(None, description="A system message sent with every request.")
    max_samples: int | None = Field(None, ge=1, description="Use at most this many inputs.")

    @model_validator(mode="after")
    def _known_placeholders(self) -> Any:
        kind = self.type
        used = set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", self.prompt))
        unknown = sorted(used - PLACEHOLDERS[kind])
        if unknown:
            known = ", ".join("{" + n + "}" for n in sorted(PLACEHOLDERS[kind]))
            raise ValueError(
                f"prompt uses {', '.join('{' + n + '}' for n in unknown)}; a {kind} prompt "
                f"knows {known}"
            )
        return self


class AnswerJob(_Job):
    """Answer a list of questions (the teacher writes the assistant turn)."""

    type: Literal["answer"] = "answer"
    field: str | None = Field(
        None, description="The question's field (default: question, prompt, instruction or text)."
    )
    prompt: str = Field(ANSWER_PROMPT, description="Template: {question}, {system}.")


class RephraseJob(_Job):
    """Rephrase each sample's question ``n`` ways; the answer is kept."""

    type: Literal["rephrase"] = "rephrase"
    n: int = Field(3, ge=1, le=50, description="Rephrasings per sample.")
    prompt: str = Field(REPHRASE_PROMPT, description="Template: {question}, {answer}, {k}.")


class QAJob(_Job):
    """Generate question-answer pairs from documents ("convert context to dialogs")."""

    type: Literal["qa"] = "qa"
    n: int = Field(3, ge=1, le=50, description="Pairs asked for per document chunk.")
    chunk_chars: int = Field(
        2000, ge=100, description="Documents are cut at paragraph breaks into chunks this long."
    )
    prompt: str = Field(QA_PROMPT, description="Template: {document}, {n}, {title}.")


Job = Annotated[AnswerJob | RephraseJob | QAJob, Field(discriminator="type")]


class JudgeFilter(Section):
    """Keep a sample only when a judge model scores it at least ``min_score``."""

    endpoint: EndpointConfig | None = Field(
        None, description="The judge's endpoint (default: the teacher's, at temperature 0)."
    )
    prompt: str = Field(JUDGE_PROMPT, description="Template: {question}, {answer}.")
    min_score: float = Field(6.0, description="Samples scored below this are dropped.")
    low: float = 1.0
    high: float = 10.0
    max_tokens: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _check(self) -> JudgeFilter:
        used = set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", self.prompt))
        if used - PLACEHOLDERS["judge"]:
            raise ValueError("prompt: a judge prompt knows {question} and {answer} only")
        if not self.low < self.high:
            raise ValueError("low must be below high")
        return self


class FilterConfig(Section):
    """What a synthesised sample must pass; every drop is counted by reason."""

    dedupe: bool = Field(True, description="Drop repeated question+answer pairs (case, spaces).")
    min_chars: int = Field(1, ge=0, description="Shortest answer kept (characters).")
    max_chars: int | None = Field(4000, ge=1, description="Longest answer kept.")
    regex: str | None = Field(None, description="The answer must match it (re.search).")
    reject_regex: str | None = Field(None, description="Answers matching it are dropped.")
    judge: JudgeFilter | None = None

    @field_validator("regex", "reject_regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a regular expression ({e})") from None
        return v


class SynthConfig(Section):
    """A ``tunesmith data synth`` run."""

    endpoint: EndpointConfig
    jobs: list[Job] = Field(min_length=1, description="What to generate, in order.")
    filters: FilterConfig = FilterConfig()
    out: str = Field(description="The output JSONL (canonical conversations with provenance).")
    cache_dir: str | None = Field(
        None, description="Reply cache (default: TUNESMITH_CACHE or the user cache, /synth)."
    )
    cache: bool = Field(True, description="Read and write the reply cache (reruns cost nothing).")


def load_synth_config(path: str | Path, overrides: list[str] | None = None) -> SynthConfig:
    """Read, override (``a.b=value``) and validate a synth config; relative paths in it are
    taken relative to the config file's folder.

    Raises:
        ConfigError: naming the file and the dotted field, with what is wrong.
    """
    from tunesmith.config.load import apply_override, parse_override, read_yaml

    tree = read_yaml(path)
    for text in overrides or []:
        parts, value = parse_override(text)
        apply_override(tree, parts, value)
    try:
        cfg = SynthConfig.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = list(err["loc"])
        if len(loc) >= 3 and loc[0] == "jobs" and loc[2] in PLACEHOLDERS:
            del loc[2]  # the job type pydantic's tagged union adds
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{path}: {dotted}: {msg}") from None
    base = Path(path).resolve().parent

    def rel(p: str) -> str:
        return p if p.startswith("builtin:") or Path(p).is_absolute() else str(base / p)

    updates: dict[str, Any] = {"out": rel(cfg.out)}
    if cfg.cache_dir:
        updates["cache_dir"] = rel(cfg.cache_dir)
    jobs = [j.model_copy(update={"data": rel(j.data)}) for j in cfg.jobs]
    return cfg.model_copy(update={**updates, "jobs": jobs})
