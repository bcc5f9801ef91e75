"""OpenAI-compatible request schemas, and how a request becomes the engine's inputs.

Requests are validated here (types, ranges); unknown fields are ignored so newer clients keep
working. Responses are plain dicts built in ``server.py`` and ``streaming.py``, with OpenAI's field
names.

User messages may carry OpenAI content parts (``text`` and ``image_url``): ``content_parts.py``
turns them into placeholders and decoded images; the error shape is ``api_error.py``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tunesmith.errors import ConfigError
from tunesmith.infer.api_error import APIError
from tunesmith.infer.content_parts import MAX_IMAGE_PIXELS, load_images, split_image_parts
from tunesmith.infer.sampling import GenParams
from tunesmith.infer.tools import parse_tool_calls, to_template_messages


class _Req(BaseModel):
    # NaN and infinities (which Python's JSON accepts) slip past range checks: refused.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class FunctionCall(_Req):
    """A call in an assistant message sent back by the client."""

    name: str
    arguments: str | dict[str, Any] = ""


class ToolCallIn(_Req):
    """``tool_calls`` entry of an assistant message."""

    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Req):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None


class FunctionDef(_Req):
    """A function the model may call."""

    name: str = Field(..., min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Req):
    """A tool definition (functions only)."""

    type: Literal["function"] = "function"
    function: FunctionDef


class NamedToolChoice(_Req):
    """``{"type": "function", "function": {"name": ...}}``."""

    type: Literal["function"] = "function"
    function: dict[str, str]


class StreamOptions(_Req):
    """``stream_options``."""

    include_usage: bool = False


MIN_TEMPERATURE = 1e-5
MAX_STOP_CHARS = 256


class _Sampling(_Req):
    """Fields shared by chat and text completions."""

    model: str
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, description="Extension: 0 = off.")
    repetition_penalty: float = Field(1.0, ge=0.01, le=10, description="Extension.")
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    # int64, as OpenAI's; choice i uses seed + i, still inside what torch's generators accept.
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    logprobs: Any = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty")
        if any(len(s) > MAX_STOP_CHARS for s in stops):
            # Each token checks every prefix of every stop: long ones would stall the batch.
            raise ValueError(f"stop sequences are at most {MAX_STOP_CHARS} characters")
        return stops

    def gen_params(self, max_tokens: int, index: int = 0) -> GenParams:
        """Engine parameters for choice ``index`` (seeded choices differ but repeat).

        Temperatures below ``MIN_TEMPERATURE`` are greedy: sampling at them picks the arg-max
        anyway, and far below it the float32 division overflows to garbage.
        """
        return GenParams(
            max_new_tokens=max_tokens,
            temperature=self.temperature if self.temperature >= MIN_TEMPERATURE else 0.0,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            stop=list(self.stop or []),
            seed=None if self.seed is None else self.seed + index,
        )


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    """``POST /v1/completions``."""

    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not v:
            raise ValueError("at least one prompt")
        for i, p in enumerate([v] if isinstance(v, str) else v):
            if not p:
                what = "the prompt" if isinstance(v, str) else f"prompt {i}"
                raise ValueError(f"{what} is empty; give some text to complete")
        return v


# -- requests -> engine inputs, answers -> messages --------------------------------------------
def parse(model: Any, raw: bytes) -> Any:
    """Validate a JSON body with a pydantic model; errors become one-line 400s."""
    from pydantic import ValidationError

    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = err.get("msg", "invalid request")
        raise APIError(400, f"{loc}: {msg}" if loc else msg, param=loc or None) from None


def public_names(engine: Any) -> dict[str, str]:
    """Model ids clients see, each mapped to the engine's name for it.

    A model loaded from a local path is known by its folder's name: the server's directory
    layout is nobody else's business. Hub ids and ``builtin:`` names stay as they are.

    Raises:
        ConfigError: two models would get the same id.
    """
    out: dict[str, str] = {}
    for name in engine.model_names():
        short = name
        if not name.startswith("builtin:"):
            p = Path(name)
            if p.is_absolute() or p.exists():
                short = p.resolve().name or name
        if short in out:
            raise ConfigError(
                f"{out[short]!r} and {name!r} would both be served as {short!r}; name the "
                "adapter differently (--adapter NAME=PATH)"
            )
        out[short] = name
    return out


def resolve_model(engine: Any, name: str, names: dict[str, str] | None = None) -> str | None:
    """Adapter key for a requested model id (404 if unknown).

    ``names``: the public ids (see :func:`public_names`); ``None`` takes the engine's own.
    """
    if names is not None:
        if name not in names:
            raise APIError(
                404,
                f"model {name[:100]!r} not found; available: {', '.join(names)}",
                param="model",
                code="model_not_found",
            )
        name = names[name]
    try:
        return engine.adapter_key(name)
    except ConfigError as exc:
        raise APIError(404, str(exc), param="model", code="model_not_found") from None


def token_budget(req: Any, limit: int, default: int) -> int:
    """``max_tokens`` for this request, checked against the server's limit."""
    asked = getattr(req, "max_completion_tokens", None) or req.max_tokens
    if asked is None:
        return default
    if asked > limit:
        raise APIError(
            400,
            f"max_tokens {asked} exceeds this server's limit {limit}",
            param="max_tokens",
        )
    return asked


def check_prompt(engine: Any, ids: list[int], param: str = "messages") -> None:
    """400 when a prompt has no tokens or does not fit the model's context."""
    if not ids:
        raise APIError(400, f"{param}: the prompt encodes to no tokens", param=param)
    try:
        engine.check_prompt(ids)
    except ConfigError as exc:
        raise APIError(400, str(exc), param=param, code="context_length_exceeded") from None


@dataclass
class ChatPlan:
    """A validated chat request, ready to submit."""

    ids: list[int]
    tool_names: set[str]
    prefix: str  # forced start of the answer (tool_choice), part of the answer text
    pixel_values: Any = None  # the images' tensor (vision-language models), in prompt order


def plan_chat(
    engine: Any,
    req: ChatRequest,
    *,
    max_images: int = 8,
    allow_remote_images: bool = False,
    image_dirs: Sequence[str | Path] = (),
    max_image_pixels: int = MAX_IMAGE_PIXELS,
) -> ChatPlan:
    """Render the prompt; apply ``tools`` and ``tool_choice``; decode the request's images."""
    if req.logprobs:
        raise APIError(400, "logprobs are not supported by this server", param="logprobs")
    if req.response_format and req.response_format.get("type") not in (None, "text"):
        raise APIError(
            400, "only response_format type 'text' is supported", param="response_format"
        )
    choice = req.tool_choice
    tools = [t.model_dump(exclude_none=True) for t in req.tools or []]
    names = {t["function"]["name"] for t in tools}
    if choice == "none" or not tools:
        if choice not in (None, "none", "auto"):
            raise APIError(400, "tool_choice needs 'tools'", param="tool_choice")
        tools, names = [], set()
    prefix = ""
    if tools and choice not in (None, "auto"):
        fmt = engine.tool_format
        if fmt is None:
            raise APIError(
                400, "this model's chat template has no tool-call format", param="tool_choice"
            )
        forced = None if choice == "required" else choice.function.get("name")
        if forced is not None and forced not in names:
            raise APIError(
                400, f"tool_choice names {forced!r}, which is not in tools", param="tool_choice"
            )
        prefix = fmt.forced_prefix(forced)
    raw, parts = split_image_parts(
        [m.model_dump(exclude_none=True) for m in req.messages],
        takes_images=bool(getattr(engine, "takes_images", False)),
        model=req.model,
    )
    if len(parts) > max_images:
        raise APIError(
            400,
            f"{len(parts)} images in this request; this server allows {max_images} per request",
            param="messages",
            code="too_many_images",
        )
    images = load_images(
        parts, allow_remote=allow_remote_images, image_dirs=image_dirs, max_pixels=max_image_pixels
    )
    pixels = None
    try:
        messages = to_template_messages(raw)
        if images:
            ids, pixels = engine.prompt_inputs(messages, tools or None, prefix, images)
        else:
            ids = engine.prompt_ids(messages, tools or None, prefix)
    except ConfigError as exc:
        raise APIError(400, str(exc), param="messages") from None
    except Exception as exc:  # jinja raise_exception() and template errors
        raise APIError(
            400, f"messages: the chat template refused them ({exc})", param="messages"
        ) from None
    check_prompt(engine, ids)
    return ChatPlan(ids, names, prefix, pixels)


def chat_message(text: str, plan: ChatPlan, reason: str) -> tuple[dict[str, Any], str]:
    """The assistant message for a finished answer, with tool calls parsed out."""
    if plan.tool_names:
        content, calls = parse_tool_calls(plan.prefix + text, plan.tool_names)
        if calls:
            msg = {
                "role": "assistant",
                "content": content,
                "tool_calls": [c.to_openai() for c in calls],
            }
            return msg, "tool_calls"
        text = plan.prefix + text
    return {"role": "assistant", "content": text}, reason


def usage(prompt: int, completion: int) -> dict[str, int]:
    """OpenAI's ``usage`` object."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
