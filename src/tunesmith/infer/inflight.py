"""Requests in flight: admission to the concurrency limit, and their sequences on the batch worker.

A request takes a ``Slot`` of the server's ``Gate`` (429 beyond the limit), submits its sequences
as one ``Generation`` and reads their events back on the event loop; the slot comes back when the
last sequence ends, when the response is closed, or when the client goes away, whichever is first.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from tunesmith.infer.api_error import APIError
from tunesmith.infer.batching import SequenceRejected
from tunesmith.infer.decode import Delta, Failed, Finished


class Gate:
    """Counts requests in flight; refuses beyond ``limit`` (answered with 429)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.active = limit, 0
        self._lock = threading.Lock()

    def enter(self) -> Slot:
        """A place for one request (429 when none is left)."""
        with self._lock:
            if self.active >= self.limit:
                raise APIError(
                    429,
                    f"too many concurrent requests (limit {self.limit}); retry shortly",
                    type="rate_limit_error",
                    code="rate_limit_exceeded",
                )
            self.active += 1
        return Slot(self)

    def _leave(self, slot: Slot) -> None:
        with self._lock:
            if slot.held:
                slot.held = False
                self.active -= 1


class Slot:
    """One request's place in a :class:`Gate`; releasing it twice is harmless."""

    def __init__(self, gate: Gate) -> None:
        self.gate, self.held = gate, True

    def release(self) -> None:
        """Give the place back (thread-safe, idempotent)."""
        self.gate._leave(self)


class Generation:
    """Several sequences submitted to the batch worker, read back as ``(index, event)``.

    The request's ``slot`` is released when the last sequence ends (on the worker's side, so
    even a response that is never sent cannot keep it) or at :meth:`close`, whichever is first.
    """

    def __init__(
        self, engine: Any, items: Sequence[tuple[list[int], Any, str | None]], slot: Slot
    ) -> None:
        loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        self.slot = slot
        running, lock = len(items), threading.Lock()

        def emit(i: int, ev: Any) -> None:
            nonlocal running
            if isinstance(ev, Finished | Failed):
                with lock:
                    running -= 1
                    last = running == 0
                if last:
                    slot.release()
            # RuntimeError: the event loop is gone (server shutting down).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.queue.put_nowait, (i, ev))

        self.left = len(items)
        self.requests = engine.worker.submit_many(items, emit)

    async def events(self, *, coalesce: bool = False) -> AsyncIterator[tuple[int, Any]]:
        """Events until every sequence has finished.

        With ``coalesce``, text deltas already waiting are merged per sequence, so a loaded
        server sends fewer, larger stream chunks instead of falling behind token by token.
        """
        while self.left:
            batch = [await self.queue.get()]
            while coalesce and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            for i, ev in merge_deltas(batch) if coalesce else batch:
                if isinstance(ev, Finished | Failed):
                    self.left -= 1
                yield i, ev

    def cancel(self) -> None:
        """Drop sequences still running (the client went away)."""
        for r in self.requests:
            r.cancel()

    def close(self) -> None:
        """Cancel what still runs and give the slot back (safe to call more than once)."""
        self.cancel()
        self.slot.release()


def start_generation(engine: Any, gate: Gate, items: Sequence[tuple[Any, ...]]) -> Generation:
    """Take a slot and submit ``items``; the slot is given back if submitting fails."""
    slot = gate.enter()
    try:
        return Generation(engine, items, slot)
    except BaseException:
        slot.release()
        raise


def merge_deltas(batch: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """Join the text deltas of each sequence (order kept; a sequence's end stays last)."""
    out: list[tuple[int, Any]] = []
    open_delta: dict[int, int] = {}
    for i, ev in batch:
        if isinstance(ev, Delta) and i in open_delta:
            j = open_delta[i]
            out[j] = (i, Delta(out[j][1].text + ev.text))
            continue
        if isinstance(ev, Delta):
            open_delta[i] = len(out)
        else:
            open_delta.pop(i, None)
        out.append((i, ev))
    return out


async def collect(
    gen: Generation, n: int, request: Any = None
) -> tuple[list[str], list[str], list[int]]:
    """Wait for every sequence; raise on a generation error.

    With ``request``, a client that disconnects cancels the generation (its slot comes back
    at once instead of after the whole answer).
    """
    watcher = asyncio.ensure_future(cancel_on_disconnect(request, gen)) if request else None
    texts, reasons, counts = [""] * n, ["stop"] * n, [0] * n
    try:
        async for i, ev in gen.events():
            if isinstance(ev, Delta):
                texts[i] += ev.text
            elif isinstance(ev, Finished):
                reasons[i], counts[i] = ev.reason, ev.completion_tokens
            else:
                raise generation_error(ev.error)
    finally:
        if watcher is not None:
            watcher.cancel()
    return texts, reasons, counts


async def cancel_on_disconnect(request: Any, gen: Generation) -> None:
    """Cancel ``gen`` when the client goes away (the body has been read already)."""
    with contextlib.suppress(Exception):  # a server that cannot tell: nothing to cancel
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gen.cancel()


def generation_error(exc: BaseException) -> APIError:
    """A sequence's failure as the client sees it: its own bad input (400) or ours (500)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, SequenceRejected):
        return APIError(400, f"request refused: {exc}", param=exc.param)
    return APIError(500, f"generation failed: {type(exc).__name__}: {exc}", type="server_error")
