"""The run record: one typed read of a run directory (hand-built ones, and one real tiny run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunesmith.errors import ConfigError
from tunesmith.runs import TemplateInfo, has_tokenizer, is_run_dir, load_run, read_jsonl


def make_run(root: Path, config: dict | None = None, *, folder: str | None = "adapter") -> Path:
    """A run directory by hand: ``config.yaml`` and optionally ``adapter/`` or ``model/``.

    ``config`` is given sections on top of a tiny-llama base trained on ``builtin:identity``.
    """
    root.mkdir(parents=True, exist_ok=True)
    cfg = {"model": {"name": "builtin:tiny-llama"}, **(config or {})}
    cfg.setdefault("data", {}).setdefault("datasets", [{"path": "builtin:identity"}])
    (root / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    if folder is not None:
        (root / folder).mkdir()
        (root / folder / "tokenizer_config.json").write_text("{}", encoding="utf-8")
    return root


def test_adapter_run_fields(tmp_path: Path) -> None:
    cfg = {"model": {"name": "builtin:tiny-llama", "template": "llama3"}, "data": {"system": "Hi"}}
    run = load_run(make_run(tmp_path / "r", cfg))
    assert run.dir == tmp_path / "r"
    assert run.base == "builtin:tiny-llama"
    assert run.config.model.template == "llama3"
    assert run.config.train.lr == pytest.approx(2e-4)  # a schema default, not a missing key
    assert run.adapter == tmp_path / "r" / "adapter"
    assert run.weights is None
    assert run.tokenizer_dir == run.adapter
    assert run.finished is True
    assert run.template is None
    assert run.system == "Hi"


def test_full_run_without_saved_tokenizer(tmp_path: Path) -> None:
    root = make_run(tmp_path / "r", folder=None)
    (root / "model").mkdir()
    run = load_run(root)
    assert (run.weights, run.adapter, run.tokenizer_dir) == (root / "model", None, None)
    assert run.finished is True


def test_unfinished_run_reads_its_logs(tmp_path: Path) -> None:
    root = make_run(tmp_path / "r", folder=None)
    (root / "metrics.jsonl").write_text(
        '{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 2.0}\n{"step": 3, "lo', encoding="utf-8"
    )  # killed while appending step 3
    (root / "samples.jsonl").write_text('{"step": 2, "prompt": "a", "text": "b"}\n')
    run = load_run(root)
    assert run.finished is False
    assert run.metrics() == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0}]
    assert run.samples() == [{"step": 2, "prompt": "a", "text": "b"}]
    assert run.summary() is None
    assert run.evals() == {}
    assert run.data_report_text() is None


def test_logs_are_read_when_asked_not_at_load(tmp_path: Path) -> None:
    root = make_run(tmp_path / "r")
    run = load_run(root)
    assert run.metrics() == []
    (root / "metrics.jsonl").write_text('{"step": 1, "loss": 1.5}\n', encoding="utf-8")
    assert run.metrics() == [{"step": 1, "loss": 1.5}]


def test_summary_evals_and_report(tmp_path: Path) -> None:
    root = make_run(tmp_path / "r")
    (root / "train_summary.json").write_text('{"steps": 10, "last_loss": 0.5}')
    (root / "data_report.md").write_text("# Data\n", encoding="utf-8")
    (root / "eval").mkdir()
    ppl = {"task": "perplexity", "name": "ppl", "metrics": {"loss": 1.0, "perplexity": 2.718}}
    (root / "eval" / "ppl.json").write_text(json.dumps(ppl))
    (root / "eval" / "ppl.predictions.jsonl").write_text('{"id": 0}\n')
    (root / "eval" / "a.json").write_text('{"task": "generation", "metrics": {}}')
    run = load_run(root)
    assert run.summary() == {"steps": 10, "last_loss": 0.5}
    assert run.data_report_text() == "# Data\n"
    assert list(run.evals()) == ["a", "ppl"]  # predictions files are not results
    assert run.evals()["ppl"] == ppl


def test_template_json(tmp_path: Path) -> None:
    root = make_run(tmp_path / "r", {"data": {"system": "From config"}})
    (root / "template.json").write_text(
        json.dumps(
            {
                "template": "glm4",
                "stops": ["<|user|>", "<|observation|>"],
                "system": "Be brief.",
                "default_system": None,
            }
        )
    )
    run = load_run(root)
    assert run.template == TemplateInfo("glm4", ("<|user|>", "<|observation|>"), "Be brief.", None)
    assert run.system == "Be brief."  # template.json is what inference follows


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "template.json: not valid JSON"),
        ("[]", "template.json: expected a JSON object"),
        ('{"template": "x", "stops": "<|im_end|>"}', "'stops' must be a list of non-empty"),
        ('{"template": "x", "stops": [""]}', "'stops' must be a list of non-empty"),
        ('{"stops": []}', "'template' must be a string (got None)"),
        ('{"template": "x", "stops": [], "system": 3}', "'system' must be a string or null"),
    ],
)
def test_bad_template_json(tmp_path: Path, content: str, message: str) -> None:
    root = make_run(tmp_path / "r")
    (root / "template.json").write_text(content)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as exc:
        load_run(root)
    assert "\n" not in str(exc.value) and str(root / "template.json") in str(exc.value)


def test_bad_config_names_file_and_key(tmp_path: Path) -> None:
    root = make_run(tmp_path / "r", {"train": {"lrr": 1e-3}})
    with pytest.raises(ConfigError) as exc:
        load_run(root)
    assert str(exc.value) == (
        f"{root / 'config.yaml'}: train.lrr: unknown key; did you mean train.lr?; "
        "fix the key there (was the run written by another tunesmith version?)"
    )


def test_bad_metrics_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"metrics.jsonl:2: not a JSON object; delete the line"):
        read_jsonl(path)


def test_not_a_run_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; give the folder a training run wrote"):
        load_run(tmp_path / "missing")
    model = tmp_path / "model"  # a model folder with a config.yaml of its own is not a run
    model.mkdir()
    (model / "config.yaml").write_text("a: 1\n")
    (model / "config.json").write_text("{}")
    assert not is_run_dir(model)
    with pytest.raises(ConfigError, match=r"is not a run directory \(no config.yaml\)"):
        load_run(model)
    assert not has_tokenizer(model)


def test_real_tiny_run(tmp_path: Path, tiny_qwen2: Path) -> None:
    """A real (two-step) LoRA run reads back: config as trained, adapter, logs, summary."""
    from tunesmith.config.load import load_config
    from tunesmith.train.recipes import sft

    cfg = load_config(
        tree={
            "data": {
                "datasets": [{"path": "builtin:general", "samples": 8}],
                "max_length": 64,
            },
            "method": {"type": "lora", "lora": {"rank": 4, "alpha": 8}},
            "train": {"max_steps": 2, "batch_size": 4, "log_every": 1, "warmup_ratio": 0},
            "output": {"dir": str(tmp_path / "run")},
        }
    )
    result = sft.run(cfg, show_progress=False)
    run = load_run(tmp_path / "run")
    assert run.config.model_dump() == cfg.model_dump()
    assert run.base == "builtin:tiny-qwen2"
    assert run.finished and run.adapter == tmp_path / "run" / "adapter" and run.weights is None
    assert run.tokenizer_dir == run.adapter
    assert [r["step"] for r in run.metrics() if "loss" in r] == [1, 2]
    summary = run.summary()
    assert summary is not None
    assert (summary["steps"], summary["last_loss"]) == (2, result.last_loss)
    assert run.metrics()[-1]["loss"] == pytest.approx(result.last_loss, abs=1e-4)
    # template.json, as the scaffold writes it: the tokenizer's own ChatML template
    assert run.template == TemplateInfo("tokenizer", ("<|im_end|>",), None, None)
    report = run.data_report_text()
    assert report is not None and "builtin:general" in report
