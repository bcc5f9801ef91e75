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

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from tunesmith.infer.decode import Request
from tunesmith.infer.sampling import choose_tokens


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
        tokens = choose_tokens(
            self._logits,
            [r.params for r in rows],
            [r.prompt for r in rows],
            [r.answer for r in rows],
            [r.generator for r in rows],
        )
        for r, t in zip(rows, tokens):
            if r.cancelled:
                r.abort()
            else:
                r.push(t, self.runner.stop_ids, self.runner.max_positions)
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
            pending = self.running + list(self.waiting)
            self.waiting.clear()
        self.running, self._mask, self._cache, self._logits = [], None, None, None
        for r in pending:
            r.fail(error)

    # -- internals ---------------------------------------------------------------------------
    def _admit(self) -> None:
        room = self.max_batch - len(self.running)
        if room <= 0 or not self.waiting:
            return
        if self.running and not self.runner.can_join:
            return
        batch_adapters = {r.adapter for r in self.running}
        new: list[Request] = []
        with self._lock:
            skipped: deque[Request] = deque()
            while self.waiting and len(new) < room:
                r = self.waiting.popleft()
                if r.cancelled:
                    r.abort()
                    continue
                wanted = batch_adapters | {x.adapter for x in new} | {r.adapter}
                if len(wanted) > 1 and not self.runner.mixed_adapters:
                    skipped.append(r)  # waits until the running batch drains
                    continue
                new.append(r)
            self.waiting.extendleft(reversed(skipped))
        if not new:
            return
        for r in new:
            r.start(self.runner.tokenizer)
        prompts, adapters = [r.prompt for r in new], [r.adapter for r in new]
        if any(r.pixel_values is not None for r in new):
            pixels = [r.pixel_values for r in new]
            for r in new:
                r.pixel_values = None  # in the cache from now on
            logits, mask, cache = self.runner.prefill(prompts, adapters, pixels)
        else:
            logits, mask, cache = self.runner.prefill(prompts, adapters)
        if not self.running:
            self.running, self._logits, self._mask, self._cache = new, logits, mask, cache
            return
        self._mask = join_caches(self._mask, self._cache, mask, cache)
        self._logits = self.runner.cat([self._logits, logits])
        self.running = self.running + new

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
