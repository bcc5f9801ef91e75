"""`tunesmith env`: what a bug report needs, in text or JSON, without a long measurement."""

from __future__ import annotations

import json
from importlib import metadata

import pytest

from tunesmith.cli import main


@pytest.fixture
def no_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bf16 timing precision ``auto`` does on a CPU must not run by default."""
    from tunesmith.train import precision

    def refuse(*args: object, **kwargs: object) -> float:
        raise AssertionError("env measured bf16 speed without --measure")

    monkeypatch.setattr(precision, "cpu_bf16_speedup", refuse)
    monkeypatch.setattr(precision, "cpu_bf16_attention_speedup", refuse)


def test_env_text(capsys: pytest.CaptureFixture[str], no_measuring: None) -> None:
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    for key in (
        "tunesmith",
        "python",
        "torch",
        "transformers",
        "peft",
        "accelerate",
        "bitsandbytes",
        "cpu",
        "cpu flags",
        "gpus",
        "precision auto",
        "attention",
        "tunesmith cache",
        "hf cache",
    ):
        assert any(line.startswith(f"{key} ") for line in out.splitlines()), key
    assert metadata.version("torch") in out


def test_env_json(
    capsys: pytest.CaptureFixture[str], no_measuring: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = metadata.version

    def version(name: str) -> str:
        if name == "bitsandbytes":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)
    monkeypatch.setenv("TUNESMITH_CACHE", "/somewhere/cache")
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["packages"]["bitsandbytes"] == "not installed"
    assert info["packages"]["torch"] == real("torch")
    assert info["python"].split()[0].count(".") == 2
    assert isinstance(info["cpu"]["flags"], dict) and "amx_bf16" in info["cpu"]["flags"]
    assert info["gpus"] == []  # no CUDA here
    assert info["precision_auto"]["choice"] in ("fp32", "bf16", "measured at training start")
    assert info["attention"]["default"] == "sdpa"
    assert info["caches"]["tunesmith"] == "/somewhere/cache"
    assert "hf_hub" in info["caches"]


def test_env_measure(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from tunesmith.train import precision

    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda *a, **k: 1.5)
    monkeypatch.setattr(precision, "cpu_bf16_attention_speedup", lambda *a, **k: 0.9)
    monkeypatch.setattr(precision, "cpu_has_bf16_units", lambda: True)
    assert main(["env", "--json", "--measure"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["precision_auto"]["choice"] == "bf16"
    assert info["precision_auto"]["bf16_speedup"] == 1.5
    assert "attention in fp32" in info["precision_auto"]["why"]
    assert info["precision_auto"]["attention_bf16_speedup"] == 0.9
    assert "fp32 attention: bf16 measures 0.90x fp32" in info["precision_auto"]["why"]
    assert "1.2x fp32" in info["attention"]["cpu_bf16"]


def test_env_with_a_gpu(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CUDA branch, on a faked device (no GPU here): names, memory, and auto -> bf16."""
    import types

    import torch

    props = types.SimpleNamespace(name="NVIDIA H200", total_memory=141 * 2**30, major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["gpus"] == [
        {"index": 0, "name": "NVIDIA H200", "memory_gib": 141.0, "capability": "9.0", "bf16": True}
    ]
    assert info["precision_auto"]["choice"] == "bf16"
    assert "cuda_sdpa_kernels" in info["attention"]
    assert main(["env"]) == 0
    gpus = [line for line in capsys.readouterr().out.splitlines() if line.startswith("gpus ")]
    assert gpus[0].endswith("  0: NVIDIA H200 (141.0 GiB, sm 9.0, bf16)")
