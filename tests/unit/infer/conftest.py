"""Models for engine tests: a 'sharpened' tiny model whose greedy answers vary token to token,
and random (non-zero) LoRA / DoRA adapters for it."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every module here runs on one torch thread (see ``one_torch_thread``)."""


@pytest.fixture(scope="session")
def sharp_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> Path:
    """The tiny Qwen2 with its matrices scaled up: random init repeats one token, this doesn't."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("sharp")
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.mul_(6)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_qwen2).save_pretrained(out)
    return out


def make_adapter(base: Path, out: Path, *, seed: int, dora: bool = False) -> Path:
    """A LoRA (or DoRA) adapter with random, non-zero B matrices, saved with peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    cfg = LoraConfig(
        r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False, use_dora=dora
    )
    get_peft_model(model, cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def adapter_dirs(tmp_path_factory: pytest.TempPathFactory, sharp_model_dir: Path) -> dict:
    """Two LoRA adapters and one DoRA adapter on the sharpened model."""
    root = tmp_path_factory.mktemp("adapters")
    return {
        "alpha": make_adapter(sharp_model_dir, root / "alpha", seed=1),
        "beta": make_adapter(sharp_model_dir, root / "beta", seed=2),
        "dora": make_adapter(sharp_model_dir, root / "dora", seed=3, dora=True),
    }
