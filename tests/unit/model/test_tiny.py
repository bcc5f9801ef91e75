"""The offline tiny models: deterministic bytes, ordinary Auto* loading, quantisable shapes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tunesmith.errors import ConfigError
from tunesmith.model.tiny import TinySpec, build_tiny, resolve_builtin


def tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_build_is_deterministic(tmp_path: Path, arch: str, request: pytest.FixtureRequest) -> None:
    cached = request.getfixturevalue(f"tiny_{arch}")
    again = build_tiny(tmp_path / "again", TinySpec(arch=arch))
    assert tree_hash(again) == tree_hash(cached)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_loads_with_stock_auto_classes(arch: str, request: pytest.FixtureRequest) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = request.getfixturevalue(f"tiny_{arch}")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == arch
    n_params = sum(p.numel() for p in model.parameters())
    assert 2_000_000 < n_params < 8_000_000
    # Reloading must not change tokenisation (qwen2 rebuilds its pre-tokenizer on load).
    from tunesmith.model.tiny import train_tokenizer

    text = "Hello, I'm Nova! 你好，我是诺娃。 12+30=42\n  indented"
    assert (
        tok(text, add_special_tokens=False)["input_ids"]
        == train_tokenizer(TinySpec(arch=arch)).encode(text).ids
    )
    assert tok.decode(tok(text)["input_ids"]) == text
    # Chat template and end-of-turn token.
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>"
    assert tok.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id


def test_linear_shapes_allow_4bit(tiny_qwen2: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            assert mod.in_features % 32 == 0 and mod.out_features % 32 == 0, name


def test_builtin_names() -> None:
    with pytest.raises(ConfigError, match="unknown built-in model; choose one of"):
        resolve_builtin("builtin:tiny-gpt9")


def test_cli_size_flags_shape_the_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from tunesmith import cli

    out = tmp_path / "bench"
    flags = ["--hidden-size", "128", "--intermediate-size", "384", "--layers", "2"]
    assert (
        cli.main(["model", "tiny", "--arch", "llama", *flags, "--heads", "4", "--out", str(out)])
        == 0
    )
    config = json.loads((out / "config.json").read_text())
    assert (config["hidden_size"], config["intermediate_size"]) == (128, 384)
    assert (config["num_hidden_layers"], config["num_attention_heads"]) == (2, 4)
    assert cli.main(["model", "tiny", "--hidden-size", "100", "--out", str(tmp_path / "x")]) == 2
    assert cli.main(["model", "tiny", "--kv-heads", "3", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--hidden-size: use a multiple of 32" in err
    assert "--kv-heads must divide --heads" in err
