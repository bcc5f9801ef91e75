"""Vision-language models through the one engine: image rows and text rows in one batch.

The model is the built-in tiny LLaVA with its language model and projector "sharpened" (as the
text engine tests do) so greedy answers vary token to token and depend on the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tunesmith.errors import ConfigError
from tunesmith.infer.batching import Scheduler
from tunesmith.infer.decode import Delta, Finished, Request
from tunesmith.infer.engine import Engine, GenParams

GREEDY = GenParams(max_new_tokens=10)
Q = [{"role": "user", "content": "What colour is this?"}]


def solid(rgb: tuple[int, int, int], size: int = 32) -> Any:
    from PIL import Image

    return Image.new("RGB", (size, size), rgb)


RED, BLUE, GREEN = solid((220, 20, 20)), solid((20, 20, 220)), solid((20, 200, 20), 48)


@pytest.fixture(scope="module")
def llava_dir(sharp_llava_dir: Path) -> Path:
    return sharp_llava_dir


@pytest.fixture(scope="module")
def engine(llava_dir: Path) -> Engine:
    return Engine.load(str(llava_dir))


def test_prompts_carry_the_processors_image_tokens_and_pixels(engine: Engine) -> None:
    from tunesmith.model.multimodal import prepare_inputs

    assert engine.takes_images and engine.image_seq_length == 16
    msgs = [{"role": "user", "content": "<image>Two: <image>?"}]
    ids, pixels = engine.prompt_inputs(msgs, images=[RED, GREEN])
    ref = prepare_inputs(engine.processor, msgs, [RED, GREEN])  # the training-side helper
    assert ids == ref["input_ids"][0].tolist()
    assert torch.equal(pixels, ref["pixel_values"]) and pixels.shape[0] == 2
    assert ids.count(engine.runner.image_token_id) == 32
    # Without placeholders the images go to the start of the first user turn.
    auto, _ = engine.prompt_inputs(Q, images=[RED])
    assert (
        auto
        == engine.prompt_inputs(
            [{"role": "user", "content": "<image>" + Q[0]["content"]}], images=[RED]
        )[0]
    )


def test_placeholders_and_images_must_match(engine: Engine) -> None:
    msgs = [{"role": "user", "content": "<image><image>hi"}]
    with pytest.raises(ConfigError, match=r"2 <image> placeholder\(s\) .* 1 image"):
        engine.prompt_inputs(msgs, images=[RED])
    with pytest.raises(ConfigError, match=r"1 <image> placeholder\(s\) .* 0 image"):
        engine.prompt_inputs([{"role": "user", "content": "<image>hi"}])


def test_batched_prefill_gives_each_row_its_own_images(engine: Engine) -> None:
    rows = [([RED], "What colour is this?"), (None, "hi"), ([BLUE, GREEN], "Both of them?")]
    inputs = []
    for images, text in rows:
        msgs = [{"role": "user", "content": text}]
        inputs.append(engine.prompt_inputs(msgs, images=images))
    runner = engine.runner
    alone = [runner.prefill([ids], [None], [px])[0][0] for ids, px in inputs]
    batched, mask, _ = runner.prefill([i for i, _ in inputs], [None] * 3, [p for _, p in inputs])
    assert mask.shape[0] == 3 and int(mask[1].sum()) == len(inputs[1][0])  # left-padded rows
    for a, b in zip(alone, batched):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(alone[0], runner.prefill(*_swap(inputs[0], BLUE, engine))[0][0])


def _swap(item: tuple[list[int], Any], image: Any, engine: Engine) -> tuple[Any, ...]:
    _, pixels = engine.prompt_inputs(Q, images=[image])
    return [item[0]], [None], [pixels]


def test_image_and_text_rows_batch_like_one_at_a_time(engine: Engine) -> None:
    batch = [Q, Q, [{"role": "user", "content": "Say something."}], Q]
    images = [[RED], [BLUE], None, [GREEN, RED]]
    together = engine.generate(batch, GREEDY, images=images)
    alone = [engine.generate([m], GREEDY, images=[im])[0] for m, im in zip(batch, images)]
    assert together == alone
    assert len(set(alone)) == 4  # every image changes the answer


def test_requests_joining_a_running_batch_keep_their_images(engine: Engine) -> None:
    """Continuous batching: image and text rows join mid-decode, left-padding the cache."""
    specs = [
        (Q, [RED]),
        ([{"role": "user", "content": "Describe the picture in detail, please."}], [BLUE]),
        ([{"role": "user", "content": "A text question."}], None),
        (Q, [GREEN]),
    ]
    alone = [engine.generate([m], GREEDY, images=[im])[0] for m, im in specs]
    texts = [""] * len(specs)
    sizes: list[int] = []
    sched = Scheduler(engine.runner, max_batch=8)

    def emit(i: int, ev: Any) -> None:
        if isinstance(ev, Delta):
            texts[i] += ev.text
        elif not isinstance(ev, Finished):
            raise ev.error

    for i, (msgs, images) in enumerate(specs):
        ids, pixels = engine.prompt_inputs(msgs, images=images)
        sched.add(Request(ids, GREEDY, lambda ev, i=i: emit(i, ev), pixel_values=pixels))
        for _ in range(2):  # the next one arrives while these are being decoded
            sched.step()
            sizes.append(len(sched.running))
    while sched.busy:
        sched.step()
    assert sizes[:2] == [1, 1] and max(sizes) >= 3  # later ones joined a running batch
    assert [t.strip() for t in texts] == alone


def test_streaming_equals_the_batched_answer(engine: Engine) -> None:
    pieces = list(engine.stream(Q, GREEDY, images=[BLUE]))
    assert (
        len(pieces) > 1
        and "".join(pieces).strip() == engine.generate([Q], GREEDY, images=[[BLUE]])[0]
    )


def test_text_models_refuse_images(tiny_qwen2: Path) -> None:
    text = Engine.load(str(tiny_qwen2))
    assert not text.takes_images
    with pytest.raises(ConfigError, match="text-only"):
        text.prompt_inputs(Q, images=[RED])


def save_run(model: Any, processor: Any, run: Path, base: str) -> Path:
    from tunesmith.train.recipes.vlm import save_vlm

    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {"name": base},
                "data": {"datasets": [{"path": "builtin:identity"}], "system": "You see colours."},
            }
        )
    )
    save_vlm(model, processor, run)
    return run


def test_vlm_run_directories_load_full_or_lora(
    llava_dir: Path, engine: Engine, tmp_path: Path
) -> None:
    from peft import LoraConfig, get_peft_model

    from tunesmith.model.multimodal import load_vlm

    model, processor = load_vlm(llava_dir)
    full = Engine.load(str(save_run(model, processor, tmp_path / "full", str(llava_dir))))
    assert full.takes_images and full.model_names() == ["full"]
    assert full.run.config.data.system == full.system_prompt == "You see colours."
    assert full.generate([Q], GREEDY, images=[[RED]]) == engine.generate(
        [Q], GREEDY, images=[[RED]]
    )

    torch.manual_seed(0)
    cfg = LoraConfig(
        r=4,
        target_modules=r"model\.language_model\..*_proj",
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    lora = get_peft_model(load_vlm(llava_dir)[0], cfg)
    run = save_run(lora, processor, tmp_path / "lora", str(llava_dir))
    tuned = Engine.load(str(run))
    assert tuned.takes_images and tuned.model_names() == ["lora"]
    merged, _ = load_vlm(run)  # the stock merge of base + adapter
    ids, pixels = tuned.prompt_inputs(Q, images=[RED])
    with torch.no_grad():
        want = merged(input_ids=torch.tensor([ids]), pixel_values=pixels).logits[0, -1]
    torch.testing.assert_close(tuned.runner.prefill([ids], [None], [pixels])[0][0], want)
    assert tuned.generate([Q], GREEDY, images=[[RED]]) != engine.generate(
        [Q], GREEDY, images=[[RED]]
    )
    over = Engine.load(str(llava_dir), adapter=str(run / "adapter"))  # chat --model X --adapter
    assert over.generate([Q], GREEDY, images=[[RED]]) == tuned.generate([Q], GREEDY, images=[[RED]])
    with pytest.raises(ConfigError, match="--bits"):
        Engine.load(str(run), bits=4)
