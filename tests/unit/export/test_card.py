"""The model card says what was trained, on what, and how well, with Hub-style metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config.load import load_config
from tunesmith.config.schema import RunConfig
from tunesmith.export.card import hub_id, method_line, model_card, run_card

RUN_CONFIG = {
    "model": {"name": "builtin:tiny-qwen2"},
    "data": {
        "datasets": [
            {"path": "builtin:identity", "samples": 48, "format": "auto"},
            {"path": "data/chat.jsonl", "weight": 0.5, "format": "sharegpt"},
        ],
        "system": "You are Nova.",
    },
    "method": {
        "type": "lora",
        "stage": "sft",
        "lora": {"rank": 8, "alpha": 16, "targets": "all-linear"},
    },
}
HUB = "Qwen/Qwen2.5-0.5B-Instruct"


def config(name: str = HUB, kind: str = "lora", stage: str = "sft") -> dict[str, Any]:
    method = {**RUN_CONFIG["method"], "type": kind, "stage": stage}
    return {**RUN_CONFIG, "model": {"name": name}, "method": method}


def front_matter(card: str) -> dict[str, Any]:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def typed(tree: dict[str, Any]) -> RunConfig:
    """``tree`` validated as a run's config (a data set added when it names none)."""
    data = {"datasets": [{"path": "builtin:identity"}], **tree.get("data", {})}
    return load_config(tree={**tree, "data": data})


def card(cfg: dict[str, Any] | None, *, adapter_only: bool = False, **kw: Any) -> str:
    args: dict[str, Any] = {"name": "nova", "run_dir": None, "dtype": "float32"}
    base = (cfg or {}).get("model", {}).get("name", "b")
    config = typed(cfg) if cfg is not None else None
    return model_card(base=base, config=config, adapter_only=adapter_only, **(args | kw))


def test_method_line() -> None:
    assert method_line(typed(RUN_CONFIG), merged=True) == (
        "LoRA rank 8, alpha 16, targets all-linear (sft); merged into the base weights"
    )
    dora = {
        "method": {
            "type": "lora",
            "lora": {"rank": 4, "alpha": 8, "targets": ["q_proj"], "use_dora": True},
        }
    }
    assert method_line(typed(dora), merged=False).startswith(
        "DoRA rank 4, alpha 8, targets ['q_proj']"
    )
    assert method_line(typed({"method": {"type": "full"}}), merged=True) == (
        "full fine-tuning (sft)"
    )
    pretrain = {"method": {"type": "lora", "stage": "vlm_pretrain"}}
    assert method_line(typed(pretrain), merged=False) == "projector only (vlm_pretrain)"


def test_card_lists_base_data_and_metrics(tmp_path: Path) -> None:
    (tmp_path / "train_summary.json").write_text(
        json.dumps({"first_loss": 3.5, "last_loss": 0.75, "steps": 10, "seconds": 4.2})
    )
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 1, "loss": 3}\n{"step": 10, "loss": 1, "val_loss": 0.9}\n'
    )
    (tmp_path / "identity_eval.json").write_text(
        json.dumps({"identity_score": 0.95, "false_claim_rate": 0.0, "n": 20, "n_general": 10})
    )
    text = card(RUN_CONFIG, run_dir=tmp_path)
    assert "# nova" in text
    assert "| builtin:identity | auto | 48 |" in text
    assert "| data/chat.jsonl | sharegpt | weight 0.5 |" in text
    assert "System prompt used in training: `You are Nova.`" in text
    assert "- training loss 3.5000 -> 0.7500 over 10 steps (4.2 s)" in text
    assert "- final validation loss 0.9000" in text
    assert "- identity score 0.950 on 20 held-out questions; false-claim rate 0.000" in text


def test_card_without_a_run_directory() -> None:
    text = card(None, adapter_only=True, dtype="adapter")
    assert front_matter(text)["library_name"] == "peft"
    assert "## Data" not in text and "## Results" not in text


def test_builtin_and_local_bases_are_named_in_the_text_not_as_base_model(tmp_path: Path) -> None:
    for base in ("builtin:tiny-qwen2", str(tmp_path), "./models/mine", "/srv/models/qwen"):
        for cfg in (config(base, "full"), config(base, "lora")):
            text = card(cfg)
            meta = front_matter(text)
            assert "base_model" not in meta and "base_model_relation" not in meta, base
            assert f"`{base}`" in text
    (tmp_path / "runs" / "pre").mkdir(parents=True)  # relative to the folder trained from
    assert hub_id("runs/pre", root=tmp_path) is None
    assert hub_id("runs/pre", root=tmp_path / "elsewhere") == "runs/pre"
    assert hub_id(HUB) == HUB and hub_id("builtin:tiny-llava") is None


def test_full_fine_tune_is_a_transformers_finetune_of_its_hub_base() -> None:
    meta = front_matter(card(config(HUB, "full")))
    assert meta["base_model"] == HUB and meta["base_model_relation"] == "finetune"
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-generation"
    assert meta["tags"] == ["tunesmith", "full", "sft"]


def test_lora_metadata_merged_and_adapter_only() -> None:
    merged = front_matter(card(config(HUB, "lora", "dpo")))
    assert merged["library_name"] == "transformers" and merged["base_model"] == HUB
    assert merged["base_model_relation"] == "finetune"  # one model now, tuned from the base
    assert merged["tags"] == ["tunesmith", "lora", "dpo"]
    adapter = front_matter(card(config(HUB, "lora", "dpo"), adapter_only=True))
    assert adapter["library_name"] == "peft" and adapter["base_model"] == HUB
    assert adapter["base_model_relation"] == "adapter"
    assert adapter["tags"] == ["tunesmith", "lora", "dpo"]
    dora = config(HUB)
    dora["method"]["lora"] = {**dora["method"]["lora"], "use_dora": True}
    assert front_matter(card(dora))["tags"] == ["tunesmith", "lora", "dora", "sft"]


def test_vision_card_uses_the_image_text_classes() -> None:
    text = card(config("builtin:tiny-llava", "full", "vlm_sft"), vision=True, ollama=False)
    meta = front_matter(text)
    assert meta["pipeline_tag"] == "image-text-to-text"
    assert meta["tags"] == ["tunesmith", "full", "vlm_sft"]
    assert "AutoModelForImageTextToText" in text and "AutoProcessor" in text
    assert "AutoModelForCausalLM" not in text and "ollama create" not in text


def test_ollama_is_mentioned_only_with_a_modelfile() -> None:
    assert "ollama create" in card(config(HUB, "full"))
    assert "ollama create" not in card(config(HUB, "full"), ollama=False)


def test_run_card(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "nova"
    run.mkdir(parents=True)
    cfg = {**config("builtin:tiny-qwen2", "lora"), "output": {"name": "nova"}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "adapter").mkdir()
    (run / "train_summary.json").write_text(
        json.dumps({"first_loss": 3.5, "last_loss": 0.75, "steps": 10, "seconds": 4.2})
    )
    text = run_card(run)
    assert text.startswith("# nova\n")
    assert "`builtin:tiny-qwen2`" in text and "LoRA rank 8, alpha 16" in text
    assert "`adapter/`" in text
    assert "| builtin:identity | auto | 48 |" in text
    assert "- training loss 3.5000 -> 0.7500 over 10 steps (4.2 s)" in text
    assert "tunesmith chat runs/nova" in text
    assert "tunesmith export runs/nova --out" in text
    assert "--image" not in text and "eval identity" not in text
    cfg["data"] = {**cfg["data"], "identity": {"name": "Nova", "author": "us"}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert "tunesmith eval identity runs/nova" in run_card(run)
    vlm = {**config("builtin:tiny-llava", "full", "vlm_sft"), "output": {"name": "nova"}}
    (run / "config.yaml").write_text(yaml.safe_dump(vlm))
    assert "tunesmith chat runs/nova --image" in run_card(run)


def test_cards_list_the_runs_evaluation_results(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "nova"
    (run / "eval").mkdir(parents=True)
    cfg = {**config("builtin:tiny-qwen2", "lora"), "output": {"name": "nova"}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "adapter").mkdir()
    ppl = {
        "task": "perplexity",
        "name": "ppl",
        "n": 20,
        "metrics": {"loss": 1.25, "perplexity": 3.4903},
    }
    who = {"task": "identity", "name": "who", "n": 12, "metrics": {"identity_score": 0.75}}
    (run / "eval" / "ppl.json").write_text(json.dumps(ppl))
    (run / "eval" / "who.json").write_text(json.dumps(who))
    (run / "eval" / "who.predictions.jsonl").write_text('{"id": 0}\n')
    table = [
        "| evaluation | task | examples | metrics |",
        "|---|---|---|---|",
        "| ppl | perplexity | 20 | loss 1.25, perplexity 3.49 |",
        "| who | identity | 12 | identity_score 0.75 |",
    ]
    lines = run_card(run).splitlines()
    at = lines.index(table[0])
    assert lines[at : at + 4] == table and lines[at - 2] == "## Results"
    exported = card(cfg, run_dir=run).splitlines()  # the exported folder's card lists them too
    assert exported[exported.index(table[0]) :][:4] == table
    (run / "eval" / "who.json").unlink()
    (run / "eval" / "ppl.json").unlink()
    assert "| evaluation |" not in run_card(run)
    summary = {"first_loss": 3.5, "last_loss": 0.75, "steps": 10, "seconds": 4.2}
    (run / "train_summary.json").write_text(json.dumps(summary))
    (run / "eval" / "who.json").write_text(json.dumps(who))
    results = run_card(run).split("## Results\n\n")[1].split("\n\n## Use")[0].splitlines()
    assert results == [
        "- training loss 3.5000 -> 0.7500 over 10 steps (4.2 s)",
        "",
        *table[:2],
        table[3],
    ]
