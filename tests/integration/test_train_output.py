"""What ``tunesmith train --no-progress`` prints for a LoRA run (issue 15): a plain line every
``train.log_every`` steps, and no third-party deprecation warnings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lora_stderr(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> str:
    tmp = tmp_path_factory.mktemp("lora-output")
    tree = {
        "data": {
            "datasets": [{"path": "builtin:identity", "samples": 32}],
            "identity": {"name": "Nova", "author": "the Tunesmith team"},
            "max_length": 64,
        },
        "method": {"type": "lora", "lora": {"rank": 4, "alpha": 8}},
        "train": {
            "max_steps": 4,
            "batch_size": 4,
            "log_every": 2,
            "threads": 1,
            "precision": "fp32",
        },
        "output": {"dir": str(tmp / "run")},
    }
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(tree))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("TUNESMITH_VERBOSE", None)
    env.pop("PYTHONWARNINGS", None)
    cmd = [sys.executable, "-m", "tunesmith", "train", str(tmp / "cfg.yaml"), "--no-progress"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stderr


def test_a_lora_run_prints_no_deprecation_warnings(lora_stderr: str) -> None:
    assert "is_gradient_checkpointing" not in lora_stderr
    assert not re.search(r"(Future|Deprecation)Warning", lora_stderr), lora_stderr


def test_no_progress_prints_a_line_every_log_every_steps(lora_stderr: str) -> None:
    pattern = re.compile(
        r"^step (\d+)/4  loss \d+\.\d{4}  lr \d\.\d\de[-+]\d\d  [\d,]+ tok/s  "
        r"elapsed \d+:\d\d:\d\d  eta \d+:\d\d:\d\d$"
    )
    steps = [int(m.group(1)) for line in lora_stderr.splitlines() if (m := pattern.match(line))]
    assert steps == [1, 2, 4], lora_stderr  # step 1 too: the first loss without waiting


def test_the_python_api_hides_them_too(tmp_path: Path, tiny_qwen2: Path) -> None:
    """``tunesmith.train`` in a notebook: no transformers FutureWarning either (issue 15)."""
    script = f"""
import tunesmith
cfg = tunesmith.load_config(
    "sft-lora", "train.max_steps=1",
    data={{"datasets": [{{"path": "builtin:identity", "samples": 8}}],
          "identity": {{"name": "Nova", "author": "us"}}, "max_length": 64}},
    train={{"batch_size": 4, "precision": "fp32", "threads": 1}},
    output={{"dir": {str(tmp_path / "run")!r}}},
)
tunesmith.train(cfg, progress=False)
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TUNESMITH_VERBOSE", None)
    env.pop("PYTHONWARNINGS", None)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    assert not re.search(r"(Future|Deprecation)Warning", out.stderr), out.stderr
