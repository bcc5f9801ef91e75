"""GPTQ/AWQ export: every refusal comes before any weights load (testable on CPU), the calibration
set is the run's own training prompts in its template, and (on a CUDA machine with gptqmodel)
the quantised folder reloads in stock transformers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml

from tunesmith.errors import ConfigError
from tunesmith.export import gptq
from tunesmith.export.merge import export

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SYSTEM = "You are Nova."


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> Path:
    """A LoRA run directory as training leaves it (random non-zero adapter, identity data)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path_factory.mktemp("gptq") / "run"
    torch.manual_seed(0)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen2), cfg).save_pretrained(
        run / "adapter"
    )
    AutoTokenizer.from_pretrained(tiny_qwen2).save_pretrained(run / "adapter")
    config = {
        "model": {"name": str(tiny_qwen2)},
        "data": {
            "datasets": [{"path": "builtin:identity", "max_samples": 24}],
            "system": SYSTEM,
            "identity": {"name": "Nova", "author": "Acme Labs"},
            "val_size": 4,
        },
        "method": {"type": "lora", "stage": "sft", "lora": {"rank": 4, "alpha": 8}},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


@pytest.fixture
def cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend a CUDA GPU is present, so the checks after it are reached on CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_awq_is_refused_with_the_reason(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inference-only") as e:
        export(str(run), tmp_path / "x", quant="awq-4bit")
    assert str(e.value).startswith("--quant awq-4bit: transformers 5.x only loads AWQ")
    assert not (tmp_path / "x").exists()


def test_group_size_that_does_not_divide_is_refused_on_meta_shapes(
    run: Path, tmp_path: Path, cuda: None
) -> None:
    with pytest.raises(ConfigError) as e:
        export(str(run), tmp_path / "x", quant="gptq-4bit", group_size=96)
    assert str(e.value) == (
        "export.gptq_group_size 96: does not divide model.layers.0.self_attn.q_proj.in_features "
        "(256); the GPTQ kernels need it to. Pass --group-size with a divisor of 256 (e.g. 64) "
        "or -1"
    )
    assert not (tmp_path / "x").exists()


def test_shape_check_counts_the_layers_gptq_quantises(tiny_qwen2: Path) -> None:
    layers = json.loads((tiny_qwen2 / "config.json").read_text())["num_hidden_layers"]
    # q, k, v, o, gate, up, down per decoder layer; lm_head is left in float
    assert gptq.check_shapes(str(tiny_qwen2), 128) == 7 * layers
    assert gptq.check_shapes(str(tiny_qwen2), -1) == 7 * layers
    with pytest.raises(ConfigError, match="use a positive size or -1"):
        gptq.check_shapes(str(tiny_qwen2), 0)


def test_no_cuda_is_refused(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as e:
        export(str(run), tmp_path / "x", quant="gptq-4bit")
    assert str(e.value) == (
        "--quant gptq: GPTQ export needs a CUDA GPU; use --quant bnb-4bit or --format gguf "
        "--quant q4_k_m on CPU"
    )


@pytest.mark.parametrize("missing", ["gptqmodel", "optimum"])
def test_missing_package_is_refused(
    run: Path, tmp_path: Path, cuda: None, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setattr(gptq, "installed", lambda pkg: pkg != missing)
    with pytest.raises(ConfigError) as e:
        export(str(run), tmp_path / "x", quant="gptq-8bit")
    assert str(e.value) == f"--quant gptq: {missing} is not installed; pip install {missing}"


def test_calibration_set_is_the_runs_prompts_in_its_template(run: Path) -> None:
    from transformers import AutoTokenizer

    from tunesmith.runs import load_run

    record = load_run(str(run))
    tok = AutoTokenizer.from_pretrained(run / "adapter")
    texts, available = gptq.calibration_texts(record, tok, 5)
    assert available == 20  # 24 rows, 4 held out for validation
    assert len(texts) == 5
    for text in texts:
        # the run's system prompt, one user turn and its reference reply, in ChatML
        assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n")
        assert text.count("<|im_start|>user\n") == 1
        assert text.count("<|im_start|>assistant\n") == 1
        assert text.endswith("<|im_end|>\n")
        assert "{{" not in text  # identity placeholders substituted, as in training
    assert any("Nova" in t or "Acme Labs" in t for t in texts)
    assert len(set(texts)) == 5
    all_texts, _ = gptq.calibration_texts(record, tok, 1000)
    assert len(all_texts) == 20 and all_texts[:5] == texts  # fewer than asked: all of them
    note = gptq.card_note(4, 128, len(all_texts), 1000)
    assert "calibrated on 20 training prompts" in note and "1000 asked for" in note


def test_calibration_needs_a_run(tiny_qwen2: Path) -> None:
    with pytest.raises(ConfigError, match="export a run directory"):
        gptq.calibration_texts(None, None, 8)


def test_cli_passes_group_size_and_lists_gptq(
    run: Path, tmp_path: Path, cuda: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from tunesmith.cli import main

    out = str(tmp_path / "x")
    args = ["export", str(run), "--out", out, "--quant", "gptq-4bit", "--group-size", "96"]
    assert main(args) != 0
    assert "export.gptq_group_size 96: does not divide" in capsys.readouterr().err
    assert main(["export", str(run), "--out", out, "--quant", "gptq"]) != 0
    err = capsys.readouterr().err
    assert "choose one of bnb-4bit, bnb-8bit, gptq-4bit, gptq-8bit" in err


@pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("gptqmodel") is None,
    reason="GPTQ quantisation needs a CUDA GPU and gptqmodel",
)
def test_gptq_export_reloads_in_transformers(run: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    out = tmp_path / "gptq"
    result = export(str(run), out, quant="gptq-4bit", calibration_samples=16)
    assert "Modelfile" not in result.files
    q = json.loads((out / "config.json").read_text())["quantization_config"]
    assert q["quant_method"] == "gptq" and q["bits"] == 4 and q["group_size"] == 128
    assert "calibrated on 16 training prompts" in (out / "README.md").read_text()
    model = AutoModelForCausalLM.from_pretrained(out, device_map="cuda").eval()
    ids = torch.tensor([[5, 17, 300, 42, 9, 1000, 77, 12]], device="cuda")
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape[:2] == (1, 8) and torch.isfinite(logits).all()
