"""The Python API end to end, twice in one process, as a notebook re-running its cells would.

load_config -> train (a few steps, LoRA on the tiny model) -> chat -> export, then all of it again
into fresh directories: the second pass must work as the first did (an earlier bug left
Accelerate's process-wide state from the first run in the way of the second).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import tunesmith

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_chat_export_twice_in_one_process(tmp_path: Path, tiny_qwen2: Path) -> None:
    answers = []
    for i in range(2):
        cfg = tunesmith.load_config(
            "sft-lora",
            "train.max_steps=2",
            data={
                "datasets": [{"path": "builtin:identity", "samples": 32}],
                "identity": {"name": "Nova", "author": "the tests"},
                "max_length": 64,
            },
            train={"batch_size": 4, "precision": "fp32", "log_every": 1},
            output={"dir": str(tmp_path / f"run{i}")},
        )
        result = tunesmith.train(cfg, progress=False)
        assert result.run_dir == tmp_path / f"run{i}" and result.steps == 2
        assert (result.run_dir / "adapter" / "adapter_config.json").is_file()

        answer = tunesmith.chat(result.run_dir, "Who are you?", max_new_tokens=8)
        assert isinstance(answer, str)
        engine = tunesmith.Engine.load(str(result.run_dir))
        assert tunesmith.chat(engine, "Who are you?", max_new_tokens=8) == answer
        answers.append(answer)

        out = tunesmith.export(result.run_dir, tmp_path / f"export{i}")
        assert out.merged and (out.out / "config.json").is_file()
        assert "model.safetensors" in out.files and "Modelfile" in out.files
        merged = tunesmith.chat(out.out, "Who are you?", max_new_tokens=8)
        assert isinstance(merged, str)
    assert answers[0] == answers[1]  # same seed, same data: the second pass repeats the first
