"""Server-sent-event responses: chat and text completions as OpenAI's stream chunks.

An ``EventStream`` closes its generation however the response ends (sent, the client gone, the
task cancelled, an error while streaming); a generation error becomes one error event.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import StreamingResponse

from tunesmith.infer.decode import Delta, Finished
from tunesmith.infer.inflight import Generation, generation_error
from tunesmith.infer.protocol import ChatPlan, chat_message, usage


class EventStream(StreamingResponse):
    """An SSE response that closes its generation however it ends: sent, the client gone,
    the task cancelled, or an error while streaming."""

    def __init__(self, body: AsyncIterator[str], close: Callable[[], None]) -> None:
        super().__init__(
            body, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
        self._close = close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._close()
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


def sse(obj: Any) -> str:
    """One server-sent event."""
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _error_event(exc: BaseException) -> str:
    return sse(generation_error(exc).body())


async def stream_chat(
    gen: Generation, plan: ChatPlan, head: dict[str, Any], include_usage: bool
) -> AsyncIterator[str]:
    """SSE chunks of a chat completion; tool calls are sent whole when the answer ends."""
    base = {**head, "object": "chat.completion.chunk"}

    def chunk(i: int, delta: dict[str, Any], reason: str | None = None) -> str:
        return sse(
            {
                **base,
                "choices": [
                    {"index": i, "delta": delta, "finish_reason": reason, "logprobs": None}
                ],
            }
        )

    n = len(gen.requests)
    texts, sent, completion = [""] * n, [0] * n, 0
    try:
        for i in range(n):
            yield chunk(i, {"role": "assistant", "content": ""})
        async for i, ev in gen.events(coalesce=True):
            if isinstance(ev, Delta):
                texts[i] += ev.text
                upto = _streamable(texts[i], plan)
                if upto > sent[i]:
                    yield chunk(i, {"content": texts[i][sent[i] : upto]})
                    sent[i] = upto
            elif isinstance(ev, Finished):
                completion += ev.completion_tokens
                msg, reason = chat_message(texts[i], plan, ev.reason)
                if msg.get("tool_calls"):
                    calls = [{"index": k, **c} for k, c in enumerate(msg["tool_calls"])]
                    yield chunk(i, {"tool_calls": calls})
                else:
                    # With a forced prefix nothing was streamed yet (sent == 0).
                    rest = (msg["content"] or "")[sent[i] :]
                    if rest:
                        yield chunk(i, {"content": rest})
                yield chunk(i, {}, reason)
            else:
                yield _error_event(ev.error)
                break
        if include_usage:
            yield sse({**base, "choices": [], "usage": usage(len(plan.ids), completion)})
        yield "data: [DONE]\n\n"
    finally:
        gen.close()


def _streamable(text: str, plan: ChatPlan) -> int:
    """How much of ``text`` may be streamed as content before the answer is complete."""
    if not plan.tool_names:
        return len(text)
    if plan.prefix or text.lstrip().startswith("{"):
        return 0  # the whole answer may be a call: wait for the end
    marker = "<tool_call>"
    at = text.find(marker)
    if at >= 0:
        return at
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return len(text) - k
    return len(text)


async def stream_text(
    gen: Generation,
    head: dict[str, Any],
    echo: list[str],
    prompt_tokens: int,
    include_usage: bool,
) -> AsyncIterator[str]:
    """SSE chunks of a text completion."""
    completion = 0
    try:
        for i, e in enumerate(echo):
            if e:
                yield sse({**head, "choices": [{"index": i, "text": e, "finish_reason": None}]})
        async for i, ev in gen.events(coalesce=True):
            if isinstance(ev, Delta):
                yield sse(
                    {
                        **head,
                        "choices": [
                            {"index": i, "text": ev.text, "finish_reason": None, "logprobs": None}
                        ],
                    }
                )
            elif isinstance(ev, Finished):
                completion += ev.completion_tokens
                yield sse(
                    {
                        **head,
                        "choices": [
                            {"index": i, "text": "", "finish_reason": ev.reason, "logprobs": None}
                        ],
                    }
                )
            else:
                yield _error_event(ev.error)
                break
        if include_usage:
            yield sse({**head, "choices": [], "usage": usage(prompt_tokens, completion)})
        yield "data: [DONE]\n\n"
    finally:
        gen.close()
