"""train.compile compiles the decoder layers one by one, and says so when a model has none."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tunesmith.train.compile import compile_layers, decoder_layers


def test_the_decoder_layers_compile_in_place(tiny_qwen2: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    names = list(model.state_dict())
    layers = decoder_layers(model)
    assert [type(m).__name__ for m in layers] == ["Qwen2DecoderLayer"] * 4
    assert compile_layers(model) == 4
    assert all(getattr(m, "_compiled_call_impl", None) is not None for m in layers)
    assert getattr(model, "_compiled_call_impl", None) is None  # the loss and head stay eager
    assert list(model.state_dict()) == names


def test_a_model_without_layer_classes_is_refused() -> None:
    with pytest.raises(ValueError, match=r"train.compile: Sequential names no decoder layers"):
        compile_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))
