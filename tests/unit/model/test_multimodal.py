"""LLaVA composition: stock reload, tiny builds, freeze policies, inference inputs, bad configs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tunesmith.config.schema import MethodConfig, ModelConfig, VisionConfig
from tunesmith.errors import ConfigError, DataError
from tunesmith.model import multimodal as mm


@pytest.fixture(scope="module")
def tiny_llava(_isolated_cache: Path) -> Path:
    from tunesmith.model.tiny import resolve_builtin

    torch.set_num_threads(1)
    return resolve_builtin("builtin:tiny-llava")


@pytest.fixture(scope="module")
def loaded(tiny_llava: Path) -> tuple[Any, Any]:
    return mm.load_vlm(tiny_llava)


def red(size: int = 40) -> Any:
    from PIL import Image

    return Image.new("RGB", (size, size - 7), (255, 0, 0))


def tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def test_tiny_llava_is_deterministic_and_stock(tiny_llava: Path, tmp_path: Path) -> None:
    from transformers import (
        AutoModelForImageTextToText,
        AutoProcessor,
        CLIPImageProcessorPil,
        LlavaForConditionalGeneration,
    )

    from tunesmith.model.tiny import TinySpec, build_tiny

    again = build_tiny(tmp_path / "again", TinySpec(arch="llava"))
    assert tree_hash(again) == tree_hash(tiny_llava)
    processor = AutoProcessor.from_pretrained(tiny_llava)
    model = AutoModelForImageTextToText.from_pretrained(tiny_llava)
    assert isinstance(model, LlavaForConditionalGeneration)
    assert isinstance(processor.image_processor, CLIPImageProcessorPil)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert model.config.image_token_index == image_id
    assert model.config.image_seq_length == mm.image_seq_length(processor) == (32 // 8) ** 2
    assert model.config.projector_hidden_act == "gelu"


def test_prepare_inputs_parts_equal_placeholders(loaded: tuple[Any, Any]) -> None:
    model, processor = loaded
    parts = [{"type": "image_url", "image_url": {"url": "x.png"}}, {"type": "text", "text": "Hi"}]
    a = mm.prepare_inputs(processor, [{"role": "user", "content": parts}], [red()])
    b = mm.prepare_inputs(processor, [{"role": "user", "content": "<image>Hi"}], [red()])
    assert torch.equal(a["input_ids"], b["input_ids"])
    assert torch.equal(a["pixel_values"], b["pixel_values"])
    image_id = model.config.image_token_index
    assert int((a["input_ids"] == image_id).sum()) == 16
    text = processor.tokenizer.decode(a["input_ids"][0])
    assert text == "<|im_start|>user\n" + "<image>" * 16 + "Hi<|im_end|>\n<|im_start|>assistant\n"
    with torch.no_grad():
        out = model.generate(**a, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, a["input_ids"].shape[1] + 3)
    with pytest.raises(DataError, match=r"^1 <image> placeholder\(s\) in the messages but 2"):
        mm.prepare_inputs(processor, [{"role": "user", "content": "<image>Hi"}], [red(), red()])


def names_training(model: Any) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_freeze_policies(tiny_llava: Path) -> None:
    from transformers import LlavaForConditionalGeneration

    def fresh() -> Any:
        return LlavaForConditionalGeneration.from_pretrained(tiny_llava)

    pre = names_training(mm.apply_vlm_method(fresh(), "vlm_pretrain", MethodConfig(), None))
    assert pre and all(".multi_modal_projector." in n for n in pre)
    assert len(pre) == 4  # two linear layers, weights and biases

    full = names_training(mm.apply_vlm_method(fresh(), "vlm_sft", MethodConfig(type="full"), None))
    assert any(".language_model." in n for n in full) and any("projector" in n for n in full)
    assert not any("vision_tower" in n for n in full)

    lora = mm.apply_vlm_method(fresh(), "vlm_sft", MethodConfig(type="lora"), None)
    trained = names_training(lora)
    adapters = {n for n in trained if "lora_" in n}
    assert adapters and all(".language_model." in n for n in adapters)
    assert {n for n in trained - adapters} == {
        n for n in trained if "multi_modal_projector.modules_to_save" in n
    }
    leafs = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in adapters}
    assert leafs == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

    vision = VisionConfig(train_vision="lora", train_projector=False)
    method = MethodConfig(type="lora", lora={"targets": ["q_proj", "v_proj"]})
    both = names_training(mm.apply_vlm_method(fresh(), "vlm_sft", method, vision))
    assert any(".vision_tower." in n for n in both) and any(".language_model." in n for n in both)
    assert all("lora_" in n for n in both)  # projector frozen this time

    vfull = VisionConfig(train_vision="full")
    mixed = names_training(mm.apply_vlm_method(fresh(), "vlm_sft", MethodConfig(), vfull))
    assert any("vision_tower.modules_to_save" in n for n in mixed)


@pytest.mark.parametrize(
    ("method", "vision", "message"),
    [
        ({"type": "qlora"}, {}, "method.type 'qlora': stage vlm_sft trains the LLM with"),
        ({"type": "freeze"}, {}, "method.type 'freeze': stage vlm_sft trains the LLM with"),
        ({"type": "full"}, {"train_vision": "lora"}, "model.vision.train_vision 'lora' needs"),
        ({"lora": {"targets": ["nope"]}}, {}, "method.lora.targets ['nope']: matches no linear"),
        ({"lora": {"init": "pissa"}}, {}, "method.lora.init 'pissa': not supported"),
    ],
)
def test_unsupported_methods(
    tiny_llava: Path, method: dict[str, Any], vision: dict[str, Any], message: str
) -> None:
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava)
    with pytest.raises(ConfigError) as err:
        mm.apply_vlm_method(model, "vlm_sft", MethodConfig(**method), VisionConfig(**vision))
    assert str(err.value).startswith(message)


def tiny_wordlevel_lm(folder: Path) -> Path:
    """A causal LM whose tokenizer has no <image> token (composition must add it)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "hi", "red", "user", "assistant", ":", "\n"]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>")
    tok.chat_template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    config = LlamaConfig(
        vocab_size=len(words),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_siglip(folder: Path) -> Path:
    from transformers import SiglipImageProcessorPil, SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=4,
    )
    torch.manual_seed(0)
    SiglipVisionModel(config).save_pretrained(folder)
    SiglipImageProcessorPil(size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder


def test_compose_siglip_linear_projector_adds_image_token(tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    lm = tiny_wordlevel_lm(tmp_path / "lm")
    out = mm.compose_llava(lm, tiny_siglip(tmp_path / "tower"), tmp_path / "vlm", projector_depth=1)
    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    config = model.config
    assert config.projector_hidden_act == "linear"  # depth 1: the projector is one linear map
    assert config.vision_feature_select_strategy == "full"  # SigLIP has no CLS token
    assert config.image_seq_length == 16 == mm.image_seq_length(processor)
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == 8 == config.image_token_index
    assert model.get_input_embeddings().weight.shape[0] == 64  # grown, padded to 64
    # Pretrained parts are copied exactly; the composition reloads to equal logits.
    from transformers import LlamaForCausalLM, SiglipVisionModel

    lm_weights = LlamaForCausalLM.from_pretrained(lm).model.layers[0].mlp.up_proj.weight
    assert torch.equal(model.model.language_model.layers[0].mlp.up_proj.weight, lm_weights)
    tower = SiglipVisionModel.from_pretrained(tmp_path / "tower").state_dict()
    ours = model.model.vision_tower.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in tower.items())
    inputs = mm.prepare_inputs(processor, [{"role": "user", "content": "<image> hi"}], [red()])
    again = AutoModelForImageTextToText.from_pretrained(out).eval()
    with torch.no_grad():
        assert torch.equal(model.eval()(**inputs).logits, again(**inputs).logits)


def test_training_loader_checks(tiny_llava: Path, tiny_qwen2: Path, tmp_path: Path) -> None:
    model, _, path = mm.load_llava_for_training(ModelConfig(name="builtin:tiny-llava"))
    assert path == tiny_llava and model.config.model_type == "llava"
    with pytest.raises(ConfigError, match=r"^model.vision.image_tokens 9: this model's vision"):
        mm.load_llava_for_training(
            ModelConfig(name="builtin:tiny-llava", vision={"image_tokens": 9})
        )
    with pytest.raises(ConfigError, match=r"a 'qwen2' model; the vlm stages train LLaVA"):
        mm.load_llava_for_training(ModelConfig(name=str(tiny_qwen2)))
    empty = tmp_path / "run"
    empty.mkdir()
    assert mm.is_vlm(tiny_llava) and not mm.is_vlm(tiny_qwen2) and not mm.is_vlm(empty)
    with pytest.raises(ConfigError, match=r"not a model folder or a run directory"):
        mm.load_vlm(empty)
    adapter = tmp_path / "lora-run" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    with pytest.raises(ConfigError, match=r"holds a LoRA adapter only"):
        mm.load_llava_for_training(ModelConfig(name=str(tmp_path / "lora-run")))


def test_compose_from_config_is_cached(tiny_qwen2: Path, tmp_path: Path) -> None:
    tower = tiny_siglip(tmp_path / "tower")
    cfg = ModelConfig(name=str(tiny_qwen2), vision={"tower": str(tower), "feature_layer": -1})
    model, _, path = mm.load_llava_for_training(cfg)
    assert model.config.vision_config.model_type == "siglip_vision_model"
    assert mm.composed_path(cfg) == path  # second call: the cached build
    with pytest.raises(ConfigError, match=r"^model.vision.tower .*: a 'qwen2' model; use a CLIP"):
        mm.load_vision_tower(str(tiny_qwen2))
