"""bitsandbytes-quantised safetensors export: stock transformers reloads the 4-/8-bit weights, and
they give exactly the logits of quantising the merged model at load time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunesmith.config.schema import QuantConfig
from tunesmith.export.merge import export
from tunesmith.model.loader import load_model

pytest.importorskip("bitsandbytes")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
IDS = torch.tensor([[5, 17, 300, 42, 9, 1000, 77, 12]])


@pytest.mark.parametrize(
    ("quant", "bits", "cls"), [("bnb-4bit", 4, "Linear4bit"), ("bnb-8bit", 8, "Linear8bitLt")]
)
def test_bnb_export_reloads_in_transformers(
    tiny_qwen2: Path, tmp_path: Path, quant: str, bits: int, cls: str
) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / quant
    result = export(str(tiny_qwen2), out, quant=quant)
    assert "Modelfile" not in result.files  # Ollama does not import bitsandbytes weights
    assert "model.safetensors" in result.files
    q = json.loads((out / "config.json").read_text())["quantization_config"]
    assert q["quant_method"] == "bitsandbytes" and q[f"load_in_{bits}bit"] is True
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(reloaded.model.layers[0].self_attn.q_proj).__name__ == cls
    at_load = load_model(str(tiny_qwen2), dtype="float32", quant=QuantConfig(bits=bits)).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=IDS).logits, at_load(input_ids=IDS).logits)
    size = (out / "model.safetensors").stat().st_size
    assert size < 0.5 * (tiny_qwen2 / "model.safetensors").stat().st_size


def test_cli_refuses_gptq(
    tiny_qwen2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunesmith.cli import main

    assert main(["export", str(tiny_qwen2), "--out", str(tmp_path / "x"), "--quant", "gptq"]) != 0
    err = capsys.readouterr().err
    assert "--quant gptq: for --format hf choose one of bnb-4bit, bnb-8bit, gptq-4bit" in err
    assert "gptq-* needs a CUDA GPU and gptqmodel" in err
