"""`tunesmith chat --image` on a vision-language model (the tiny LLaVA, offline)."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from tunesmith.cli import main


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
    import torch

    from tunesmith.infer.vlm_chat import ImageChat
    from tunesmith.model.multimodal import prepare_inputs

    msgs = [{"role": "user", "content": "<image>What colour is this?"}]
    logits = []
    for name, rgb in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        chat = ImageChat("builtin:tiny-llava", [str(png(tmp_path / f"{name}.png", rgb))])
        inputs = prepare_inputs(chat.processor, msgs, chat.images)
        assert inputs["pixel_values"].shape[0] == 1
        with torch.no_grad():
            logits.append(chat.model(**inputs).logits[0, -1])
    assert not torch.allclose(logits[0], logits[1])


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
