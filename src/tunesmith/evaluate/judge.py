"""Judge task: the evaluated model's answers scored by a judge behind an OpenAI-compatible API.

Requests go to ``<url>/chat/completions`` (stdlib ``urllib``: no extra dependency), with retries
and exponential backoff on 5xx, 429, timeouts and refused connections. Replies are cached on
disk keyed by (judge model, rubric, question, answer, reference), so re-running an evaluation
asks nothing twice. A reply without a score in range is counted as unparsed, never fatal: a
small judge writes anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.evaluate.base import EvalContext, Task, TaskResult
from tunesmith.evaluate.datafile import pick, read_rows, resolve
from tunesmith.evaluate.registry import register

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


class JudgeError(TunesmithError):
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


def cache_key(model: str, rubric: str, question: str, answer: str, reference: str | None) -> str:
    """A stable hash of what determines a judge reply."""
    blob = json.dumps([model, rubric, question, answer, reference], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """One small JSON file per key under ``root`` (written atomically: concurrent runs are safe)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The cached reply, or ``None``."""
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))["reply"]
        except (OSError, ValueError, KeyError):
            return None  # missing or damaged: ask again

    def put(self, key: str, reply: str) -> None:
        """Store ``reply`` under ``key``."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"reply": reply}, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)


def default_cache_dir() -> Path:
    """``TUNESMITH_CACHE``/judge, else the user cache directory's judge folder."""
    from tunesmith.model.paths import cache_root

    return cache_root() / "judge"


class JudgeClient:
    """``POST <url>/chat/completions`` with retries; the API key only lives in memory here."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        retries: int = 3,
        backoff: float = 1.0,
        timeout: float = 60.0,
        max_tokens: int = 256,
        sleep: Any = time.sleep,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"eval.tasks judge.url: {url!r} is not an http(s) URL; give the API's base, "
                "e.g. http://127.0.0.1:8000/v1"
            )
        self.endpoint = url.rstrip("/") + "/chat/completions"
        self.model, self.api_key = model, api_key
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.max_tokens = max_tokens
        self.sleep = sleep
        self.requests = 0
        self.retried = 0
        self._lock = threading.Lock()  # counters shared by concurrent requests

    def ask(self, prompt: str) -> str:
        """The judge's reply to one user message (greedy).

        Raises:
            JudgeError: a 4xx other than 429 at once (bad key, unknown model), or no answer
                after every retry; the message names the endpoint and the fix.
        """
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                with self._lock:
                    self.retried += 1
                self.sleep(self.backoff * 2 ** (attempt - 1))
            with self._lock:
                self.requests += 1
            request = urllib.request.Request(self.endpoint, data=data, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:200].decode("utf-8", "replace")
                if exc.code == 429 or exc.code >= 500:
                    last = f"HTTP {exc.code}"
                    continue
                hint = "check eval judge api_key_env" if exc.code in (401, 403) else "check url"
                raise JudgeError(
                    f"judge {self.endpoint}: HTTP {exc.code} ({detail.strip()}); {hint} and model"
                ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = str(getattr(exc, "reason", exc))
                continue
            except ValueError:
                raise JudgeError(f"judge {self.endpoint}: the reply is not JSON") from None
            try:
                return str(payload["choices"][0]["message"]["content"] or "")
            except (KeyError, IndexError, TypeError):
                raise JudgeError(
                    f"judge {self.endpoint}: no choices[0].message.content in the reply; "
                    "is it an OpenAI-compatible chat endpoint?"
                ) from None
        raise JudgeError(
            f"judge {self.endpoint}: no answer after {self.retries + 1} tries ({last}); "
            "check that the server is up, or raise retries/timeout"
        )


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
        api_key = None
        if spec.api_key_env:
            api_key = os.environ.get(spec.api_key_env)
            if not api_key:
                raise ConfigError(
                    f"eval.tasks judge.api_key_env: environment variable {spec.api_key_env} is "
                    "not set; export it with the judge's API key"
                )
        rubric, rubric_name = load_rubric(spec.rubric)
        items = read_items(spec.data)
        items = items[: spec.max_samples] if spec.max_samples else items
        answers = ctx.generate(
            [it["prompt"] for it in items], max_new_tokens=spec.max_new_tokens, temperature=0.0
        )
        client = JudgeClient(
            spec.url,
            spec.model,
            api_key=api_key,
            retries=spec.retries,
            backoff=spec.backoff,
            timeout=spec.timeout,
            max_tokens=spec.judge_max_tokens,
        )
        cache = JudgeCache(Path(spec.cache_dir) if spec.cache_dir else default_cache_dir())
        prompts, keys, replies = [], [], []
        for it, answer in zip(items, answers):
            prompt = fill(
                rubric,
                question=it["prompt"],
                answer=answer,
                reference=it["reference"],
                min_score=_num(spec.min_score),
                max_score=_num(spec.max_score),
            )
            key = cache_key(spec.model, prompt, it["prompt"], answer, it["reference"])
            prompts.append(prompt)
            keys.append(key)
            replies.append(cache.get(key) if spec.cache else None)
        hits = [r is not None for r in replies]
        missing = [i for i, r in enumerate(replies) if r is None]
        # Requests in flight together (threads: the time is spent waiting on the network).
        with ThreadPoolExecutor(max_workers=min(spec.concurrency, max(len(missing), 1))) as pool:
            for i, reply in zip(missing, pool.map(client.ask, [prompts[i] for i in missing])):
                replies[i] = reply
                if spec.cache:
                    cache.put(keys[i], reply)
        rows, scores = [], []
        for it, answer, reply, hit in zip(items, answers, replies, hits):
            assert reply is not None
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
