"""Images in the data engine: loading, bad inputs, token expansion, truncation, batches, cache."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tunesmith.config.schema import DataConfig
from tunesmith.data import images as img
from tunesmith.data.collate import add_pixel_values, collate_packed, collate_padded, model_inputs
from tunesmith.data.engine import build_renderer, prepare
from tunesmith.data.render import IGNORE_INDEX, Rendered
from tunesmith.data.types import Conversation, Message
from tunesmith.errors import DataError

PER_IMAGE = 4


def png(path: Path, color: tuple[int, int, int] = (255, 0, 0), size: int = 8) -> Path:
    from PIL import Image

    Image.new("RGB", (size, size), color).save(path)
    return path


def data_uri(color: tuple[int, int, int] = (0, 0, 255)) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (6, 6), color).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


# ---- loading and validation -----------------------------------------------------------------
def test_load_local_base64_and_file_url(tmp_path: Path) -> None:
    path = png(tmp_path / "a.png", (10, 20, 30))
    assert img.load_image(str(path)).getpixel((0, 0)) == (10, 20, 30)
    assert img.load_image(f"file://{path}").size == (8, 8)
    loaded = img.load_image(data_uri((0, 0, 255)))
    assert loaded.mode == "RGB" and loaded.getpixel((3, 3)) == (0, 0, 255)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("MISSING", "d.jsonl:3: image {ref}: file not found; fix the path or set media_dir"),
        ("GARBAGE", "d.jsonl:3: image {ref}: unreadable image ("),
        (
            "https://example.com/cat.png",
            "d.jsonl:3: image https://example.com/cat.png: remote image URLs are refused; "
            "download the image and use a local path, or set model.vision.allow_remote_images",
        ),
        ("data:image/png;base64,@@@", "d.jsonl:3: image data:image/png;base64,...: invalid base64"),
        ("data:image/png,abc", "d.jsonl:3: image data:image/png,...: a data URI must be base64"),
    ],
)
def test_bad_images_name_the_sample(tmp_path: Path, ref: str, message: str) -> None:
    if ref == "MISSING":
        ref = str(tmp_path / "nope.png")
    elif ref == "GARBAGE":
        ref = str(tmp_path / "bad.png")
        Path(ref).write_bytes(b"this is not an image")
    for fn in (img.check_image, img.load_image):
        with pytest.raises(DataError) as err:
            fn(ref, where="d.jsonl:3")
        assert str(err.value).startswith(message.format(ref=img.short_ref(ref)))
        assert "\n" not in str(err.value)


def test_truncated_pixel_data_fails_on_load(tmp_path: Path) -> None:
    good = png(tmp_path / "g.png", size=64).read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(good[: len(good) // 2])
    img.check_image(str(cut), where="s")  # the header is fine
    with pytest.raises(DataError, match=r"^s: image .*cut\.png: unreadable image"):
        img.load_image(str(cut), where="s")


def test_placeholder_count_must_match(tmp_path: Path) -> None:
    a = str(png(tmp_path / "a.png"))
    conv = Conversation(
        [Message("user", "<image><image>hi"), Message("assistant", "ok")], images=[a]
    )
    with pytest.raises(DataError) as err:
        img.check_conversation(conv, "f.json:7")
    assert str(err.value) == (
        "f.json:7: 2 <image> placeholder(s) in the text but 1 image(s); put exactly one <image> "
        "in the text for each image"
    )


def test_kept_images_follow_their_messages() -> None:
    msgs = [
        Message("user", "<image>a"),
        Message("assistant", "b"),
        Message("user", "c<image><image>"),
        Message("assistant", "d"),
    ]
    conv = Conversation(msgs, images=["1", "2", "3"])
    assert img.kept_images(conv, msgs) == ["1", "2", "3"]
    assert img.kept_images(conv, msgs[:2]) == ["1"]
    assert img.kept_images(conv, msgs[2:]) == ["2", "3"]


# ---- token expansion and truncation (pure) --------------------------------------------------
def test_expand_and_truncate_exact() -> None:
    ids, labels = [5, 9, 6, 9, 7, 8], [5, 9, 6, 9, 7, 8]  # train_on_prompt: image labels too
    out = img.expand_image_tokens(
        ids, labels, [1.0] * 6, image_id=9, per_image=3, n_images=2, where="s"
    )
    assert out[0] == [5, 9, 9, 9, 6, 9, 9, 9, 7, 8]
    assert out[1] == [5, -100, -100, -100, 6, -100, -100, -100, 7, 8]
    assert out[2] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    right = img.truncate_keeping_images(*out, image_id=9, max_length=8, left=False)
    assert right is not None and right[0] == [5, 9, 9, 9, 6, 9, 9, 9]
    left = img.truncate_keeping_images(*out, image_id=9, max_length=8, left=True)
    assert left is not None and left[0] == [9, 9, 9, 9, 9, 9, 7, 8]
    assert left[1] == [-100] * 6 + [7, 8]
    assert img.truncate_keeping_images(*out, image_id=9, max_length=5, left=False) is None
    with pytest.raises(DataError, match=r"1 <image> token.* but 2 image"):
        img.expand_image_tokens([9], [9], None, image_id=9, per_image=3, n_images=2, where="s")


# ---- the renderer ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tok(tiny_qwen2: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_qwen2)


def vision_renderer(tok: Any, **data: Any) -> Any:
    cfg = DataConfig(datasets=[{"path": "x"}], **data)
    r = build_renderer(tok, cfg)
    r.options.image_token = "<image>"
    r.options.image_seq_length = PER_IMAGE
    return r


def two_turns(a: str, b: str) -> Conversation:
    return Conversation(
        [
            Message("user", "<image>What is it?"),
            Message("assistant", "A red square."),
            Message("user", "And this one?<image>"),
            Message("assistant", "A blue circle."),
        ],
        images=[a, b],
    )


def test_render_expands_images_without_loss(tok: Any) -> None:
    image_id = tok.convert_tokens_to_ids("<image>")
    conv = two_turns("a.png", "b.png")
    plain = build_renderer(tok, DataConfig(datasets=[{"path": "x"}])).render(conv)
    assert plain.input_ids.count(image_id) == 2 and plain.images is None
    r = vision_renderer(tok, train_on_prompt=True).render(conv)
    assert r.images == ["a.png", "b.png"]
    assert r.input_ids.count(image_id) == 2 * PER_IMAGE
    at = r.input_ids.index(image_id)
    assert r.input_ids[at : at + PER_IMAGE] == [image_id] * PER_IMAGE
    assert all(lab == IGNORE_INDEX for t, lab in zip(r.input_ids, r.labels) if t == image_id)
    # Everything else is unchanged: removing the expansion gives the text-only rendering.
    collapsed = [t for i, t in enumerate(r.input_ids) if t != image_id or r.input_ids[i - 1] != t]
    assert (
        collapsed
        == build_renderer(tok, DataConfig(datasets=[{"path": "x"}], train_on_prompt=True))
        .render(conv)
        .input_ids
    )
    assert r.as_dict()["images"] == ["a.png", "b.png"]


def test_truncation_reserves_image_tokens(tok: Any) -> None:
    image_id = tok.convert_tokens_to_ids("<image>")
    conv = Conversation(
        [Message("user", "<image>Describe it."), Message("assistant", "word " * 40)],
        images=["a.png"],
    )
    full = vision_renderer(tok, max_length=512).render(conv)
    n = len(full.input_ids) - 10
    cut = vision_renderer(tok, max_length=n, truncation="truncate_right").render(conv)
    assert len(cut.input_ids) == n and cut.truncated
    assert cut.input_ids.count(image_id) == PER_IMAGE and cut.images == ["a.png"]
    assert cut.input_ids == full.input_ids[:n]  # the image sits early: a plain prefix
    # A budget that the image alone fills: the text is cut around it, never the image.
    tight = vision_renderer(tok, truncation="truncate_left")
    tight.options.max_length = PER_IMAGE + 6  # below the config's minimum, to squeeze the text
    left = tight.render(conv)
    assert left.input_ids[:PER_IMAGE] == [image_id] * PER_IMAGE
    assert left.input_ids[PER_IMAGE:] == full.input_ids[-6:]


def test_whole_turn_truncation_drops_that_turns_image(tok: Any) -> None:
    image_id = tok.convert_tokens_to_ids("<image>")
    conv = two_turns("a.png", "b.png")
    full = vision_renderer(tok).render(conv)
    n = len(full.input_ids) - 1
    right = vision_renderer(tok, max_length=n, truncation="truncate_right").render(conv)
    left = vision_renderer(tok, max_length=n, truncation="truncate_left").render(conv)
    assert right.images == ["a.png"] and left.images == ["b.png"]
    for r in (right, left):
        assert r.input_ids.count(image_id) == PER_IMAGE


# ---- the engine, end to end on files --------------------------------------------------------
def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def openai_row(url: str, answer: str = "red") -> dict[str, Any]:
    parts = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Colour?"}]
    return {
        "messages": [{"role": "user", "content": parts}, {"role": "assistant", "content": answer}]
    }


def test_engine_reads_image_url_parts_paths_and_base64(tmp_path: Path, tok: Any) -> None:
    png(tmp_path / "r.png")
    src = write_jsonl(tmp_path / "d.jsonl", [openai_row("r.png"), openai_row(data_uri(), "blue")])
    cfg = DataConfig(datasets=[{"path": str(src), "shuffle": False}], packing=False, cache=False)
    data = prepare(cfg, vision_renderer(tok))
    refs = sorted(s["images"][0] for s in data.train)
    assert refs[0] == str(tmp_path / "r.png") and refs[1].startswith("data:image/png;base64,")
    assert all(len(s["images"]) == 1 for s in data.train)


@pytest.mark.parametrize(
    ("row", "message", "reason"),
    [
        (
            openai_row("gone.png"),
            "{tmp}/d.jsonl:2: image file not found: {tmp}/gone.png; fix the path or set media_dir",
            "missing image",
        ),
        (
            openai_row("bad.png"),
            "{tmp}/d.jsonl:2: image {tmp}/bad.png: unreadable image",
            "bad image",
        ),
        (
            openai_row("http://example.com/x.png"),
            "{tmp}/d.jsonl:2: image http://example.com/x.png: remote image URLs are refused",
            "bad image",
        ),
    ],
)
def test_engine_bad_images(
    tmp_path: Path, tok: Any, row: dict[str, Any], message: str, reason: str
) -> None:
    png(tmp_path / "r.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    src = write_jsonl(tmp_path / "d.jsonl", [openai_row("r.png"), row])
    for on_error in ("raise", "skip"):
        cfg = DataConfig(datasets=[{"path": str(src)}], on_error=on_error, cache=False)
        if on_error == "raise":
            with pytest.raises(DataError) as err:
                prepare(cfg, vision_renderer(tok))
            assert str(err.value).startswith(message.format(tmp=tmp_path))
        else:
            data = prepare(cfg, vision_renderer(tok))
            assert len(data.train) == 1
            assert data.report.sources[0].skipped[reason] == 1


def test_mllm_demo_renders_with_every_image(tok: Any, shared_data: Path) -> None:
    cfg = DataConfig(
        datasets=[
            {
                "from_info": str(shared_data / "llamafactory" / "dataset_info.json"),
                "name": "mllm_demo",
                "shuffle": False,
            }
        ],
        cache=False,
    )
    data = prepare(cfg, vision_renderer(tok))
    image_id = tok.convert_tokens_to_ids("<image>")
    assert sorted(len(s["images"]) for s in data.train) == [1, 1, 1, 1, 2, 2]
    for s in data.train:
        assert s["input_ids"].count(image_id) == PER_IMAGE * len(s["images"])
        assert all(Path(p).is_file() for p in s["images"])


# ---- batches and cache ----------------------------------------------------------------------
def test_pixel_values_follow_the_image_tokens(tmp_path: Path) -> None:
    from transformers import CLIPImageProcessorPil

    proc = CLIPImageProcessorPil(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})
    red, blue = str(png(tmp_path / "r.png", (255, 0, 0))), str(png(tmp_path / "b.png", (0, 0, 255)))
    s1 = {"input_ids": [1, 9, 2], "labels": [1, -100, 2], "images": [red]}
    s2 = {"input_ids": [3, 4], "labels": [3, 4]}
    s3 = {"input_ids": [9, 9, 5], "labels": [-100, -100, 5], "images": [blue, red]}
    padded = add_pixel_values(collate_padded([s1, s2, s3], 0), [s1, s2, s3], proc)
    assert padded["pixel_values"].shape == (3, 3, 8, 8)
    # Red has a high red channel, blue a high blue channel: the order is red, blue, red.
    channel = padded["pixel_values"][:, :, 0, 0].argmax(dim=1).tolist()
    assert channel == [0, 2, 0]
    kwargs = model_inputs(padded, "sdpa")
    assert torch.equal(kwargs["pixel_values"], padded["pixel_values"])
    packed = add_pixel_values(collate_packed([[s3, s1], [s2]], 0), [s3, s1, s2], proc)
    assert packed["pixel_values"][:, :, 0, 0].argmax(dim=1).tolist() == [2, 0, 0]
    assert "pixel_values" in model_inputs(packed, "sdpa")
    assert "pixel_values" not in add_pixel_values(collate_padded([s2], 0), [s2], proc)


def test_cache_keeps_image_references() -> None:
    from tunesmith.data.cache import pack, unpack

    samples = [Rendered([1, 9], [1, -100], None, True, ["a.png", "data:x"]), Rendered([3], [3])]
    assert unpack(pack(samples)) == samples
