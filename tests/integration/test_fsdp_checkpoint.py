"""Checkpoints of an FSDP-sharded model (FSDP2, two CPU processes): exact resume, plain layout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("fsdp_worker.py")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(model: Path, run_dir: Path, mode: str, out: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_port()}",
        str(WORKER),
        str(model),
        str(run_dir),
        mode,
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_sharded_run_resumed_from_a_checkpoint_equals_the_straight_run(
    tmp_path: Path, tiny_qwen2: Path
) -> None:
    straight, resumed = tmp_path / "straight.safetensors", tmp_path / "resumed.safetensors"
    _run(tiny_qwen2, tmp_path / "a", "straight", straight)
    _run(tiny_qwen2, tmp_path / "b", "save", tmp_path / "unused")
    _run(tiny_qwen2, tmp_path / "b", "resume", resumed)

    a, b = load_file(straight), load_file(resumed)
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0

    # The checkpoint holds full (gathered) tensors under the unsharded model's parameter names,
    # and the optimizer state of every parameter keyed by name.
    ckpt = tmp_path / "b" / "checkpoints" / "step-00000002"
    saved = load_file(ckpt / "weights.safetensors")
    plain = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    shapes = {n: tuple(p.shape) for n, p in plain.named_parameters()}
    assert {n: tuple(t.shape) for n, t in saved.items()} == shapes
    moved = [n for n, p in plain.named_parameters() if not torch.equal(saved[n], p.detach())]
    assert moved, "the checkpoint holds the initial weights, not the trained ones"
    optim = torch.load(ckpt / "optimizer.pt", weights_only=True)
    assert set(optim["state"]) == set(shapes)
    assert all(int(s["step"]) == 2 for s in optim["state"].values())
