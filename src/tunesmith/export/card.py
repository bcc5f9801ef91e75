"""A short model card (``README.md``) from what the run directory recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _last_val_loss(path: Path) -> float | None:
    value = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("val_loss") is not None:
            value = rec["val_loss"]
    return value


def method_line(run_config: dict[str, Any], merged: bool) -> str:
    """One line describing how the weights were tuned."""
    method = run_config.get("method") or {}
    kind = method.get("type", "unknown")
    stage = method.get("stage", "sft")
    if kind != "lora":
        return f"{kind} fine-tuning ({stage})"
    lora = method.get("lora") or {}
    name = "DoRA" if lora.get("use_dora") else "LoRA"
    desc = (
        f"{name} rank {lora.get('rank')}, alpha {lora.get('alpha')}, targets {lora.get('targets')}"
    )
    how = "merged into the base weights" if merged else "adapter only"
    return f"{desc} ({stage}); {how}"


def data_rows(run_config: dict[str, Any]) -> list[str]:
    """Markdown table rows for the data mix."""
    rows = []
    for d in (run_config.get("data") or {}).get("datasets") or []:
        source = d.get("name") or d.get("path") or d.get("from_info")
        amount = d.get("samples") or (f"weight {d['weight']}" if d.get("weight") else "all")
        rows.append(f"| {source} | {d.get('format', 'auto')} | {amount} |")
    return rows


def metric_lines(run_dir: Path | None) -> list[str]:
    """Training and evaluation results found in the run directory."""
    if run_dir is None:
        return []
    out = []
    summary = _read_json(run_dir / "train_summary.json")
    if summary:
        out.append(
            f"- training loss {summary.get('first_loss', float('nan')):.4f} -> "
            f"{summary.get('last_loss', float('nan')):.4f} over {summary.get('steps')} steps "
            f"({summary.get('seconds')} s)"
        )
    val = _last_val_loss(run_dir / "metrics.jsonl")
    if val is not None:
        out.append(f"- final validation loss {val:.4f}")
    ident = _read_json(run_dir / "identity_eval.json")
    if "identity_score" in ident:
        out.append(
            f"- identity score {ident['identity_score']:.3f} on {ident.get('n')} held-out "
            f"questions; false-claim rate {ident.get('false_claim_rate', 0):.3f} on "
            f"{ident.get('n_general')} general prompts"
        )
    return out


def model_card(
    *,
    name: str,
    base: str,
    run_config: dict[str, Any] | None,
    run_dir: Path | None,
    merged: bool,
    dtype: str,
) -> str:
    """The README.md text."""
    cfg = run_config or {}
    lines = [
        "---",
        f"base_model: {json.dumps(base)}",
        "library_name: transformers" if merged else "library_name: peft",
        "pipeline_tag: text-generation",
        "tags: [tunesmith]",
        "---",
        "",
        f"# {name}",
        "",
        f"Fine-tuned from `{base}` with tunesmith: "
        f"{method_line(cfg, merged) if cfg else 'exported model'}. Weights: {dtype}.",
        "",
    ]
    rows = data_rows(cfg)
    if rows:
        lines += ["## Data", "", "| source | format | samples |", "|---|---|---|", *rows, ""]
        system = (cfg.get("data") or {}).get("system")
        if system:
            lines += [f"System prompt used in training: `{system}`", ""]
    metrics = metric_lines(run_dir)
    if metrics:
        lines += ["## Results", "", *metrics, ""]
    lines += [
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "tok = AutoTokenizer.from_pretrained(PATH)",
        "model = AutoModelForCausalLM.from_pretrained(PATH)",
        'inputs = tok.apply_chat_template([{"role": "user", "content": "Who are you?"}],',
        '                                 add_generation_prompt=True, return_tensors="pt")',
        "out = model.generate(**inputs, max_new_tokens=64)",
        'print(tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
        "```",
        "",
        "The generation config stops at the chat template's end-of-turn token. "
        "For Ollama: `ollama create NAME -f Modelfile` in this folder.",
        "",
    ]
    return "\n".join(lines)
