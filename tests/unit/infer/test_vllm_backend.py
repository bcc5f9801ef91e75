"""``serve --backend vllm``: the vllm command names the same models, adapters and chat template
as the in-house server; a live round trip runs only where vllm (and a GPU) is present."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tunesmith.errors import ConfigError
from tunesmith.infer.vllm_backend import plan_vllm, vllm_available


def make_run(root: Path, base: Path, rank: int = 8) -> Path:
    """A LoRA run directory as training leaves it (random adapter, tokenizer with template)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = root / "nova"
    torch.manual_seed(0)
    cfg = LoraConfig(r=rank, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), cfg).save_pretrained(run / "adapter")
    tok = AutoTokenizer.from_pretrained(base)
    tok.chat_template = tok.chat_template + "{#- trained #}"
    tok.save_pretrained(run / "adapter")
    config = {
        "model": {"name": str(base)},
        "data": {"datasets": [{"path": "builtin:identity"}]},
        "method": {"type": "lora", "lora": {"rank": rank}},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> Path:
    return make_run(tmp_path_factory.mktemp("vllm"), tiny_qwen2)


def test_plan_serves_the_run_and_its_adapters(run: Path, tiny_qwen2: Path, tmp_path: Path) -> None:
    extra = make_run(tmp_path / "x", tiny_qwen2, rank=24) / "adapter"
    plan = plan_vllm(
        str(run), {"other": str(extra)}, port=8123, api_key="k", max_batch=4, workdir=tmp_path
    )
    argv = plan.argv
    assert argv[:3] == ["vllm", "serve", str(tiny_qwen2)]
    flag = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}
    assert flag["--served-model-name"] == str(tiny_qwen2.resolve().name)
    assert flag["--port"] == "8123" and flag["--api-key"] == "k" and flag["--max-num-seqs"] == "4"
    assert "--enable-lora" in argv
    assert flag["--max-lora-rank"] == "32"  # the largest adapter rank (24), rounded up
    modules = argv[argv.index("--lora-modules") + 1 :][:2]
    assert modules == [f"nova={(run / 'adapter').resolve()}", f"other={extra.resolve()}"]
    assert plan.served == [tiny_qwen2.resolve().name, "nova", "other"]
    template = Path(flag["--chat-template"]).read_text()
    assert template.endswith("{#- trained #}")  # the run's template, not the base's
    assert flag["--tokenizer"] == str((run / "adapter").resolve())


def test_plan_refuses_what_vllm_cannot_load(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bitsandbytes 4-bit only"):
        plan_vllm(str(run), bits=8, workdir=tmp_path)
    with pytest.raises(ConfigError, match="folder not found"):
        plan_vllm(str(run), {"x": str(tmp_path / "missing")}, workdir=tmp_path)


@pytest.mark.skipif(vllm_available(), reason="vllm is installed here")
def test_cli_says_vllm_is_missing(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tunesmith.cli import main

    assert main(["serve", str(run), "--backend", "vllm"]) != 0
    assert "--backend vllm: vllm is not installed" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.skipif(not vllm_available(), reason="vllm is not installed (GPU machines only)")
def test_vllm_serves_the_same_greedy_text(run: Path) -> None:
    import httpx

    from tunesmith.infer.engine import Engine, GenParams

    port = _free_port()
    cmd = [sys.executable, "-m", "tunesmith", "serve", str(run), "--backend", "vllm"]
    proc = subprocess.Popen([*cmd, "--port", str(port), "--dtype", "float32"])
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        ids = [m["id"] for m in httpx.get(f"{url}/models").json()["data"]]
        assert "nova" in ids
        messages = [{"role": "user", "content": "Who are you?"}]
        body = {"model": "nova", "messages": messages, "max_tokens": 16, "temperature": 0}
        got = httpx.post(f"{url}/chat/completions", json=body, timeout=120).json()
        text = got["choices"][0]["message"]["content"]
        want = Engine.load(str(run)).generate([messages], GenParams(max_new_tokens=16))[0]
        assert text == want, json.dumps(got)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
