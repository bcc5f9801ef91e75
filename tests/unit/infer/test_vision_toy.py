"""The toy shapes' held-out score goes through the inference engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tunesmith.data.toy_images import QUESTIONS, make_toy_shapes
from tunesmith.errors import ConfigError, DataError
from tunesmith.infer.engine import Engine, GenParams
from tunesmith.infer.vision_toy import judge, read_heldout, score_toy


class CannedEngine:
    """Answers each question with a fixed reply per (image, kind); records what it was asked."""

    takes_images = True

    def __init__(self, replies: dict[tuple[str, str], str]) -> None:
        self.replies = replies
        self.calls: list[tuple[list[Any], GenParams, list[Any]]] = []

    def generate(self, batch: list[Any], params: GenParams, *, images: list[Any]) -> list[str]:
        self.calls.append((batch, params, images))
        kind_of = {f"<image>{q}": k for k, q in QUESTIONS.items()}
        sizes = [ims[0].size for ims in images]
        assert all(len(ims) == 1 for ims in images) and sizes == [(32, 32)] * len(sizes)
        return [
            self.replies[(str(i // len(QUESTIONS)), kind_of[m[0]["content"]])]
            for i, m in enumerate(batch)
        ]


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_shapes(tmp_path_factory.mktemp("toy"), train=18, heldout=2, seed=1)


def test_judge() -> None:
    assert judge("color", "Red.", "red", "circle")
    assert not judge("color", "red or blue", "red", "circle")  # naming another colour fails
    assert judge("shape", "a red circle", "red", "circle")
    assert not judge("both", "a blue circle", "red", "circle")
    assert judge("both", "A red circle.", "red", "circle")


def test_score_counts_each_kind_over_the_heldout_images(toy: Path) -> None:
    rows = read_heldout(toy)
    assert [(r["color"], r["shape"]) for r in rows] == [("red", "circle"), ("red", "square")]
    replies = {
        ("0", "color"): "red",
        ("0", "shape"): "square",
        ("0", "both"): "a red circle",
        ("1", "color"): "red",
        ("1", "shape"): "square",
        ("1", "both"): "a red circle",
    }
    engine = CannedEngine(replies)
    assert score_toy(engine, toy) == {"color": 1.0, "shape": 0.5, "both": 0.5, "n": 2.0}
    [(batch, params, _)] = engine.calls  # one batched call, greedy and short
    assert len(batch) == 6 and (params.temperature, params.max_new_tokens) == (0.0, 6)


def test_score_with_the_real_engine_equals_one_answer_at_a_time(
    toy: Path, sharp_llava_dir: Path
) -> None:
    from PIL import Image

    engine = Engine.load(str(sharp_llava_dir), threads=1)
    scores = score_toy(engine, toy, kinds=("color", "both"))
    expected = {"color": 0, "both": 0}
    for row in read_heldout(toy):
        image = Image.open(toy / row["image"]).convert("RGB")
        for kind in expected:
            conv = [{"role": "user", "content": f"<image>{QUESTIONS[kind]}"}]
            [reply] = engine.generate([conv], GenParams(max_new_tokens=6), images=[[image]])
            expected[kind] += judge(kind, reply, row["color"], row["shape"])
    assert scores == {"color": expected["color"] / 2, "both": expected["both"] / 2, "n": 2.0}
    engine.close()


def test_refusals(toy: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="text-only model"):
        score_toy(type("Text", (), {"takes_images": False})(), toy)
    with pytest.raises(ConfigError, match=r"kinds \['size'\]: choose from color, shape, both"):
        score_toy(CannedEngine({}), toy, kinds=("size",))
    with pytest.raises(DataError, match=r"heldout\.jsonl: not found; write the toy set"):
        read_heldout(tmp_path)
    (tmp_path / "heldout.jsonl").write_text('{"image": "a.png", "color": "red"}\n')
    with pytest.raises(DataError, match=r"heldout.jsonl:1: expected an object with string image"):
        read_heldout(tmp_path)
