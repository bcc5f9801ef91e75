"""OpenAI content parts: text and image_url parts become placeholders plus decoded images."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest

from tunesmith.infer.api_error import APIError
from tunesmith.infer.content_parts import ImagePart, has_image_parts, load_images, split_image_parts
from tunesmith.infer.protocol import ChatRequest, plan_chat
from tunesmith.infer.server import Limits


def png_bytes(rgb: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(rgb: tuple[int, int, int]) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode()


def image(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


PART0 = "messages[0].content[0]"


def split(messages: list[dict[str, Any]], takes_images: bool = True) -> Any:
    return split_image_parts(messages, takes_images=takes_images, model="tiny")


def test_image_parts_become_placeholders_in_place() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare "},
                image("/a.png", detail="low"),
                {"type": "text", "text": " and "},
                {"type": "image_url", "image_url": "file:///b.png"},  # a bare string works too
            ],
        },
    ]
    out, parts = split(messages)
    assert out[0] == messages[0]
    assert [p["text"] for p in out[1]["content"]] == ["Compare ", "<image>", " and ", "<image>"]
    assert parts == [
        ImagePart("/a.png", "messages[1].content[1]"),
        ImagePart("file:///b.png", "messages[1].content[3]"),
    ]
    assert has_image_parts(messages) and not has_image_parts(messages[:1])


def test_text_only_models_refuse_images_naming_the_model() -> None:
    with pytest.raises(APIError) as info:
        split([{"role": "user", "content": [image("/a.png")]}], takes_images=False)
    assert info.value.status == 400 and "'tiny'" in info.value.message
    assert info.value.param == "messages[0].content[0]"
    # Text parts still work on a text model, and "<image>" is plain text there.
    out, parts = split(
        [{"role": "user", "content": [{"type": "text", "text": "<image>"}]}], takes_images=False
    )
    assert parts == [] and out[0]["content"][0]["text"] == "<image>"


@pytest.mark.parametrize(
    ("message", "param", "words"),
    [
        ({"role": "assistant", "content": [image("/a.png")]}, "messages[0].content[0]", "user"),
        ({"role": "user", "content": [{"type": "input_audio"}]}, "messages[0].content[0]", "type"),
        ({"role": "user", "content": [{"type": "image_url"}]}, "messages[0].content[0]", "url"),
        (
            {"role": "user", "content": [{"type": "text", "text": 3}]},
            "messages[0].content[0]",
            "str",
        ),
        ({"role": "user", "content": ["hi"]}, "messages[0].content[0]", "None"),
        ({"role": "user", "content": "look: <image>"}, "messages[0].content", "image_url"),
        (
            {"role": "user", "content": [{"type": "text", "text": "<image>"}]},
            "messages[0].content[0]",
            "placeholder",
        ),
    ],
)
def test_malformed_parts_are_400s_naming_the_part(
    message: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(APIError) as info:
        split([message])
    assert info.value.status == 400 and info.value.param == param
    assert words in info.value.message


def test_images_load_from_data_uris_file_urls_and_paths(tmp_path: Path) -> None:
    (tmp_path / "b.png").write_bytes(png_bytes((0, 0, 255), (5, 7)))
    parts = [
        ImagePart(data_uri((255, 0, 0)), "messages[0].content[0]"),
        ImagePart(f"file://{tmp_path / 'b.png'}", "messages[0].content[1]"),
        ImagePart(str(tmp_path / "b.png"), "messages[0].content[2]"),
    ]
    images = load_images(parts, image_dirs=[tmp_path])
    assert [im.size for im in images] == [(8, 6), (5, 7), (5, 7)]
    assert all(im.mode == "RGB" for im in images)
    assert images[0].getpixel((0, 0)) == (255, 0, 0)


def test_remote_urls_are_refused_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    import tunesmith.data.images as images_mod

    fetched: list[str] = []
    monkeypatch.setattr(
        images_mod, "_fetch", lambda url, label: fetched.append(url) or png_bytes((1, 2, 3))
    )
    part = ImagePart("https://example.com/cat.png", "messages[2].content[1]")
    with pytest.raises(APIError) as info:
        load_images([part])
    assert info.value.status == 400 and info.value.param == "messages[2].content[1]"
    assert info.value.code == "remote_image_refused" and "--allow-remote-images" in str(info.value)
    assert fetched == []  # refused before any network access
    (got,) = load_images([part], allow_remote=True)
    assert fetched == [part.ref] and got.getpixel((0, 0)) == (1, 2, 3)


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ("/no/such/file.png", "data: URI"),
        ("data:image/png;base64,!!!notbase64", "base64"),
        ("data:image/png," + "x" * 10, "base64"),
        ("data:image/png;base64," + base64.b64encode(b"not an image").decode(), "unreadable"),
    ],
)
def test_unreadable_images_are_400s_naming_the_part(ref: str, words: str) -> None:
    with pytest.raises(APIError) as info:
        load_images([ImagePart(ref, "messages[0].content[1]")])
    assert info.value.status == 400 and info.value.param == "messages[0].content[1]"
    assert words in info.value.message and info.value.message.startswith("messages[0].content[1]")
    assert len(info.value.message) < 400  # base64 payloads are not echoed back


def test_a_text_file_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(APIError, match=r"messages\[0\]\.content\[0\].*unreadable"):
        load_images(
            [ImagePart(str(tmp_path / "notes.png"), "messages[0].content[0]")],
            image_dirs=[tmp_path],
        )


def refusal(ref: str, **kw: Any) -> APIError:
    """The error for one image part, with the part's own reference blanked out."""
    with pytest.raises(APIError) as info:
        load_images([ImagePart(ref, PART0)], **kw)
    err = info.value
    assert err.status == 400 and err.param == PART0 and "\n" not in err.message
    err.message = err.message.replace(ref, "REF")
    return err


def test_local_paths_are_refused_by_default_whether_or_not_they_exist(tmp_path: Path) -> None:
    (tmp_path / "cat.png").write_bytes(png_bytes((1, 2, 3)))
    (tmp_path / "notes.txt").write_text("not an image")
    refs = [
        str(tmp_path / "cat.png"),
        str(tmp_path / "missing.png"),
        str(tmp_path / "notes.txt"),
        str(tmp_path),
        f"file://{tmp_path / 'cat.png'}",
        f"file://{tmp_path / 'missing.png'}",
        "/etc/passwd",
        "cat.png",
    ]
    errors = [refusal(ref) for ref in refs]
    assert {(e.message, e.code) for e in errors} == {(errors[0].message, "local_image_refused")}
    assert "data: URI" in errors[0].message and "--image-dir" in errors[0].message


def test_image_dirs_allow_files_under_them_only(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / "a b.png").write_bytes(png_bytes((10, 0, 0)))
    (allowed / "sub" / "c.png").write_bytes(png_bytes((0, 10, 0)))
    (outside / "secret.png").write_bytes(png_bytes((0, 0, 10)))
    (allowed / "link.png").symlink_to(outside / "secret.png")
    (allowed / "dangling.png").symlink_to(outside / "nothing.png")
    (allowed / "up").symlink_to(outside)
    dirs = {"image_dirs": [allowed]}
    for ref, rgb in [
        (str(allowed / "a b.png"), (10, 0, 0)),
        ("file://" + str(allowed / "a%20b.png"), (10, 0, 0)),
        ("file://localhost" + str(allowed / "sub" / "c.png"), (0, 10, 0)),
        (str(allowed / "sub" / ".." / "sub" / "c.png"), (0, 10, 0)),
        ("sub/c.png", (0, 10, 0)),  # relative: under an image directory
    ]:
        (got,) = load_images([ImagePart(ref, PART0)], **dirs)
        assert got.getpixel((0, 0)) == rgb, ref
    # Outside (directly, through "..", through symlinks): one answer, existing or not.
    outside_refs = [
        str(outside / "secret.png"),
        str(outside / "nothing.png"),
        str(allowed / ".." / "outside" / "secret.png"),
        str(allowed / "nope" / ".." / ".." / "outside" / "nothing.png"),
        "../outside/secret.png",
        str(allowed / "link.png"),
        str(allowed / "dangling.png"),
        str(allowed / "up" / "secret.png"),
        "file://otherhost" + str(allowed / "sub" / "c.png"),
        str(allowed / "nul\x00.png"),
    ]
    errors = [refusal(ref, **dirs) for ref in outside_refs]
    assert {(e.message, e.code) for e in errors} == {(errors[0].message, "local_image_refused")}
    assert str(outside) not in errors[0].message and str(allowed) not in errors[0].message
    # Inside, a missing file may say so: the client may read that directory anyway.
    missing = refusal(str(allowed / "missing.png"), **dirs)
    assert "no such file" in missing.message and missing.code != "local_image_refused"


class FakeVLM:
    """Just enough of an Engine for ``plan_chat``: records the images it is given."""

    takes_images = True
    tool_format = None

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def prompt_inputs(self, messages: Any, tools: Any, prefix: str, images: list[Any]) -> Any:
        self.seen = [messages, images]
        return [7] * (3 + 16 * len(images)), "pixels"

    def prompt_ids(self, messages: Any, tools: Any, prefix: str) -> list[int]:
        self.seen = [messages, []]
        return [7, 7, 7]

    def check_prompt(self, ids: list[int]) -> None:
        pass


def chat_request(content: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "tiny", "messages": [{"role": "user", "content": content}]}
    )


def test_plan_chat_hands_images_and_placeholders_to_the_engine() -> None:
    engine = FakeVLM()
    content = [image(data_uri((9, 9, 9))), {"type": "text", "text": "What is it?"}]
    plan = plan_chat(engine, chat_request(content))
    messages, images = engine.seen
    assert messages == [{"role": "user", "content": "<image>What is it?"}]
    assert len(images) == 1 and images[0].getpixel((0, 0)) == (9, 9, 9)
    assert plan.pixel_values == "pixels" and len(plan.ids) == 3 + 16
    plain = plan_chat(engine, chat_request("hi"))  # no images: the text path, no pixels
    assert plain.pixel_values is None and engine.seen[1] == []


def test_a_limit_on_images_per_request() -> None:
    assert Limits().max_images == 8 and Limits().allow_remote_images is False
    content = [image(data_uri((1, 1, 1)))] * 3
    plan_chat(FakeVLM(), chat_request(content), max_images=3)
    with pytest.raises(APIError) as info:
        plan_chat(FakeVLM(), chat_request(content), max_images=2)
    assert info.value.status == 400 and info.value.code == "too_many_images"
    assert "3 images" in info.value.message and "2 per request" in info.value.message


def png_of_size(width: int, height: int, garbage: bool = False) -> bytes:
    """A black 1-bit PNG of any size, a few KiB (or its header and garbage pixel data)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then the bits
    pixels = b"\xde\xad" * 64 if garbage else zlib.compress(row * height, 9)
    head = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = chunk(b"IHDR", head) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def b64(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_images_over_the_pixel_limit_are_refused_before_decoding() -> None:
    big = png_of_size(5000, 5000)
    assert len(big) < 20_000  # tiny on the wire, 25 Mpx decoded
    # The garbage one shows the header is checked first: decoding it would fail otherwise.
    for (w, h), data in [((5000, 5000), big), ((12000, 12000), png_of_size(12000, 12000, True))]:
        err = refusal(b64(data))
        assert err.code == "image_too_large", err.message
        assert f"{w}x{h}" in err.message and "16,777,216" in err.message
    (ok,) = load_images([ImagePart(b64(png_of_size(4096, 4096)), PART0)])  # exactly 16 Mpx
    assert ok.size == (4096, 4096)
    assert refusal(b64(png_of_size(20, 20)), max_pixels=399).code == "image_too_large"
    (small,) = load_images([ImagePart(b64(png_of_size(20, 20)), PART0)], max_pixels=400)
    assert small.size == (20, 20)


def test_the_limit_covers_the_plan_and_the_server_default() -> None:
    assert Limits().max_image_pixels == 16 * 2**20
    content = [image(b64(png_of_size(30, 30))), {"type": "text", "text": "What is it?"}]
    plan_chat(FakeVLM(), chat_request(content), max_image_pixels=900)
    with pytest.raises(APIError) as info:
        plan_chat(FakeVLM(), chat_request(content), max_image_pixels=899)
    assert info.value.code == "image_too_large"


def encoded(fmt: str) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def test_client_images_are_read_in_common_formats_only() -> None:
    """Rarer decoders (TIFF, ICO, PPM, TGA...) are more attack surface than clients need."""
    for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP"):
        (got,) = load_images([ImagePart(encoded(fmt), PART0)])
        assert got.size == (8, 8), fmt
    for fmt in ("TIFF", "ICO", "PPM", "TGA"):
        err = refusal(encoded(fmt))
        assert err.code == "invalid_image" and "PNG, JPEG" in err.message, fmt
        assert "0x" not in err.message  # no object addresses


def test_remote_downloads_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    import tunesmith.data.images as images_mod

    class Response(io.BytesIO):
        def __enter__(self) -> Response:
            return self

    monkeypatch.setattr(images_mod, "MAX_DOWNLOAD_BYTES", 50)
    data = png_bytes((1, 2, 3))
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(data))
    err = refusal("https://example.com/big.png", allow_remote=True)
    assert err.code == "invalid_image" and "more than 50 bytes" in err.message
