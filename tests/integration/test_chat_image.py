"""`tunesmith chat --image` on a vision-language model (the tiny LLaVA, offline)."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

from tunesmith.cli import main
from tunesmith.data.images import load_image


def png(path: Path, rgb: tuple[int, int, int]) -> Path:
    from PIL import Image

    Image.new("RGB", (32, 32), rgb).save(path)
    return path


def test_chat_answers_about_an_image(tmp_path: Path) -> None:
    img = png(tmp_path / "red.png", (220, 20, 20))
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(
            [
                "chat",
                "--model",
                "builtin:tiny-llava",
                "--image",
                str(img),
                "--prompt",
                "What colour is this?",
                "--max-new-tokens",
                "5",
                "--threads",
                "1",
            ]
        )
    assert code == 0 and out.getvalue().endswith("\n")


def test_the_image_reaches_the_model(tmp_path: Path) -> None:
    from tunesmith.infer.engine import Engine

    engine = Engine.load("builtin:tiny-llava")
    msgs = [{"role": "user", "content": "<image>What colour is this?"}]
    logits = []
    for name, rgb in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        ids, pixels = engine.prompt_inputs(msgs, images=[str(png(tmp_path / f"{name}.png", rgb))])
        assert pixels.shape[0] == 1 and ids.count(engine.runner.image_token_id) == 16
        logits.append(engine.runner.prefill([ids], [None], [pixels])[0][0])
    assert not torch.allclose(logits[0], logits[1])


def test_interactive_image_chat_streams_through_the_engine(tmp_path: Path) -> None:
    """Multi-turn: the --image goes with the first turn, /image with the next, /reset restores."""
    from tunesmith.infer.chat import chat_loop
    from tunesmith.infer.engine import Engine, GenParams

    engine = Engine.load("builtin:tiny-llava")
    red = png(tmp_path / "red.png", (220, 20, 20))
    blue = png(tmp_path / "blue.png", (20, 20, 220))
    params = GenParams(max_new_tokens=4)
    script = ["What colour?", f"/image {blue}", "And this one?", "/image nowhere.png", "/reset"]
    script += ["What colour?", "/exit"]
    out: list[str] = []
    history = chat_loop(
        engine,
        params,
        stdin=io.StringIO("".join(f"{line}\n" for line in script)),
        out=out.append,
        images=[load_image(str(red))],
    )
    text = "".join(out)
    assert "/image PATH" in text and "tok/s]" in text
    assert "could not attach" in text and "nowhere.png" in text
    assert [m["content"] for m in history if m["role"] == "user"] == ["<image>What colour?"]
    # The same answers as the engine gives for the same conversation in one call.
    first = engine.generate(
        [[{"role": "user", "content": "What colour?"}]], params, images=[[str(red)]]
    )[0]
    assert history[1]["content"] == first
    replies = text.split("bot> ")[1:]
    assert replies[0].startswith(first) and replies[2].startswith(first)
    two = [
        {"role": "user", "content": "<image>What colour?"},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "<image>And this one?"},
    ]
    second = engine.generate([two], params, images=[[str(red), str(blue)]])[0]
    assert replies[1].startswith(second)


def test_missing_and_remote_images_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "chat",
            "--model",
            "builtin:tiny-llava",
            "--image",
            str(tmp_path / "no.png"),
            "--prompt",
            "hi",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no.png" in err[0]
    code = main(
        [
            "chat",
            "--model",
            "builtin:tiny-llava",
            "--image",
            "http://example.com/a.png",
            "--prompt",
            "hi",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "remote" in err[0].lower()
    code = main(
        [
            "chat",
            "--model",
            "builtin:tiny-qwen2",
            "--image",
            str(png(tmp_path / "ok.png", (1, 2, 3))),
            "--prompt",
            "hi",
        ]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(err) == 1 and "text-only" in err[0]  # (after the builtin's note)
