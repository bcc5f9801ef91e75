"""Judge task: the evaluated model's answers scored by a judge behind an OpenAI-compatible API.

Requests go through the shared client (``tunesmith.remote``: retries with exponential backoff on
5xx, 429, timeouts and refused connections); replies are cached on disk keyed by the request
(judge model, the filled rubric with question, answer and reference, sampling), so re-running an
evaluation asks nothing twice. A reply without a score in range is counted as unparsed, never
fatal: a small judge writes anything.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.evaluate.base import EvalContext, Task, TaskResult
from tunesmith.evaluate.datafile import pick, read_rows, resolve
from tunesmith.evaluate.registry import register
from tunesmith.remote import ChatClient, Completion, RemoteError, ResponseCache, api_key_from_env

DEFAULT_RUBRIC = """You are grading an assistant's answer to a user's question.
Judge correctness first, then helpfulness and clarity. If a reference answer is given, an answer
that contradicts it is wrong.

Question:
{question}

Reference answer (may be empty):
{reference}

Assistant's answer:
{answer}

Give a one-sentence reason, then the score on its own last line as "Score: N", where N is an
integer from {min_score} (useless or wrong) to {max_score} (fully correct and helpful)."""

_NUMBER = r"(\d+(?:\.\d+)?)"
_SCORE_PATTERNS = (
    re.compile(r"(?:score|rating|评分|分数|得分)\s*[:=：]?\s*\**\s*" + _NUMBER, re.IGNORECASE),
    re.compile(_NUMBER + r"\s*(?:/|out of)\s*\d+", re.IGNORECASE),
    re.compile(r"^\s*" + _NUMBER + r"\s*$"),
)


class JudgeError(RemoteError):
    """The judge endpoint could not be used (unreachable, refused the key, bad reply)."""


def parse_score(reply: str, low: float, high: float) -> float | None:
    """The last score in ``reply`` within ``[low, high]``, by the first pattern that finds one.

    Patterns, in order: ``Score: N`` (also ``Rating``, ``评分``/``分数``/``得分``, full-width
    colon), ``N/10`` or ``N out of 10``, a bare number as the whole reply. ``None`` when none.
    """
    for pattern in _SCORE_PATTERNS:
        found = [float(m) for m in pattern.findall(reply)]
        found = [v for v in found if low <= v <= high]
        if found:
            return found[-1]
    return None


def default_cache_dir() -> Path:
    """``TUNESMITH_CACHE``/judge, else the user cache directory's judge folder."""
    from tunesmith.model.paths import cache_root

    return cache_root() / "judge"


class JudgeClient(ChatClient):
    """The shared OpenAI-compatible client (``tunesmith.remote``), greedy, with errors that name
    the judge's config fields."""

    error = JudgeError

    def __init__(self, url: str, model: str, *, max_tokens: int = 256, **kw: Any) -> None:
        super().__init__(
            url,
            model,
            label="judge",
            url_field="eval.tasks judge.url",
            key_hint="eval judge api_key_env",
            **kw,
        )
        self.max_tokens = max_tokens

    def grade(self, prompts: list[str], concurrency: int) -> list[Completion]:
        """The judge's replies to the filled rubrics, ``concurrency`` in flight, in order."""
        conversations = [[{"role": "user", "content": p}] for p in prompts]
        return self.complete_many(
            conversations, concurrency, temperature=0, max_tokens=self.max_tokens
        )

    def ask(self, prompt: str, **params: Any) -> str:
        """The judge's greedy reply to one user message."""
        return super().ask(prompt, **{"temperature": 0, "max_tokens": self.max_tokens, **params})

    @property
    def requests(self) -> int:
        """HTTP requests sent, retries included."""
        return self.usage.requests

    @property
    def retried(self) -> int:
        """Retries after a 5xx, 429, timeout or refused connection."""
        return self.usage.retried


def read_items(path: str) -> list[dict[str, Any]]:
    """``{"id", "prompt", "reference"}`` rows (reference optional)."""
    file = str(resolve(path))
    out = []
    for n, row in read_rows(path):
        prompt = pick(file, n, row, ("question", "prompt", "instruction"), None, "question")
        reference = row.get("reference", row.get("answer"))
        out.append(
            {
                "id": row.get("id", n),
                "prompt": prompt,
                "reference": None if reference is None else str(reference),
            }
        )
    return out


def load_rubric(path: str | None) -> tuple[str, str]:
    """``(rubric text, its name)``: the built-in one, or a file with the placeholders.

    Raises:
        ConfigError: unreadable file, or one without ``{answer}``.
    """
    if path is None:
        return DEFAULT_RUBRIC, "builtin"
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"eval.tasks judge.rubric: cannot read {file} ({exc.strerror})") from None
    if "{answer}" not in text:
        raise ConfigError(
            f"{file}: the rubric has no {{answer}} placeholder; add {{question}}, {{answer}} "
            "and optionally {reference}"
        )
    return text, str(file)


def fill(rubric: str, **values: Any) -> str:
    """The rubric with its placeholders replaced (other braces left alone)."""
    out = rubric
    for key, value in values.items():
        out = out.replace("{" + key + "}", "" if value is None else str(value))
    return out


@register
class Judge(Task):
    """The model answers; a judge model scores each answer by a rubric."""

    kind = "judge"

    def run(self, ctx: EvalContext) -> TaskResult:
        """Generate answers greedily, ask the judge (or the cache), parse the scores."""
        t0 = time.perf_counter()
        spec = self.spec
        api_key = api_key_from_env(spec.api_key_env, "eval.tasks judge.api_key_env")
        rubric, rubric_name = load_rubric(spec.rubric)
        items = read_items(spec.data)
        items = items[: spec.max_samples] if spec.max_samples else items
        answers = ctx.generate(
            [it["prompt"] for it in items], max_new_tokens=spec.max_new_tokens, temperature=0.0
        )
        cache = None
        if spec.cache:
            cache = ResponseCache(Path(spec.cache_dir) if spec.cache_dir else default_cache_dir())
        client = JudgeClient(
            spec.url,
            spec.model,
            api_key=api_key,
            retries=spec.retries,
            backoff=spec.backoff,
            timeout=spec.timeout,
            max_tokens=spec.judge_max_tokens,
            cache=cache,
        )
        prompts = [
            fill(
                rubric,
                question=it["prompt"],
                answer=answer,
                reference=it["reference"],
                min_score=_num(spec.min_score),
                max_score=_num(spec.max_score),
            )
            for it, answer in zip(items, answers)
        ]
        # Identical requests (model, filled rubric, sampling) are read from the cache, not sent.
        completions = client.grade(prompts, spec.concurrency)
        replies = [c.text for c in completions]
        hits = [c.cached for c in completions]
        rows, scores = [], []
        for it, answer, reply, hit in zip(items, answers, replies, hits):
            score = parse_score(reply, spec.min_score, spec.max_score)
            if score is not None:
                scores.append(score)
            rows.append(
                {
                    **it,
                    "prediction": answer,
                    "judge_reply": reply,
                    "score": score,
                    "cached": hit,
                }
            )
        cached = sum(hits)
        n = len(rows)
        metrics: dict[str, float] = {"unparsed_rate": (n - len(scores)) / n if n else 0.0}
        if scores:
            metrics["judge_score"] = sum(scores) / len(scores)
        details = {
            "judge": {"endpoint": client.endpoint, "model": spec.model},
            "rubric": rubric_name,
            "scale": [spec.min_score, spec.max_score],
            "parsed": len(scores),
            "unparsed": n - len(scores),
            "cached": cached,
            "requests": client.requests,
            "retries": client.retried,
        }
        return TaskResult(self.kind, self.name, metrics, rows, details, n, time.perf_counter() - t0)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
