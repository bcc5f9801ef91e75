"""Images for vision-language samples: load, validate, and reserve their tokens.

An image reference is what a converter leaves in ``Conversation.images``: an absolute local path,
a ``data:image/...;base64,...`` URI (OpenAI ``image_url`` parts), or a remote URL. Remote URLs are
refused unless explicitly allowed (``model.vision.allow_remote_images``): training data that
silently depends on the network is neither reproducible nor offline-safe.

In the token sequence each ``<image>`` placeholder becomes ``n`` image tokens (the number the
vision tower produces per image). They are expanded *before* the length policy is applied, so the
budget of ``max_length`` already counts them, and truncation only ever removes text: an image is
kept whole or (with its whole turn) not at all. Image tokens never carry loss.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunesmith.data.types import Conversation, Message
from tunesmith.errors import DataError

IMAGE_TOKEN = "<image>"
IGNORE_INDEX = -100
_REMOTE = re.compile(r"^(https?|s3|gs)://", re.IGNORECASE)
_DATA_URI = re.compile(r"^data:(?P<mime>[\w/+.-]*)?(?P<b64>;base64)?,", re.IGNORECASE)
#: Largest remote image downloaded (when remote images are allowed at all).
MAX_DOWNLOAD_BYTES = 64 << 20


def short_ref(ref: str) -> str:
    """A reference fit for a one-line message (base64 payloads are not printed)."""
    return ref.split(",", 1)[0] + ",..." if ref.startswith("data:") else ref


def is_remote(ref: str) -> bool:
    """Whether ``ref`` is a URL that would need the network."""
    return bool(_REMOTE.match(ref))


class ImageTooLarge(DataError):
    """An image whose header declares more pixels than allowed (refused before decoding)."""


def _open(
    ref: str,
    where: str,
    allow_remote: bool,
    max_pixels: int | None = None,
    formats: Sequence[str] | None = None,
) -> Any:
    """A lazily-decoded ``PIL.Image`` for ``ref`` (only the header is read so far).

    ``max_pixels``: refuse (``ImageTooLarge``) an image whose header declares more pixels;
    a few KiB of PNG may otherwise decode into gigabytes. ``formats``: the PIL formats tried
    (``None``: all of them).
    """
    from PIL import Image, UnidentifiedImageError

    label = f"{where}: image {short_ref(ref)}"
    source: Any
    if (m := _DATA_URI.match(ref)) is not None:
        if not m.group("b64"):
            raise DataError(f"{label}: a data URI must be base64 (data:image/png;base64,...)")
        try:
            source = io.BytesIO(base64.b64decode(ref[m.end() :], validate=True))
        except (binascii.Error, ValueError):
            raise DataError(f"{label}: invalid base64 data; re-encode the image") from None
    elif is_remote(ref):
        if not allow_remote:
            raise DataError(
                f"{label}: remote image URLs are refused; download the image and use a local "
                "path, or set model.vision.allow_remote_images: true"
            )
        source = io.BytesIO(_fetch(ref, label))
    elif ref.startswith("file://"):
        source = Path(ref.removeprefix("file://"))
    else:
        source = Path(ref)
    if isinstance(source, Path) and not source.is_file():
        raise DataError(f"{label}: file not found; fix the path or set media_dir")
    try:
        img = Image.open(source, formats=formats)
    except Image.DecompressionBombError as exc:  # PIL's own, far higher limit
        raise ImageTooLarge(f"{label}: too many pixels ({exc})") from None
    except (UnidentifiedImageError, OSError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if formats and isinstance(exc, UnidentifiedImageError):
            why = f"not one of {', '.join(formats)}"
        raise DataError(f"{label}: unreadable image ({why}); replace or remove it") from None
    width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        img.close()
        raise ImageTooLarge(
            f"{label}: {width}x{height} is {width * height:,} pixels, over the limit of "
            f"{max_pixels:,}; send a smaller image"
        )
    return img


def _fetch(url: str, label: str) -> bytes:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as resp:  # only when allowed by config
            data = resp.read(MAX_DOWNLOAD_BYTES + 1)
    except OSError as exc:
        raise DataError(f"{label}: download failed ({exc}); use a local copy") from None
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise DataError(f"{label}: more than {MAX_DOWNLOAD_BYTES} bytes; use a smaller image")
    return data


def load_image(
    ref: str,
    *,
    where: str = "image",
    allow_remote: bool = False,
    max_pixels: int | None = None,
    formats: Sequence[str] | None = None,
) -> Any:
    """Decode an image reference into an RGB ``PIL.Image``.

    Args:
        ref: A local path, a ``file://`` path, a base64 ``data:`` URI or (when allowed) a URL.
        where: The sample's location (``file:line``) for error messages.
        allow_remote: Download ``http(s)://`` images instead of refusing them.
        max_pixels: Refuse images whose header declares more pixels, before decoding them.
        formats: PIL format names to try (``None``: every format PIL reads).

    Raises:
        DataError: missing, unreadable or truncated image; remote URL not allowed; bad base64;
            ``ImageTooLarge`` over ``max_pixels``.
    """
    img = _open(ref, where, allow_remote, max_pixels, formats)
    try:
        img.load()
        return img.convert("RGB")
    except OSError as exc:  # truncated or corrupt pixel data behind a valid header
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"{where}: image {short_ref(ref)}: unreadable image ({why}); replace or remove it"
        ) from None


def check_image(ref: str, *, where: str = "image", allow_remote: bool = False) -> None:
    """Cheap validation (format header and size) of one image; raises like ``load_image``."""
    img = _open(ref, where, allow_remote)
    width, height = img.size
    if width < 1 or height < 1:
        raise DataError(f"{where}: image {short_ref(ref)} is empty ({width}x{height})")


def check_conversation(conv: Conversation, where: str, *, allow_remote: bool = False) -> None:
    """One ``<image>`` per image, and every image readable.

    Raises:
        DataError: naming the sample (``where``) and the problem.
    """
    count = sum(m.content.count(IMAGE_TOKEN) for m in conv.messages)
    if count != len(conv.images):
        raise DataError(
            f"{where}: {count} {IMAGE_TOKEN} placeholder(s) in the text but {len(conv.images)} "
            f"image(s); put exactly one {IMAGE_TOKEN} in the text for each image"
        )
    for ref in conv.images:
        check_image(ref, where=where, allow_remote=allow_remote)


def kept_images(conv: Conversation, messages: Sequence[Message]) -> list[str]:
    """The images whose placeholders sit in ``messages`` (a subset of ``conv.messages``).

    Whole-turn truncation drops messages; their images must go with them, in order.
    """
    if not conv.images:
        return []
    keep = {id(m) for m in messages}
    out: list[str] = []
    pos = 0
    for m in conv.messages:
        n = m.content.count(IMAGE_TOKEN)
        if id(m) in keep:
            out += conv.images[pos : pos + n]
        pos += n
    return out


def expand_image_tokens(
    ids: list[int],
    labels: list[int],
    weights: list[float] | None,
    *,
    image_id: int,
    per_image: int,
    n_images: int,
    where: str,
) -> tuple[list[int], list[int], list[float] | None]:
    """Replace every image token by ``per_image`` copies that carry no loss.

    Raises:
        DataError: the tokenised text does not hold exactly ``n_images`` single image tokens
            (the tokenizer splits ``<image>``, or the text already holds expanded tokens).
    """
    found = ids.count(image_id)
    if found != n_images:
        raise DataError(
            f"{where}: {found} {IMAGE_TOKEN} token(s) after tokenisation but {n_images} image(s); "
            f"the tokenizer must keep {IMAGE_TOKEN} as one special token, and the text must not "
            "hold pre-expanded image tokens"
        )
    out_ids: list[int] = []
    out_labels: list[int] = []
    out_weights: list[float] | None = [] if weights is not None else None
    for i, t in enumerate(ids):
        if t == image_id:
            out_ids += [image_id] * per_image
            out_labels += [IGNORE_INDEX] * per_image
            if out_weights is not None:
                out_weights += [0.0] * per_image
        else:
            out_ids.append(t)
            out_labels.append(labels[i])
            if out_weights is not None and weights is not None:
                out_weights.append(weights[i])
    return out_ids, out_labels, out_weights


def truncate_keeping_images(
    ids: list[int],
    labels: list[int],
    weights: list[float] | None,
    *,
    image_id: int,
    max_length: int,
    left: bool,
) -> tuple[list[int], list[int], list[float] | None] | None:
    """Cut text tokens (never image tokens) until ``max_length`` fits.

    ``left`` keeps the last text tokens, otherwise the first ones. Returns ``None`` when the image
    tokens alone exceed ``max_length``.
    """
    image_pos = [i for i, t in enumerate(ids) if t == image_id]
    if not image_pos:
        sl = slice(len(ids) - max_length, None) if left else slice(0, max_length)
        return ids[sl], labels[sl], weights[sl] if weights is not None else None
    budget = max_length - len(image_pos)
    if budget < 0:
        return None
    text_pos = [i for i, t in enumerate(ids) if t != image_id]
    first = len(text_pos) - budget if left else 0
    kept_text = text_pos[first : first + budget]
    keep = sorted([*image_pos, *kept_text])
    return (
        [ids[i] for i in keep],
        [labels[i] for i in keep],
        [weights[i] for i in keep] if weights is not None else None,
    )


def pixel_values(
    refs: Sequence[str], image_processor: Any, *, where: str = "batch", allow_remote: bool = False
) -> Any:
    """Load and preprocess images into one ``[n, 3, H, W]`` float tensor (in order)."""
    images = [load_image(r, where=where, allow_remote=allow_remote) for r in refs]
    return image_processor(images=images, return_tensors="pt")["pixel_values"]
