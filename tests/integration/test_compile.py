"""train.compile: the compiled model trains to the same numbers as the eager one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunesmith.config.load import load_config
from tunesmith.train.recipes import sft

pytestmark = pytest.mark.slow


def run(tmp_path: Path, compile_: bool) -> sft.TrainResult:
    tree = {
        "data": {
            "datasets": [{"path": "builtin:general", "samples": 64}],
            "max_length": 128,
        },
        "method": {"type": "full"},
        "train": {
            "precision": "fp32",
            "lr": 1e-3,
            "max_steps": 3,
            "batch_size": 4,
            "log_every": 1,
            "compile": compile_,
        },
        "output": {"dir": str(tmp_path / f"run-{compile_}")},
    }
    return sft.run(load_config(tree=tree), show_progress=False)


def test_compiled_training_matches_eager(tmp_path: Path, tiny_qwen2: Path) -> None:
    eager, compiled = run(tmp_path, False), run(tmp_path, True)
    assert compiled.last_loss == pytest.approx(eager.last_loss, rel=1e-4)
    a, b = eager.model.state_dict(), compiled.model.state_dict()
    assert a.keys() == b.keys()  # compiled in place: parameter names unchanged
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
    summary = json.loads((compiled.run_dir / "train_summary.json").read_text())
    assert summary["ce_impl"] == "chunked"  # only the decoder layers compile: the loss stays fused
    assert summary["first_step_s"] > summary["median_step_s"]  # the first step compiled
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(compiled.run_dir / "model")
    for k, v in reloaded.state_dict().items():
        assert torch.equal(v, b[k])
