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
import functools
import hmac
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tunesmith.infer.api_error import APIError
from tunesmith.infer.content_parts import MAX_IMAGE_PIXELS
from tunesmith.infer.inflight import Gate, collect, start_generation
from tunesmith.infer.protocol import (
    ChatMessage,
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
from tunesmith.infer.streaming import EventStream, stream_chat, stream_text


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
