"""OpenAI content parts of chat messages: ``text`` and ``image_url``.

Each image part becomes an ``<image>`` placeholder at its place in the text, and its image is
decoded for the vision-language model's processor. Images come as ``data:image/...;base64`` URIs;
``file://`` URLs and paths only from under the server's image directories (anything else is the
same refusal, so a client learns nothing about which paths exist), ``http(s)`` URLs only when the
server allows them; every image is checked against the pixel limit from its header before it is
decoded. A problem is a 400 naming ``messages[i].content[j]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.infer.api_error import APIError

IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class ImagePart:
    """An ``image_url`` content part: its reference and where it sits in the request."""

    ref: str
    where: str  # messages[i].content[j]


def has_image_parts(messages: list[dict[str, Any]]) -> bool:
    """Whether any message holds an ``image_url`` (or ``image``) content part (cheap check)."""
    return any(
        isinstance(part, dict) and part.get("type") in ("image_url", "image")
        for m in messages
        if isinstance(m.get("content"), list)
        for part in m["content"]
    )


def split_image_parts(
    messages: list[dict[str, Any]], *, takes_images: bool, model: str
) -> tuple[list[dict[str, Any]], list[ImagePart]]:
    """Messages with every image part replaced by an ``<image>`` text part, and the images.

    Raises:
        APIError: 400 for images sent to a text-only ``model``, an image outside a user
            message, a malformed part, or (for a vision-language model) text that holds the
            ``<image>`` placeholder itself.
    """
    out: list[dict[str, Any]] = []
    images: list[ImagePart] = []
    for i, m in enumerate(messages):
        content = m.get("content")
        if isinstance(content, str):
            if takes_images and IMAGE_TOKEN in content:
                _literal_placeholder(f"messages[{i}].content")
            out.append(m)
            continue
        if not isinstance(content, list):
            out.append(m)
            continue
        parts: list[Any] = []
        for j, part in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise APIError(400, f"{where}: a text part needs a string 'text'", param=where)
                if takes_images and IMAGE_TOKEN in text:
                    _literal_placeholder(where)
                parts.append(part)
            elif kind in ("image_url", "image"):
                if not takes_images:
                    raise APIError(
                        400,
                        f"{where}: model {model!r} is text-only and does not accept images",
                        param=where,
                        code="images_not_supported",
                    )
                if m.get("role") != "user":
                    raise APIError(
                        400, f"{where}: images are accepted in user messages only", param=where
                    )
                images.append(ImagePart(_image_ref(part, where), where))
                parts.append({"type": "text", "text": IMAGE_TOKEN})
            else:
                raise APIError(
                    400,
                    f"{where}: content part of type {kind!r} is not supported (text and image_url)",
                    param=where,
                )
        out.append({**m, "content": parts})
    return out, images


def _literal_placeholder(where: str) -> None:
    raise APIError(
        400,
        f"{where}: the text holds {IMAGE_TOKEN!r}, this model's image placeholder; send images "
        "as image_url content parts",
        param=where,
    )


def _image_ref(part: dict[str, Any], where: str) -> str:
    value = part.get("image_url", part.get("image"))
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url.strip():
        raise APIError(
            400, f"{where}: an image_url part needs {{'image_url': {{'url': ...}}}}", param=where
        )
    return url.strip()


def _file_path(ref: str) -> str | None:
    """The path a local reference names: itself, or a ``file://`` URL's (``None``: other host)."""
    from urllib.parse import unquote, urlsplit

    if ref[:7].lower() != "file://":
        return ref
    url = urlsplit(ref)
    return unquote(url.path) if url.netloc in ("", "localhost") else None


def server_file(ref: str, image_dirs: Sequence[str | Path], *, label: str, where: str) -> str:
    """The real path of a server-side image a client names, if it lies under ``image_dirs``.

    Symlinks and ``..`` are resolved before the check; a relative path is looked up under each
    directory in turn. Anything outside gets the same refusal whether it exists or not, so a
    client learns nothing about the rest of the server's files.

    Raises:
        APIError: 400, ``local_image_refused`` outside the directories (or when there are
            none), ``image_not_found`` for a missing file inside them.
    """
    why = (
        "only files under this server's image directories may be named; send the image as a "
        "base64 data: URI"
        if image_dirs
        else "this server reads no files for clients; send the image as a base64 data: URI "
        "(or start the server with --image-dir DIR)"
    )
    refused = APIError(400, f"{label}: {why}", param=where, code="local_image_refused")
    path = _file_path(ref)
    if not image_dirs or not path:
        raise refused
    dirs = [Path(d).resolve() for d in image_dirs]
    found_inside = False
    for candidate in [Path(path)] if Path(path).is_absolute() else [d / path for d in dirs]:
        try:
            real = candidate.resolve()
            if not any(real.is_relative_to(d) for d in dirs):
                continue
            found_inside = True
            if real.is_file():
                return str(real)
        except (OSError, RuntimeError, ValueError):  # a loop, a NUL byte, a name too long
            continue
    if found_inside:
        raise APIError(
            400,
            f"{label}: no such file in this server's image directories",
            param=where,
            code="image_not_found",
        )
    raise refused


#: Default cap on one image's pixels (4096 x 4096), checked in its header before decoding.
MAX_IMAGE_PIXELS = 4096 * 4096
#: Formats decoded for clients (a camera's MPO is a JPEG to PIL); rarer decoders stay unreachable.
CLIENT_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")


def load_images(
    parts: list[ImagePart],
    *,
    allow_remote: bool = False,
    image_dirs: Sequence[str | Path] = (),
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> list[Any]:
    """Decode the images of a request (RGB ``PIL.Image``), in order.

    Args:
        parts: The request's image parts.
        allow_remote: Download ``http(s)`` URLs instead of refusing them.
        image_dirs: Server folders whose files clients may name (none: base64 only).
        max_pixels: Largest width x height accepted, read from the header before decoding.

    Raises:
        APIError: 400 naming the part for a remote URL (unless ``allow_remote``), a file
            outside ``image_dirs`` (see :func:`server_file`), bad base64, an image over
            ``max_pixels`` (``image_too_large``) or an unreadable image.
    """
    from tunesmith.data.images import ImageTooLarge, is_remote, load_image, short_ref
    from tunesmith.errors import TunesmithError

    out = []
    for p in parts:
        label = f"{p.where}: image {short_ref(p.ref)[:200]}"
        if is_remote(p.ref) and not allow_remote:
            raise APIError(
                400,
                f"{label}: remote image URLs are refused by this server; send the image as a "
                "base64 data: URI (or start the server with --allow-remote-images)",
                param=p.where,
                code="remote_image_refused",
            )
        ref = p.ref
        if ref[:5].lower() != "data:" and not is_remote(ref):
            ref = server_file(ref, image_dirs, label=label, where=p.where)
        try:
            out.append(
                load_image(
                    ref,
                    where=p.where,
                    allow_remote=allow_remote,
                    max_pixels=max_pixels,
                    formats=CLIENT_IMAGE_FORMATS,
                )
            )
        except TunesmithError as exc:
            # Told with the client's own reference, not the resolved server path.
            msg = str(exc).replace(f"{p.where}: image {short_ref(ref)}", label)
            msg = msg.replace(ref, short_ref(p.ref)[:200])
            code = "image_too_large" if isinstance(exc, ImageTooLarge) else "invalid_image"
            raise APIError(400, msg, param=p.where, code=code) from None
        except Exception as exc:  # e.g. PIL's DecompressionBombError
            why = str(exc).replace(ref, short_ref(p.ref)[:200])
            raise APIError(
                400, f"{label}: unreadable image ({why})", param=p.where, code="invalid_image"
            ) from None
    return out
