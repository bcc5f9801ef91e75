"""Shared fixtures: offline environment, tiny models built once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built-in models go to a per-session cache, never the user's."""
    cache = tmp_path_factory.mktemp("tunesmith-cache")
    os.environ["TUNESMITH_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread: as fast for these tiny models on a quiet CPU, far faster on a busy one.

    Modules that generate text use it with ``pytestmark = pytest.mark.usefixtures(...)``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_qwen2(_isolated_cache: Path) -> Path:
    """The built-in tiny Qwen2 (tokenizer + random-init model), built once."""
    from tunesmith.model.tiny import resolve_builtin

    return resolve_builtin("builtin:tiny-qwen2")


@pytest.fixture(scope="module")
def qwen2_engine(tiny_qwen2: Path) -> Iterator[Any]:
    """An inference engine on the tiny Qwen2 (fp32, CPU), one per test module, closed after it."""
    from tunesmith.infer.engine import Engine

    eng = Engine.load(str(tiny_qwen2), dtype="float32", device="cpu")
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def tiny_llama(_isolated_cache: Path) -> Path:
    """The built-in tiny Llama, built once."""
    from tunesmith.model.tiny import resolve_builtin

    return resolve_builtin("builtin:tiny-llama")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (real public demo data)."""
    return SHARED_DATA


@pytest.fixture(scope="session")
def sharp_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny LLaVA with its LM and projector matrices scaled up (a LLaVA checkpoint folder):
    random init repeats one token, this gives answers that vary with the image."""
    import torch

    from tunesmith.model.multimodal import load_vlm

    out = tmp_path_factory.mktemp("sharp-llava")
    model, processor = load_vlm("builtin:tiny-llava")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and "vision_tower" not in name:
                p.mul_(6)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture
def fp32_accelerator() -> Any:
    """A CPU fp32 ``Accelerator``, whatever precision an earlier run in this session left in
    Accelerate's process-wide state (on some CPUs ``precision: auto`` picks bf16)."""
    from accelerate import Accelerator

    from tunesmith.train.recipes.sft import allow_precision

    allow_precision("no")
    return Accelerator(cpu=True, mixed_precision="no")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every socket lookup or connection fails (and is recorded): no test reaches a network."""
    import socket

    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Hub downloads allowed (tests run offline by default), with an empty HF cache."""
    from huggingface_hub import constants

    from tunesmith.model import loader

    cache = tmp_path / "hf-hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    loader._hub_probe.clear()
    return cache
