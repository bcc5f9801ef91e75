"""Batched decoding with a KV cache, and a worker thread that batches concurrent requests.

:class:`Scheduler` keeps one running batch, left-padded. Each :meth:`Scheduler.step` admits
waiting requests (prefilled together, then joined to the running batch by left-padding the
shorter cache), chooses every row's next token with that row's own parameters, drops finished
rows, and runs one forward pass for the rest. So requests that arrive while others are being
answered join at the next token instead of waiting for the whole batch (continuous batching).

:class:`BatchWorker` runs a scheduler in a background thread: ``submit`` from any thread, events
come back through the request's ``emit`` callback.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.infer.decode import Request
from tunesmith.infer.sampling import choose_tokens

#: Seeds ``torch.Generator.manual_seed`` accepts.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1
_FLOATS = ("temperature", "top_p", "repetition_penalty", "presence_penalty", "frequency_penalty")


class SequenceRejected(ConfigError):
    """A sequence refused at admission because of its own inputs (the others still run).

    ``param`` names the offending generation parameter (``None``: the prompt).
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def check_sequence(request: Request, max_positions: int) -> None:
    """Raise :class:`SequenceRejected` when ``request`` cannot run on this model.

    The server validates its requests before they get here; this keeps any caller's bad
    values from failing the batch they would have joined.
    """
    n = len(request.prompt)
    if n == 0:
        raise SequenceRejected("the prompt is empty (no tokens); give some text")
    if n >= max_positions:
        raise SequenceRejected(f"the prompt is {n} tokens; the model's context is {max_positions}")
    p = request.params
    for name in _FLOATS:
        value = getattr(p, name)
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise SequenceRejected(f"{name}={value!r}: must be a finite number", name)
    if p.seed is not None and not (isinstance(p.seed, int) and SEED_MIN <= p.seed <= SEED_MAX):
        raise SequenceRejected(f"seed={p.seed!r}: must be an integer in [-2**63, 2**64-1]", "seed")
    try:
        p.check()
    except ConfigError as exc:
        field = re.match(r"\w+", str(exc))  # check() names the field first: "top_p=..."
        raise SequenceRejected(str(exc), field.group() if field else None) from None


class Scheduler:
    """Continuous batching over a model through a :class:`ModelRunner`-like ``runner``."""

    def __init__(self, runner: Any, *, max_batch: int = 32) -> None:
        self.runner = runner
        self.max_batch = max_batch
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self._mask: Any = None  # [batch, length] attention mask of the running batch
        self._cache: Any = None
        self._logits: Any = None  # [batch, vocab] logits for each row's next token
        self._admitting: list[Request] = []  # taken from the queue, not yet in the batch
        self._solo: set[Request] = set()  # prefilled alone after their group's prefill failed
        self._lock = threading.Lock()

    def add(self, request: Request) -> None:
        """Queue a request (thread-safe)."""
        with self._lock:
            self.waiting.append(request)

    @property
    def busy(self) -> bool:
        """Whether anything is running or waiting."""
        return bool(self.running or self.waiting)

    def step(self) -> None:
        """Admit, choose the next tokens, drop finished rows, and run one forward pass."""
        self._admit()
        if not self.running:
            return
        rows = self.running
        tokens = self._choose(rows)
        for r, t in zip(rows, tokens):
            if r.done:  # its token choice failed
                continue
            if r.cancelled:
                r.abort()
                continue
            try:
                r.push(t, self.runner.stop_ids, self.runner.max_positions)
            except Exception as exc:  # e.g. the tokenizer cannot decode it: this row only
                r.fail(exc)
        keep = [i for i, r in enumerate(rows) if not r.done]
        if len(keep) < len(rows):
            self._select(keep)
        if self.running:
            nxt = [tokens[i] for i in keep]
            self._logits, self._mask = self.runner.decode(
                nxt, self._mask, self._cache, [r.adapter for r in self.running]
            )

    def fail_all(self, error: BaseException) -> None:
        """Report ``error`` to every running and waiting request and reset the batch."""
        with self._lock:
            pending = self._admitting + self.running + list(self.waiting)
            self.waiting.clear()
            self._solo.clear()
        self._admitting = []
        self.running, self._mask, self._cache, self._logits = [], None, None, None
        for r in pending:
            with contextlib.suppress(Exception):  # every one of them must hear of it
                r.fail(error)

    # -- internals ---------------------------------------------------------------------------
    def _choose(self, rows: list[Request]) -> list[int]:
        """Every row's next token; a row whose choice raises is failed on its own."""
        try:
            return choose_tokens(
                self._logits,
                [r.params for r in rows],
                [r.prompt for r in rows],
                [r.answer for r in rows],
                [r.generator for r in rows],
            )
        except Exception:
            pass
        # Row by row to find the culprit (a seeded row may have drawn its number already: on
        # this error path only, it may then differ from a run without the culprit).
        tokens = []
        for i, r in enumerate(rows):
            try:
                (t,) = choose_tokens(
                    self._logits[i : i + 1], [r.params], [r.prompt], [r.answer], [r.generator]
                )
            except Exception as exc:
                r.fail(exc)
                t = -1
            tokens.append(t)
        return tokens

    def _take(self) -> list[Request]:
        """Requests to admit now: as many as fit, or one that must be prefilled alone."""
        room = self.max_batch - len(self.running)
        if room <= 0 or not self.waiting:
            return []
        if self.running and not self.runner.can_join:
            return []
        batch_adapters = {r.adapter for r in self.running}
        new: list[Request] = []
        with self._lock:
            skipped: deque[Request] = deque()
            while self.waiting and len(new) < room:
                if new and self.waiting[0] in self._solo:
                    break
                r = self.waiting.popleft()
                if r.cancelled:
                    self._solo.discard(r)
                    r.abort()
                    continue
                wanted = batch_adapters | {x.adapter for x in new} | {r.adapter}
                if len(wanted) > 1 and not self.runner.mixed_adapters:
                    skipped.append(r)  # waits until the running batch drains
                    continue
                new.append(r)
                if r in self._solo:
                    break
            self.waiting.extendleft(reversed(skipped))
        return new

    def _start(self, r: Request) -> bool:
        """Check and prepare one request; one that cannot run is failed here, alone."""
        try:
            check_sequence(r, self.runner.max_positions)
            r.start(self.runner.tokenizer)
        except Exception as exc:
            self._solo.discard(r)
            r.fail(exc)
            return False
        return True

    def _admit(self) -> None:
        new = [r for r in self._take() if self._start(r)]
        if not new:
            return
        self._admitting = new
        prompts, adapters = [r.prompt for r in new], [r.adapter for r in new]
        try:
            if any(r.pixel_values is not None for r in new):
                pixels = [r.pixel_values for r in new]
                logits, mask, cache = self.runner.prefill(prompts, adapters, pixels)
            else:
                logits, mask, cache = self.runner.prefill(prompts, adapters)
        except Exception as exc:
            self._admitting = []
            if len(new) == 1:
                self._solo.discard(new[0])
                new[0].fail(exc)
                return
            # Which row the model refused is unknown: each one is retried on its own.
            with self._lock:
                self._solo.update(new)
                self.waiting.extendleft(reversed(new))
            return
        for r in new:
            self._solo.discard(r)
            r.pixel_values = None  # in the cache from now on
        if not self.running:
            self.running, self._logits, self._mask, self._cache = new, logits, mask, cache
        else:
            self._mask = join_caches(self._mask, self._cache, mask, cache)
            self._logits = self.runner.cat([self._logits, logits])
            self.running = self.running + new
        self._admitting = []

    def _select(self, keep: list[int]) -> None:
        self.running = [self.running[i] for i in keep]
        if not keep:
            self._mask = self._cache = self._logits = None
            return
        import torch

        idx = torch.tensor(keep, device=self._mask.device)
        self._mask, self._logits = self._mask[idx], self._logits[idx]
        # Columns that are padding in every remaining row are dropped from mask and cache alike.
        live = self._mask.any(0).nonzero()
        start = int(live[0]) if len(live) else 0
        self._mask = self._mask[:, start:]
        for layer in self._cache.layers:
            layer.keys = layer.keys[idx, :, start:]
            layer.values = layer.values[idx, :, start:]


def join_caches(mask_a: Any, cache_a: Any, mask_b: Any, cache_b: Any) -> Any:
    """Append batch ``b`` to batch ``a`` in place (cache ``a``); returns the joined mask.

    The shorter side is left-padded with zeros; keys already carry their rotary positions, and
    the padded slots are masked out, so every row attends exactly to its own tokens.
    """
    import torch

    la, lb = mask_a.shape[1], mask_b.shape[1]
    width = max(la, lb)

    def pad(t: Any, n: int, dim: int) -> Any:
        if n == 0:
            return t
        shape = list(t.shape)
        shape[dim] = n
        return torch.cat([t.new_zeros(shape), t], dim)

    for a, b in zip(cache_a.layers, cache_b.layers):
        a.keys = torch.cat([pad(a.keys, width - la, 2), pad(b.keys, width - lb, 2)], 0)
        a.values = torch.cat([pad(a.values, width - la, 2), pad(b.values, width - lb, 2)], 0)
    return torch.cat([pad(mask_a, width - la, 1), pad(mask_b, width - lb, 1)], 0)


def make_request(item: Sequence[Any], emit: Callable[[Any], None]) -> Request:
    """A :class:`Request` from ``(prompt, params, adapter[, pixel_values])``."""
    prompt, params, adapter, *rest = item
    pixels = rest[0] if rest else None
    return Request(prompt=prompt, params=params, emit=emit, adapter=adapter, pixel_values=pixels)


class BatchWorker:
    """A background thread running a :class:`Scheduler`; requests may come from any thread.

    When the worker is idle, the first request waits ``window_s`` for companions so a burst of
    requests starts as one batch; later arrivals join the running batch at the next token.
    """

    def __init__(self, runner: Any, *, max_batch: int = 32, window_s: float = 0.005) -> None:
        self.scheduler = Scheduler(runner, max_batch=max_batch)
        self.window_s = window_s
        self._wake = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="tunesmith-batcher", daemon=True)
        self._thread.start()

    def submit(
        self,
        prompt: list[int],
        params: Any,
        emit: Callable[[Any], None],
        adapter: str | None = None,
        pixel_values: Any = None,
    ) -> Request:
        """Queue one sequence; its events go to ``emit`` (called from the worker thread)."""
        req = Request(
            prompt=prompt, params=params, emit=emit, adapter=adapter, pixel_values=pixel_values
        )
        self.scheduler.add(req)
        with self._wake:
            self._wake.notify()
        return req

    def submit_many(
        self, items: Sequence[tuple[Any, ...]], emit: Callable[[int, Any], None]
    ) -> list[Request]:
        """Queue several sequences at once; ``emit(index, event)``.

        Items are ``(prompt ids, params, adapter)``, or with a fourth element, the prompt's
        ``pixel_values`` (vision-language models).
        """
        reqs = [make_request(item, lambda ev, i=i: emit(i, ev)) for i, item in enumerate(items)]
        for r in reqs:
            self.scheduler.add(r)
        with self._wake:
            self._wake.notify()
        return reqs

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread; pending requests are failed."""
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join(timeout)
        self.scheduler.fail_all(RuntimeError("the inference worker was shut down"))

    def _loop(self) -> None:
        sched = self.scheduler
        while True:
            with self._wake:
                while not sched.busy and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
            if not sched.running and self.window_s > 0:
                time.sleep(self.window_s)  # let a burst of arrivals start together
            try:
                while sched.busy and not self._stop:
                    sched.step()
            except Exception as exc:  # a failed batch must not kill the server
                sched.fail_all(exc)
