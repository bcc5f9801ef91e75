"""OpenAI-compatible HTTP server (FastAPI + uvicorn) over the shared inference engine.

Endpoints: ``GET /health`` (always open, says only ``ok``), ``GET /v1/models``, ``POST
/v1/chat/completions`` (with ``image_url`` content parts for vision-language models) and ``POST
/v1/completions`` (both with SSE streaming). With an API key, every other path needs it,
``/openapi.json`` included. Models are known by short ids (a folder's name, never its path).

Every request goes to the engine's batch worker, so concurrent requests are decoded together.
Errors always come back in OpenAI's ``{"error": {...}}`` shape with a 4xx status for client
mistakes; a bad request fails alone and never takes the server down, and a request's slot in
the concurrency limit comes back however it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from tunesmith.infer.batching import SequenceRejected
from tunesmith.infer.decode import Delta, Failed, Finished
from tunesmith.infer.protocol import (
    MAX_IMAGE_PIXELS,
    APIError,
    ChatMessage,
    ChatPlan,
    ChatRequest,
    CompletionRequest,
    chat_message,
    check_prompt,
    parse,
    plan_chat,
    public_names,
    resolve_model,
    token_budget,
    usage,
)


@dataclass
class Limits:
    """What one request may ask for, and how many may run at once."""

    max_body_bytes: int = 1 << 20
    max_tokens: int = 4096
    default_max_tokens: int = 512
    max_concurrent: int = 256
    max_sequences: int = 64  # prompts x n in one request
    max_images: int = 8  # image_url parts in one chat request
    allow_remote_images: bool = False  # download http(s) image URLs (refused by default)
    image_dirs: tuple[str, ...] = ()  # folders whose files clients may name (none: base64 only)
    max_image_pixels: int = MAX_IMAGE_PIXELS  # width x height of one image, from its header


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


class RequireKey:
    """ASGI middleware: ``Authorization: Bearer KEY`` on every path but ``open_paths``.

    Plain ASGI rather than an HTTP middleware, so client disconnects reach the endpoints.
    """

    def __init__(self, app: Any, *, key: str, open_paths: tuple[str, ...] = ("/health",)) -> None:
        self.app, self.key, self.open_paths = app, key.encode(), open_paths

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in self.open_paths:
            header = dict(scope.get("headers") or []).get(b"authorization", b"")
            given = header[7:] if header[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(given, self.key):
                err = APIError(
                    401,
                    "invalid or missing API key (Authorization: Bearer KEY)",
                    code="invalid_api_key",
                )
                headers = {"WWW-Authenticate": "Bearer"}
                await JSONResponse(err.body(), status_code=401, headers=headers)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


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


# -- request preparation ---------------------------------------------------------------------
async def read_json(request: Any, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413)."""
    declared = request.headers.get("content-length")
    too_big = APIError(413, f"request body is larger than {limit} bytes", code="body_too_large")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_big
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    return body


def sse(obj: Any) -> str:
    """One server-sent event."""
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def guard(endpoint: Any) -> Any:
    """Turn unexpected errors into OpenAI-shaped 500s (the connection stays healthy)."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Any:
        try:
            return await endpoint(request)
        except APIError:
            raise
        except Exception as exc:
            msg = f"internal error: {type(exc).__name__}: {exc}"
            raise APIError(500, msg, type="server_error") from exc

    return wrapper


def with_system(engine: Any, req: ChatRequest) -> ChatRequest:
    """``req`` with the run's system prompt first, as chat has it, unless it brings its own."""
    system = getattr(engine, "system_prompt", None)
    if not system or (req.messages and req.messages[0].role in ("system", "developer")):
        return req
    head = ChatMessage(role="system", content=system)
    return req.model_copy(update={"messages": [head, *req.messages]})


def stops(engine: Any, params: Any) -> Any:
    """``params`` that also stop on the template's end-of-turn strings (see ``Engine``)."""
    add = getattr(engine, "with_stops", None)
    return add(params) if add is not None else params


# -- the app ---------------------------------------------------------------------------------
def create_app(engine: Any, *, api_key: str | None = None, limits: Limits | None = None) -> Any:
    """The FastAPI application serving ``engine``."""
    limits = limits or Limits()
    gate = Gate(limits.max_concurrent)
    app = FastAPI(title="tunesmith", docs_url=None, redoc_url=None)
    app.state.gate = gate  # requests in flight, for tests and benchmarks
    names = public_names(engine)
    image_dirs = [Path(d).resolve() for d in limits.image_dirs]
    created = int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(_: Any, exc: APIError) -> Any:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Any, exc: HTTPException) -> Any:
        err = APIError(
            exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None
        )
        return JSONResponse(err.body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Any, exc: RequestValidationError) -> Any:
        return JSONResponse(APIError(400, f"invalid request: {exc.errors()[:1]}").body(), 400)

    @app.exception_handler(Exception)
    async def _crash(_: Any, exc: Exception) -> Any:
        err = APIError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error")
        return JSONResponse(err.body(), status_code=500)

    if api_key:
        app.add_middleware(RequireKey, key=api_key)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}  # for probes: nothing about the models or the load

    def model_card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": created, "owned_by": "tunesmith"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(n) for n in names]}

    @app.get("/v1/models/{name:path}")
    async def one_model(name: str) -> dict[str, Any]:
        resolve_model(engine, name, names)
        return model_card(name)

    @app.post("/v1/chat/completions")
    @guard
    async def chat(request: Request) -> Any:
        req = parse(ChatRequest, await read_json(request, limits.max_body_bytes))
        key = resolve_model(engine, req.model, names)
        budget = token_budget(req, limits.max_tokens, limits.default_max_tokens)
        if req.n > limits.max_sequences:
            raise APIError(
                400, f"n is {req.n}; this server allows {limits.max_sequences}", param="n"
            )
        plan_args = {
            "max_images": limits.max_images,
            "allow_remote_images": limits.allow_remote_images,
            "image_dirs": image_dirs,
            "max_image_pixels": limits.max_image_pixels,
        }
        # Rendering up to a body's worth of messages, or decoding (downloading) images, must
        # not stall the other requests' streams.
        plan = await asyncio.to_thread(plan_chat, engine, with_system(engine, req), **plan_args)
        pixels = plan.pixel_values
        items = [
            (plan.ids, stops(engine, req.gen_params(budget, i)), key, pixels) for i in range(req.n)
        ]
        gen = start_generation(engine, gate, items)
        streaming = False
        try:
            rid, now = "chatcmpl-" + uuid.uuid4().hex, int(time.time())
            head = {"id": rid, "created": now, "model": req.model}
            if req.stream:
                include = bool(req.stream_options and req.stream_options.include_usage)
                response = EventStream(stream_chat(gen, plan, head, include), gen.close)
                streaming = True  # the response closes it from now on
                return response
            texts, reasons, counts = await collect(gen, req.n, request)
        finally:
            if not streaming:
                gen.close()
        choices = []
        for i in range(req.n):
            msg, reason = chat_message(texts[i], plan, reasons[i])
            choices.append({"index": i, "message": msg, "finish_reason": reason, "logprobs": None})
        return {
            **head,
            "object": "chat.completion",
            "choices": choices,
            "usage": usage(len(plan.ids), sum(counts)),
        }

    @app.post("/v1/completions")
    @guard
    async def completions(request: Request) -> Any:
        req = parse(CompletionRequest, await read_json(request, limits.max_body_bytes))
        key = resolve_model(engine, req.model, names)
        budget = token_budget(req, limits.max_tokens, limits.default_max_tokens)
        if req.suffix or req.logprobs or (req.best_of or 1) > 1:
            raise APIError(400, "suffix, logprobs and best_of are not supported")
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if len(prompts) * req.n > limits.max_sequences:
            raise APIError(
                400,
                f"prompts x n is {len(prompts) * req.n}; this server allows "
                f"{limits.max_sequences} per request",
                param="prompt",
            )
        encoded = await asyncio.to_thread(lambda: [engine.encode(p) for p in prompts])
        for ids in encoded:
            check_prompt(engine, ids, param="prompt")
        items = [
            (ids, stops(engine, req.gen_params(budget, i)), key)
            for ids in encoded
            for i in range(req.n)
        ]
        rid, now = "cmpl-" + uuid.uuid4().hex, int(time.time())
        head = {"id": rid, "object": "text_completion", "created": now, "model": req.model}
        echo = [prompts[i // req.n] if req.echo else "" for i in range(len(items))]
        prompt_tokens = sum(len(x) for x in encoded)
        gen = start_generation(engine, gate, items)
        streaming = False
        try:
            if req.stream:
                include = bool(req.stream_options and req.stream_options.include_usage)
                body = stream_text(gen, head, echo, prompt_tokens, include)
                response = EventStream(body, gen.close)
                streaming = True  # the response closes it from now on
                return response
            texts, reasons, counts = await collect(gen, len(items), request)
        finally:
            if not streaming:
                gen.close()
        choices = [
            {"index": i, "text": echo[i] + texts[i], "finish_reason": reasons[i], "logprobs": None}
            for i in range(len(items))
        ]
        return {**head, "choices": choices, "usage": usage(prompt_tokens, sum(counts))}

    return app


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


# -- running ---------------------------------------------------------------------------------
class BackgroundServer:
    """uvicorn in a daemon thread (tests, benchmarks); ``port=0`` picks a free port."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.app = app
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        sock = self.server.servers[0].sockets[0]
        self.host, self.port = sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(
    engine: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    limits: Limits | None = None,
    log_level: str = "info",
) -> None:
    """Run the server in the foreground until interrupted."""
    import uvicorn

    app = create_app(engine, api_key=api_key, limits=limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
