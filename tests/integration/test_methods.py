"""Every tuning method trains the tiny model: loss falls, exactly the intended parameters move,
and the saved result reloads with stock peft/transformers to the same logits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tunesmith.config.load import load_config
from tunesmith.errors import ConfigError
from tunesmith.train.recipes import sft

pytestmark = pytest.mark.slow
IDS = torch.tensor([[5, 17, 300, 42, 9, 1000, 77, 12]])


def run(tmp_path: Path, method: dict[str, Any], lr: float = 3e-3) -> sft.TrainResult:
    cfg = load_config(
        tree={
            "data": {
                "datasets": [
                    {"path": "builtin:identity", "samples": 24},
                    {"path": "builtin:general", "samples": 24},
                ],
                "identity": {"name": "Nova", "author": "the Tunesmith team"},
                "max_length": 96,
            },
            "method": method,
            "train": {"lr": lr, "max_steps": 6, "batch_size": 4, "warmup_ratio": 0, "threads": 2},
            "output": {"dir": str(tmp_path / "run")},
        }
    )
    return sft.run(cfg, show_progress=False)


def base_state(path: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def strip(name: str) -> str:
    for part in ("base_model.model.", ".base_layer", ".original_module"):
        name = name.replace(part, "")
    return name


def logits(model: Any) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=IDS).logits


def peft_reload(path: Path, adapter: Path, **kw: Any) -> Any:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(path, **kw), adapter)


def check_lora_family(result: sft.TrainResult, tiny: Path, *, base_frozen: bool = True) -> None:
    assert result.last_loss < result.first_loss
    trained = {strip(k): v for k, v in result.model.state_dict().items()}
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in trained.items())
    if base_frozen:
        for name, tensor in base_state(tiny).items():
            assert torch.equal(trained[name], tensor), f"frozen {name} changed"


def test_freeze_trains_only_last_layers_and_named_modules(tmp_path: Path, tiny_qwen2: Path) -> None:
    from transformers import AutoModelForCausalLM

    method = {"type": "freeze", "freeze": {"trainable_layers": 1, "extra_modules": ["norm"]}}
    result = run(tmp_path, method)
    assert result.last_loss < result.first_loss
    base = base_state(tiny_qwen2)
    after = result.model.state_dict()
    n_layers = result.model.config.num_hidden_layers
    for name, tensor in base.items():
        should_train = (
            name.startswith(f"model.layers.{n_layers - 1}.") or name == "model.norm.weight"
        )
        assert torch.equal(after[name], tensor) != should_train, name
    reloaded = AutoModelForCausalLM.from_pretrained(result.run_dir / "model")
    assert torch.equal(logits(reloaded), logits(result.model))


@pytest.mark.parametrize(
    "lora",
    [
        {"use_dora": True},
        {"use_rslora": True},
        {"lora_plus_ratio": 16},
        {"modules_to_save": ["lm_head"], "rank": 4},
    ],
    ids=["dora", "rslora", "lora_plus", "modules_to_save"],
)
def test_lora_variants(tmp_path: Path, tiny_qwen2: Path, lora: dict[str, Any]) -> None:
    result = run(tmp_path, {"type": "lora", "lora": lora})
    check_lora_family(result, tiny_qwen2)
    reloaded = peft_reload(tiny_qwen2, result.run_dir / "adapter")
    assert torch.equal(logits(reloaded), logits(result.model))
    if "modules_to_save" in lora:
        state = result.model.state_dict()
        copy = next(v for k, v in state.items() if "lm_head.modules_to_save" in k)
        assert not torch.equal(copy, base_state(tiny_qwen2)["lm_head.weight"])
    if "use_dora" in lora:
        assert any("lora_magnitude_vector" in k for k in result.model.state_dict())


def test_lora_plus_gives_b_matrices_a_higher_lr(tmp_path: Path, tiny_qwen2: Path) -> None:
    from tunesmith.model.adapters import apply_method
    from tunesmith.model.loader import load_model

    cfg = load_config(
        tree={
            "data": {"datasets": [{"path": "builtin:general"}]},
            "method": {"type": "lora", "lora": {"lora_plus_ratio": 8}},
            "train": {"lr": 1e-4},
        }
    )
    model = apply_method(load_model(str(tiny_qwen2)), cfg.method)
    opt = sft.make_optimizer(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        kinds = {"lora_B" in names[id(p)] for p in group["params"]}
        assert len(kinds) == 1
        assert group["lr"] == pytest.approx(8e-4 if kinds.pop() else 1e-4)


def test_pissa_adapter_applies_to_the_original_base(tmp_path: Path, tiny_qwen2: Path) -> None:
    result = run(tmp_path, {"type": "lora", "lora": {"init": "pissa", "rank": 8}})
    assert result.last_loss < result.first_loss
    reloaded = peft_reload(tiny_qwen2, result.run_dir / "adapter")
    diff = (logits(reloaded) - logits(result.model)).abs().max()
    assert diff < 1e-3, diff  # converted to plain LoRA (rank 2r) on the untouched base


@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_trains_on_cpu_and_reloads(tmp_path: Path, tiny_qwen2: Path, bits: int) -> None:
    from transformers import BitsAndBytesConfig

    result = run(tmp_path, {"type": "qlora", "quant": {"bits": bits}}, lr=5e-3)
    assert result.last_loss < result.first_loss
    linear_cls = {type(m).__name__ for m in result.model.modules()}
    assert ("Linear4bit" if bits == 4 else "Linear8bitLt") in linear_cls
    q = (
        BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
        )
        if bits == 4
        else BitsAndBytesConfig(load_in_8bit=True)
    )
    reloaded = peft_reload(tiny_qwen2, result.run_dir / "adapter", quantization_config=q)
    assert torch.allclose(logits(reloaded), logits(result.model), atol=1e-5)


def test_qlora_refuses_unaligned_shapes() -> None:
    from transformers import Qwen2Config

    from tunesmith.model.adapters import check_quantizable

    with pytest.raises(ConfigError, match=r"cannot be 4-bit quantised .*hidden_size=100"):
        check_quantizable(Qwen2Config(hidden_size=100, intermediate_size=256), 4)
    check_quantizable(Qwen2Config(hidden_size=128, intermediate_size=256), 4)


def test_freeze_errors_name_the_config_path(tmp_path: Path, tiny_qwen2: Path) -> None:
    with pytest.raises(ConfigError, match=r"method\.freeze\.trainable_layers 9"):
        run(tmp_path, {"type": "freeze", "freeze": {"trainable_layers": 9}})
    with pytest.raises(ConfigError, match=r"method\.freeze\.extra_modules: no parameters named x"):
        run(tmp_path, {"type": "freeze", "freeze": {"extra_modules": ["x"]}})
