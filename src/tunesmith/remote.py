"""A small client for any OpenAI-compatible chat endpoint (a leaf: imports only our errors).

Requests go to ``<url>/chat/completions`` with stdlib ``urllib`` (no extra dependency), retried
with exponential backoff on 5xx, 429, timeouts and refused connections. Replies can be cached on
disk keyed by the request (model, messages, sampling parameters; not the URL, so a server moved
to another port still hits), and many requests can be sent with bounded concurrency in order.
The API key is read from an environment variable and only lives in memory.

Used by the judge task (``evaluate``), teacher synthesis (``data``) and endpoint rewards
(``train``): those layers cannot import each other, so this lives at the top of the package.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tunesmith.errors import ConfigError, TunesmithError

T = TypeVar("T")
R = TypeVar("R")

Message = dict[str, Any]
"""One chat message: ``{"role": ..., "content": ...}``."""


class RemoteError(TunesmithError):
    """The endpoint could not be used (unreachable, refused the key, a reply that is not chat)."""


@dataclass(frozen=True)
class Completion:
    """One chat reply with the token counts the API reported (0 when it reported none)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    cached: bool = False
    """Read from the on-disk cache: no request was sent."""

    def to_json(self) -> dict[str, Any]:
        """The fields the cache stores (``cached`` is a property of the read, not the reply)."""
        return {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
        }


def request_key(body: dict[str, Any]) -> str:
    """A stable hash of a request body (keys sorted, so dict order does not matter)."""
    blob = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """One small JSON file per key under ``root`` (written atomically: concurrent runs are safe)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored object, or ``None`` when missing or damaged (then it is asked again)."""
        try:
            value = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store ``value`` under ``key``."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)


def api_key_from_env(name: str | None, config_path: str) -> str | None:
    """The API key in environment variable ``name`` (``None`` when no name is configured).

    Raises:
        ConfigError: ``name`` is set in the config but not in the environment.
    """
    if not name:
        return None
    key = os.environ.get(name)
    if not key:
        raise ConfigError(
            f"{config_path}: environment variable {name} is not set; export it with the "
            "endpoint's API key"
        )
    return key


@dataclass
class Usage:
    """Counters over a client's life (thread-safe: requests run concurrently)."""

    requests: int = 0
    """HTTP requests sent, retries included."""
    retried: int = 0
    cached: int = 0
    """Replies read from the cache."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    """Tokens of the replies received (cached replies are not counted: they cost nothing)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        """Add to the named counters."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def to_json(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return {
            "requests": self.requests,
            "retried": self.retried,
            "cached": self.cached,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class ChatClient:
    """``POST <url>/chat/completions`` with retries, an optional cache and usage counters.

    Args:
        url: The API's base, e.g. ``http://127.0.0.1:8000/v1``.
        model: The model's name at that endpoint.
        api_key: Sent as ``Authorization: Bearer``; never stored or logged.
        retries: Extra tries after a 5xx, 429, timeout or refused connection.
        backoff: Seconds before the first retry; doubles each time.
        timeout: Seconds per request.
        cache: Replies of identical requests are read from here instead of sent.
        label: How errors name this client and its config, e.g. ``"judge"``.
        key_hint: The config field to check on a 401/403.
        sleep: Injected by tests to record the backoff instead of waiting.
    """

    error: type[RemoteError] = RemoteError
    """What failures are raised as (a caller's subclass, e.g. the judge's)."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        retries: int = 3,
        backoff: float = 1.0,
        timeout: float = 60.0,
        cache: ResponseCache | None = None,
        label: str = "remote",
        url_field: str = "url",
        key_hint: str = "api_key_env",
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{url_field}: {url!r} is not an http(s) URL; give the API's base, "
                "e.g. http://127.0.0.1:8000/v1"
            )
        self.endpoint = url.rstrip("/") + "/chat/completions"
        self.model, self.api_key = model, api_key
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.cache = cache
        self.label, self.key_hint = label, key_hint
        self.sleep = sleep
        self.usage = Usage()

    def body(self, messages: Sequence[Message], **params: Any) -> dict[str, Any]:
        """The request body: model, messages and the sampling parameters that are not ``None``."""
        body: dict[str, Any] = {"model": self.model, "messages": list(messages)}
        body.update({k: v for k, v in params.items() if v is not None})
        return body

    def complete(self, messages: Sequence[Message], **params: Any) -> Completion:
        """One reply to ``messages`` (``params``: temperature, max_tokens, seed, ...).

        Raises:
            RemoteError: a 4xx other than 429 at once (bad key, unknown model), or no answer
                after every retry; the message names the endpoint and the fix.
        """
        body = self.body(messages, **params)
        key = request_key(body) if self.cache is not None else ""
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None and isinstance(hit.get("text"), str):
                self.usage.add(cached=1)
                return Completion(
                    hit["text"],
                    int(hit.get("prompt_tokens") or 0),
                    int(hit.get("completion_tokens") or 0),
                    hit.get("finish_reason"),
                    cached=True,
                )
        payload = self._post(body)
        completion = self._parse(payload)
        self.usage.add(
            prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens
        )
        if self.cache is not None:
            self.cache.put(key, completion.to_json())
        return completion

    def ask(self, prompt: str, **params: Any) -> str:
        """The reply text to one user message."""
        return self.complete([{"role": "user", "content": prompt}], **params).text

    def complete_many(
        self, conversations: Sequence[Sequence[Message]], concurrency: int = 4, **params: Any
    ) -> list[Completion]:
        """Replies to many conversations, at most ``concurrency`` in flight, in input order."""
        return map_concurrent(lambda m: self.complete(m, **params), conversations, concurrency)

    def _post(self, body: dict[str, Any]) -> Any:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.usage.add(retried=1)
                self.sleep(self.backoff * 2 ** (attempt - 1))
            self.usage.add(requests=1)
            request = urllib.request.Request(self.endpoint, data=data, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:200].decode("utf-8", "replace")
                if exc.code == 429 or exc.code >= 500:
                    last = f"HTTP {exc.code}"
                    continue
                hint = f"check {self.key_hint}" if exc.code in (401, 403) else "check url"
                raise self.error(
                    f"{self.label} {self.endpoint}: HTTP {exc.code} ({detail.strip()}); "
                    f"{hint} and model"
                ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = str(getattr(exc, "reason", exc))
                continue
            try:
                return json.loads(raw.decode("utf-8"))
            except ValueError:
                raise self.error(f"{self.label} {self.endpoint}: the reply is not JSON") from None
        raise self.error(
            f"{self.label} {self.endpoint}: no answer after {self.retries + 1} tries ({last}); "
            "check that the server is up, or raise retries/timeout"
        )

    def _parse(self, payload: Any) -> Completion:
        try:
            choice = payload["choices"][0]
            text = str(choice["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            raise self.error(
                f"{self.label} {self.endpoint}: no choices[0].message.content in the reply; "
                "is it an OpenAI-compatible chat endpoint?"
            ) from None
        usage = payload.get("usage") if isinstance(payload, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        return Completion(
            text,
            _count(usage.get("prompt_tokens")),
            _count(usage.get("completion_tokens")),
            choice.get("finish_reason") if isinstance(choice, dict) else None,
        )


def map_concurrent(fn: Callable[[T], R], items: Iterable[T], concurrency: int) -> list[R]:
    """``[fn(x) for x in items]`` with at most ``concurrency`` calls at once (threads: the time
    is spent waiting on the network), in input order; the first exception is raised."""
    todo = list(items)
    if not todo:
        return []
    if concurrency <= 1 or len(todo) == 1:
        return [fn(x) for x in todo]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(todo))) as pool:
        return list(pool.map(fn, todo))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
