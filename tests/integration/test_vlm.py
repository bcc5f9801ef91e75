"""LLaVA-style training on the tiny LLaVA: what each stage changes, stock reloads, real data.

The stages run through the shipped recipes (``vlm-pretrain`` then ``vlm-sft``) on the generated
toy task, shortened by overrides. The accuracy test trains longer and checks that the model names
the colour of held-out images clearly above chance (1/6).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tunesmith.cli import recipe_dir
from tunesmith.config.load import load_config
from tunesmith.train.recipes import vlm

QUIET = type("Quiet", (), {"print": staticmethod(lambda *a, **k: None)})()
PROJECTOR = "multi_modal_projector"


def recipe(name: str, *overrides: str) -> Any:
    return load_config(recipe_dir() / f"{name}.yaml", ["train.threads=1", *overrides])


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunesmith.cli import main

    out = tmp_path_factory.mktemp("toy") / "toy-shapes"
    assert main(["data", "toy-shapes", "--out", str(out), "--train", "72", "--heldout", "18"]) == 0
    return out


@pytest.fixture(scope="module")
def tiny_llava(_isolated_cache: Path) -> Path:
    from tunesmith.model.tiny import resolve_builtin

    return resolve_builtin("builtin:tiny-llava")


@pytest.fixture(scope="module")
def pretrain(toy: Path, tiny_llava: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    cfg = recipe(
        "vlm-pretrain",
        f"data.datasets.0.path={toy / 'pretrain.jsonl'}",
        f"output.dir={tmp_path_factory.mktemp('pre') / 'run'}",
        "train.max_steps=4",
        "train.batch_size=8",
    )
    return vlm.run(cfg, console=QUIET, show_progress=False)


def sft_run(toy: Path, pretrain: Any, tmp: Path, *overrides: str) -> Any:
    cfg = recipe(
        "vlm-sft",
        f"model.name={pretrain.run_dir}",
        f"data.datasets.0.path={toy / 'sft.jsonl'}",
        f"output.dir={tmp / 'run'}",
        "train.max_steps=4",
        "train.batch_size=8",
        *overrides,
    )
    return vlm.run(cfg, console=QUIET, show_progress=False)


@pytest.fixture(scope="module")
def sft_lora(toy: Path, pretrain: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return sft_run(toy, pretrain, tmp_path_factory.mktemp("lora"), "method.type=lora")


@pytest.fixture(scope="module")
def sft_full(toy: Path, pretrain: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    # Full LLM, projector held fixed: only the language model may move.
    return sft_run(
        toy, pretrain, tmp_path_factory.mktemp("full"), "model.vision.train_projector=false"
    )


def weights(path: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(path).state_dict()


def toy_inputs(processor: Any, toy: Path) -> dict[str, Any]:
    from tunesmith.data.images import load_image
    from tunesmith.model.multimodal import prepare_inputs

    image = load_image(str(toy / "images" / "heldout-0000.png"))
    messages = [{"role": "user", "content": "<image>What colour is the shape?"}]
    return prepare_inputs(processor, messages, [image])


def logits(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


def test_data_stats_expand_images(toy: Path, tiny_llava: Path, capsys: Any) -> None:
    import json

    from tunesmith.cli import main

    path = f"data.datasets.0.path={toy / 'pretrain.jsonl'}"
    assert main(["data", "stats", "vlm-pretrain", path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 72
    assert report["length"]["min"] > 16  # 16 image tokens plus the caption turn


def test_pretrain_changes_only_the_projector(pretrain: Any, tiny_llava: Path, toy: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    before, after = weights(tiny_llava), weights(pretrain.run_dir / "model")
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {k for k in before if PROJECTOR in k}
    assert len(changed) == 4
    # The saved model and processor reload in stock transformers to the same logits.
    processor = AutoProcessor.from_pretrained(pretrain.run_dir / "model")
    reloaded = AutoModelForImageTextToText.from_pretrained(pretrain.run_dir / "model")
    inputs = toy_inputs(processor, toy)
    assert torch.equal(logits(pretrain.model, inputs), logits(reloaded, inputs))


def test_lora_stage_changes_adapters_and_projector(sft_lora: Any, pretrain: Any, toy: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    base = weights(pretrain.run_dir / "model")
    trained = {
        k.replace("base_model.model.", "")
        .replace(".base_layer", "")
        .replace(".original_module", ""): v
        for k, v in sft_lora.model.state_dict().items()
    }
    for name, tensor in base.items():  # LLM, vision tower and the original projector: exact
        assert torch.equal(trained[name], tensor), name
    lora_b = [k for k in trained if "lora_B" in k]
    assert lora_b and all(".language_model." in k for k in lora_b)
    assert any(not torch.equal(trained[k], torch.zeros_like(trained[k])) for k in lora_b)
    projector = {k for k in trained if f"{PROJECTOR}.modules_to_save" in k}
    assert len(projector) == 4
    for k in projector:
        original = k.replace("modules_to_save.default.", "")
        assert not torch.equal(trained[k], base[original]), k
    # Stock reload: the first stage's model + the peft adapter give the same logits.
    adapter = sft_lora.run_dir / "adapter"
    processor = AutoProcessor.from_pretrained(adapter)
    inputs = toy_inputs(processor, toy)
    reloaded = PeftModel.from_pretrained(
        AutoModelForImageTextToText.from_pretrained(pretrain.run_dir / "model"), adapter
    )
    assert torch.equal(logits(sft_lora.model, inputs), logits(reloaded, inputs))
    # The inference entry point merges the adapter (equal up to float rounding).
    from tunesmith.model.multimodal import load_vlm

    merged, _ = load_vlm(sft_lora.run_dir)
    torch.testing.assert_close(logits(merged, inputs), logits(reloaded, inputs))


def test_full_stage_changes_only_the_llm(sft_full: Any, pretrain: Any, toy: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    before, after = weights(pretrain.run_dir / "model"), weights(sft_full.run_dir / "model")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".language_model." in k or k.startswith("lm_head") for k in changed)
    assert any("layers.0.self_attn.q_proj" in k for k in changed)
    processor = AutoProcessor.from_pretrained(sft_full.run_dir / "model")
    reloaded = AutoModelForImageTextToText.from_pretrained(sft_full.run_dir / "model")
    inputs = toy_inputs(processor, toy)
    assert torch.equal(logits(sft_full.model, inputs), logits(reloaded, inputs))


def test_packed_batches_equal_padded(toy: Path, tiny_llava: Path) -> None:
    """Image features land on their own sample's tokens in a packed row: same loss as padded."""
    from tunesmith.config.schema import DataConfig
    from tunesmith.data.collate import add_pixel_values, collate_packed, collate_padded
    from tunesmith.data.collate import model_inputs as kwargs
    from tunesmith.data.engine import build_renderer, prepare
    from tunesmith.model.multimodal import image_seq_length, load_vlm
    from tunesmith.train.losses import token_ce_sum

    model, processor = load_vlm(tiny_llava)
    cfg = DataConfig(
        datasets=[{"path": str(toy / "sft.jsonl"), "max_samples": 6}], cache=False, max_length=128
    )
    renderer = build_renderer(processor.tokenizer, cfg)
    renderer.options.image_token = "<image>"
    renderer.options.image_seq_length = image_seq_length(processor)
    samples = prepare(cfg, renderer).train
    padded = add_pixel_values(collate_padded(samples, 0), samples, processor.image_processor)
    rows = [samples[:3], samples[3:]]
    packed = add_pixel_values(collate_packed(rows, 0), samples, processor.image_processor)
    with torch.no_grad():
        a = token_ce_sum(model(**kwargs(padded, "sdpa")).logits, padded["labels"])
        b = token_ce_sum(model(**kwargs(packed, "sdpa")).logits, packed["labels"])
    assert int(a[1]) == int(b[1]) > 0
    torch.testing.assert_close(a[0], b[0])


def test_mllm_demo_trains_end_to_end(shared_data: Path, tiny_llava: Path, tmp_path: Path) -> None:
    cfg = load_config(
        tree={
            "model": {"name": "builtin:tiny-llava"},
            "data": {
                "datasets": [
                    {
                        "from_info": str(shared_data / "llamafactory" / "dataset_info.json"),
                        "name": "mllm_demo",
                    }
                ],
                "max_length": 128,
            },
            "method": {"stage": "vlm_sft", "type": "lora", "lora": {"rank": 8}},
            "train": {"max_steps": 2, "batch_size": 3, "threads": 1, "log_every": 1},
            "output": {"dir": str(tmp_path / "run")},
        }
    )
    result = vlm.run(cfg, console=QUIET, show_progress=False)
    assert result.steps == 2 and result.first_loss == result.first_loss  # finite, not NaN
    report = (tmp_path / "run" / "data_report.md").read_text()
    assert "mllm_demo" in report
    from tunesmith.data.images import load_image
    from tunesmith.model.multimodal import load_vlm, prepare_inputs

    model, processor = load_vlm(tmp_path / "run")
    photo = load_image(str(shared_data / "llamafactory" / "mllm_demo_data" / "1.jpg"))
    inputs = prepare_inputs(processor, [{"role": "user", "content": "<image>Who?"}], [photo])
    out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 2


@pytest.mark.slow
def test_two_stages_learn_the_colours(tiny_llava: Path, tmp_path: Path) -> None:
    """After pretrain + finetune, held-out colours are named far above chance (1/6).

    A shortened version of the recipes' demo (colour questions only, 10 + 50 steps): ~20 s on
    2 quiet cores. Measured 0.94 on these 18 held-out images (seeds 1-3: see the report).
    """
    from tunesmith.data.toy_images import make_toy_shapes
    from tunesmith.infer.engine import Engine
    from tunesmith.infer.vision_toy import score_toy

    toy = make_toy_shapes(tmp_path / "toy", train=180, heldout=18, seed=1, kinds=("color",))
    pre = recipe(
        "vlm-pretrain",
        f"data.datasets.0.path={toy / 'pretrain.jsonl'}",
        f"output.dir={tmp_path / 'pre'}",
        "train.max_steps=10",
    )
    vlm.run(pre, console=QUIET, show_progress=False)
    sft = recipe(
        "vlm-sft",
        f"model.name={tmp_path / 'pre'}",
        f"data.datasets.0.path={toy / 'sft.jsonl'}",
        f"output.dir={tmp_path / 'sft'}",
        "train.max_steps=50",
    )
    vlm.run(sft, console=QUIET, show_progress=False)
    scores = score_toy(Engine.load(str(tmp_path / "sft")), toy, kinds=("color",))
    print(f"held-out colour accuracy after two stages: {scores['color']:.3f} (chance 0.167)")
    assert scores["n"] == 18
    assert scores["color"] >= 0.5, scores
