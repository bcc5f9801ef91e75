"""Exact resume: a run killed with SIGKILL and resumed ends with the uninterrupted run's weights."""

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


def write_config(path: Path, run_dir: Path, **train: object) -> Path:
    tree = {
        "data": {
            "datasets": [
                {"path": "builtin:identity", "samples": 64},
                {"path": "builtin:general", "samples": 64},
            ],
            "identity": {"name": "Nova", "author": "the Tunesmith team"},
            "max_length": 128,
        },
        "method": {"type": "full"},
        "train": {
            "precision": "fp32",  # bit-exact comparison; auto may pick bf16
            "lr": 2e-3,
            "max_steps": 12,
            "batch_size": 2,
            "grad_accum": 2,
            "save_every": 2,
            "keep_last": 2,
            "log_every": 1,
            "threads": 1,
            **train,
        },
        "output": {"dir": str(run_dir)},
    }
    path.write_text(yaml.safe_dump(tree))
    return path


def train_cmd(cfg: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "tunesmith", "train", str(cfg), "--no-progress", *overrides]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / "model" / "model.safetensors")


def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path, tiny_qwen2: Path) -> None:
    straight = tmp_path / "straight"
    cfg = write_config(tmp_path / "straight.yaml", straight)
    subprocess.run(train_cmd(cfg), check=True, env=env(), timeout=600)

    killed = tmp_path / "killed"
    cfg_k = write_config(tmp_path / "killed.yaml", killed)
    proc = subprocess.Popen(
        train_cmd(cfg_k), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    target = killed / "checkpoints" / "step-00000006"
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    time.sleep(0.7)  # somewhere inside a later step (or a checkpoint write)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model").exists()

    out = subprocess.run(
        train_cmd(cfg_k, "train.resume=auto"),
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "resumed from" in out.stdout + out.stderr
    a, b = weights(straight), weights(killed)
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, f"resumed run differs by {worst}"
    # the metrics history has every step exactly once
    import json

    steps = [json.loads(x)["step"] for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [s for s in steps if s] == sorted(set(steps))


def test_resume_skips_a_damaged_checkpoint_and_a_torn_metrics_line(
    tmp_path: Path, tiny_qwen2: Path
) -> None:
    """Issue 14: the newest checkpoint's marker torn, the metrics' last line torn (a kill while
    they were written or copied): --resume says so, continues from the older checkpoint and ends
    with the uninterrupted run's weights. Issue 15: a plain re-run is refused, --overwrite not."""
    import json

    run_dir = tmp_path / "run"
    cfg = write_config(tmp_path / "cfg.yaml", run_dir, max_steps=4)
    first = subprocess.run(train_cmd(cfg), env=env(), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    straight = weights(run_dir)
    older, newest = (run_dir / "checkpoints" / f"step-0000000{n}" for n in (2, 4))
    marker = newest / "complete.json"
    marker.write_bytes(marker.read_bytes()[:40])
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "lo')

    out = subprocess.run(
        train_cmd(cfg, "--resume"), env=env(), capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    said = "".join((out.stdout + out.stderr).split())  # rich wraps long lines, even in a path
    assert "".join(f"skipping {newest}: complete.json is not valid JSON".split()) in said
    assert "".join(f"resumed from {older} (step 2)".split()) in said
    resumed = weights(run_dir)
    assert max(float((straight[k] - resumed[k]).abs().max()) for k in straight) <= 1e-6
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(x)["step"] for x in lines]
    assert steps == [1, 2, 3, 4]  # each once: the torn line and the replayed steps are gone

    again = subprocess.run(train_cmd(cfg), env=env(), capture_output=True, text=True, timeout=600)
    errors = [line for line in again.stderr.splitlines() if line.startswith("error:")]
    assert again.returncode == 2 and "Traceback" not in again.stderr, again.stderr
    assert len(errors) == 1 and "holds a finished run" in errors[0]
    assert "--overwrite (output.overwrite=true)" in errors[0]
    assert weights(run_dir).keys() == straight.keys()  # untouched
