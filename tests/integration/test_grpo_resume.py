"""Exact resume of a GRPO run: SIGKILL mid-run, resume, same adapter as the uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def write_config(folder: Path, run_dir: Path, model: Path, warmup: int) -> Path:
    (folder / "ts_resume_reward.py").write_text(
        "def distinct(prompt, completion, sample):\n    return len(set(completion)) / 10\n"
    )
    tree = {
        "model": {"name": str(model)},
        "data": {"datasets": [{"path": "builtin:prefs_arith", "max_samples": 40}]},
        "method": {
            "stage": "grpo",
            "type": "lora",
            "grpo": {
                "group_size": 4,
                "max_new_tokens": 6,
                "beta": 0.1,
                "rewards": [{"kind": "function", "function": "ts_resume_reward:distinct"}],
                "warmup_steps": warmup,  # full fine-tuning, repeated before the checkpoint loads
            },
        },
        "train": {
            "precision": "fp32",
            "lr": 5e-3,
            "max_steps": 8,
            "batch_size": 2,
            "grad_accum": 2,
            "save_every": 2,
            "keep_last": 2,
            "log_every": 1,
            "threads": 1,
        },
        "output": {"dir": str(run_dir)},
    }
    path = folder / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def cmd(cfg: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tunesmith", "train", str(cfg), "--no-progress", *extra]


def env(folder: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(folder)}


def weights(run_dir: Path) -> dict:
    """The saved adapter, or the merged weights of a run with a warm-up."""
    from safetensors.torch import load_file

    if (run_dir / "adapter").is_dir():
        return load_file(run_dir / "adapter" / "adapter_model.safetensors")
    return load_file(run_dir / "model" / "model.safetensors")


@pytest.mark.parametrize("warmup", [0, 4])
def test_grpo_sigkill_then_resume_equals_uninterrupted(
    tmp_path: Path, tiny_qwen2: Path, warmup: int
) -> None:
    straight = tmp_path / "straight"
    cfg = write_config(tmp_path, straight, tiny_qwen2, warmup)
    subprocess.run(cmd(cfg), check=True, env=env(tmp_path), timeout=600)

    killed = tmp_path / "killed"
    cfg_k = write_config(tmp_path, killed, tiny_qwen2, warmup)
    proc = subprocess.Popen(
        cmd(cfg_k), env=env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    target = killed / "checkpoints" / "step-00000004"
    deadline = time.time() + 300
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "adapter").exists() and not (killed / "model").exists()

    out = subprocess.run(
        cmd(cfg_k, "train.resume=auto"),
        env=env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "resumed from" in out.stdout + out.stderr
    a, b = weights(straight), weights(killed)
    assert a.keys() == b.keys()
    if not warmup:
        assert any(float(v.abs().max()) > 0 for k, v in a.items() if "lora_B" in k)  # it trained
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, f"resumed run differs by {worst}"
