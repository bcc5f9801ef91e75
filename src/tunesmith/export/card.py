"""Model cards (``README.md``): for an exported folder, with Hub metadata, and for a run directory.

Metadata follows the Hub's conventions: ``base_model`` is the Hub id of the model the weights
were tuned from (a built-in or local base is no Hub model, so it is named in the text instead),
``base_model_relation`` is ``adapter`` for an adapter and ``finetune`` for full weights,
``library_name`` is ``peft`` only for an adapter, and the tags name the method and the stage.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config.schema import RunConfig
from tunesmith.runs import RunRecord, is_run_dir, load_run

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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


def hub_id(name: str | None, *, root: Path | None = None) -> str | None:
    """``name`` when it can only be a Hub model id, else ``None``.

    A Hub id looks like ``owner/name``; ``builtin:...`` and paths that exist here or under
    ``root`` (the folder the run was trained from, where its relative paths point) are local.
    """
    if not name or not _HUB_ID.match(name):
        return None
    if any((folder / name).exists() for folder in (Path.cwd(), root) if folder is not None):
        return None
    return name


def training_root(run_dir: Path | None, config: RunConfig | None) -> Path | None:
    """The folder a run was trained from: its run directory less the relative ``output`` path."""
    if run_dir is None or config is None:
        return None
    rel = Path(config.output.run_dir)
    here = run_dir.resolve()
    n = len(rel.parts)
    if rel.is_absolute() or ".." in rel.parts or n >= len(here.parts):
        return None
    if here.parts[-n:] != rel.parts:  # moved since training: its relative paths are lost
        return None
    return here.parents[n - 1]


def base_names(config: RunConfig | None, base: str) -> list[str]:
    """What the weights were tuned from: the config's ``model.name`` (plus a composed vision
    tower), or ``base`` without a run config."""
    if config is None:
        return [base]
    vision = config.model.vision
    tower = vision.tower if vision is not None else None
    return [config.model.name, str(tower)] if tower else [config.model.name]


def method_line(config: RunConfig, merged: bool | None) -> str:
    """One line describing how the weights were tuned (``merged``: ``None`` says nothing of it)."""
    stage, kind = config.method.stage, config.method.type
    if stage == "vlm_pretrain":  # the stage trains the projector whatever method.type says
        return f"projector only ({stage})"
    if kind not in ("lora", "qlora"):
        return f"{kind} fine-tuning ({stage})"
    lora = config.method.lora
    name = "DoRA" if lora.use_dora else "QLoRA" if kind == "qlora" else "LoRA"
    desc = f"{name} rank {lora.rank}, alpha {lora.alpha:g}, targets {lora.targets}"
    if merged is None:
        return f"{desc} ({stage})"
    how = "merged into the base weights" if merged else "adapter only"
    return f"{desc} ({stage}); {how}"


def method_tags(config: RunConfig) -> list[str]:
    """Tags: ``tunesmith``, the method (``lora`` [+ ``dora``/``qlora``], ``full``, ``freeze``)
    and the stage."""
    stage, kind = config.method.stage, config.method.type
    if stage == "vlm_pretrain":
        kinds = ["full"]  # full weights come out (the projector's trained, the rest as loaded)
    elif kind in ("lora", "qlora"):
        kinds = ["lora", *(["dora"] if config.method.lora.use_dora else [])]
        kinds += ["qlora"] if kind == "qlora" else []
    else:
        kinds = [kind]
    return ["tunesmith", *kinds, stage]


def card_metadata(
    bases: list[str],
    config: RunConfig | None,
    *,
    adapter_only: bool,
    vision: bool,
    root: Path | None = None,
) -> dict[str, Any]:
    """The YAML front matter as a dict (see the module docstring)."""
    meta: dict[str, Any] = {}
    hub = [h for h in (hub_id(b, root=root) for b in bases) if h]
    if hub:
        meta["base_model"] = hub[0] if len(hub) == 1 else hub
        meta["base_model_relation"] = "adapter" if adapter_only else "finetune"
    meta["library_name"] = "peft" if adapter_only else "transformers"
    meta["pipeline_tag"] = "image-text-to-text" if vision else "text-generation"
    meta["tags"] = method_tags(config) if config is not None else ["tunesmith"]
    return meta


def describe_base(name: str, root: Path | None = None) -> str:
    """``name`` in backticks, saying what it is when it is no Hub model."""
    if name.startswith("builtin:"):
        return f"`{name}` (a tunesmith built-in model)"
    if hub_id(name, root=root) is None:
        return f"`{name}` (a local model)"
    return f"`{name}`"


def data_rows(config: RunConfig) -> list[str]:
    """Markdown table rows for the data mix."""
    rows = []
    for d in config.data.datasets:
        source = d.name or d.path or d.from_info
        amount = d.samples or (f"weight {d.weight:g}" if d.weight else "all")
        rows.append(f"| {source} | {d.format} | {amount} |")
    return rows


def _data_section(config: RunConfig | None) -> list[str]:
    rows = data_rows(config) if config is not None else []
    if not rows:
        return []
    lines = ["## Data", "", "| source | format | samples |", "|---|---|---|", *rows, ""]
    system = config.data.system if config is not None else None
    if system:
        lines += [f"System prompt used in training: `{system}`", ""]
    return lines


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
        if summary.get("interrupted"):
            out.append("- interrupted before the planned end of training")
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
    table = eval_table(load_run(run_dir)) if is_run_dir(run_dir) else []
    return [*out, "", *table] if out and table else out or table


def eval_table(run: RunRecord) -> list[str]:
    """The run's evaluation results (``eval/<name>.json``) as a Markdown table, one row each.

    A result with more metrics than fit a line lists them all in its cell, ``name value``
    pairs in the order written; values are shown with 4 significant digits.
    """
    rows = []
    for name, result in run.evals().items():
        metrics = result.get("metrics")
        if not isinstance(metrics, dict) or not metrics:
            continue
        cells = ", ".join(f"{k} {_number(v)}" for k, v in metrics.items())
        task = result.get("task") or name
        rows.append(f"| {name} | {task} | {result.get('n', '')} | {cells} |")
    if not rows:
        return []
    return ["| evaluation | task | examples | metrics |", "|---|---|---|---|", *rows]


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else str(value)


def _usage(vision: bool, adapter_only: bool) -> list[str]:
    if vision:
        load = (
            [
                "from peft import PeftModel",
                "model = PeftModel.from_pretrained(",
                "    AutoModelForImageTextToText.from_pretrained(BASE), PATH)  # BASE: see above",
            ]
            if adapter_only
            else ["model = AutoModelForImageTextToText.from_pretrained(PATH)"]
        )
        return [
            "```python",
            "from PIL import Image",
            "from transformers import AutoModelForImageTextToText, AutoProcessor",
            "processor = AutoProcessor.from_pretrained(PATH)",
            *load,
            "# One <image> in the text per image, as in training",
            'messages = [{"role": "user", "content": "<image>Describe the picture."}]',
            "prompt = processor.apply_chat_template(messages, add_generation_prompt=True)",
            'image = Image.open("photo.png").convert("RGB")',
            'inputs = processor(text=prompt, images=[image], return_tensors="pt")',
            "out = model.generate(**inputs, max_new_tokens=64)",
            'print(processor.decode(out[0, inputs["input_ids"].shape[1]:], '
            "skip_special_tokens=True))",
            "```",
        ]
    load = (
        [
            "from peft import AutoPeftModelForCausalLM",
            "model = AutoPeftModelForCausalLM.from_pretrained(PATH)  # + the base it names",
        ]
        if adapter_only
        else ["model = AutoModelForCausalLM.from_pretrained(PATH)"]
    )
    return [
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "tok = AutoTokenizer.from_pretrained(PATH)",
        *load,
        'inputs = tok.apply_chat_template([{"role": "user", "content": "Who are you?"}],',
        '                                 add_generation_prompt=True, return_tensors="pt")',
        "out = model.generate(**inputs, max_new_tokens=64)",
        'print(tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
        "```",
    ]


def model_card(
    *,
    name: str,
    base: str,
    config: RunConfig | None,
    run_dir: Path | None,
    adapter_only: bool,
    dtype: str,
    vision: bool = False,
    ollama: bool = True,
) -> str:
    """The README.md text of an exported folder.

    Args:
        base: the model tuned from when there is no run config (else its ``model.name``).
        config: the run's config (``None``: a model exported without a run).
        adapter_only: the folder holds a peft adapter, not full weights.
        vision: an image-text model (pipeline, usage code).
        ollama: the folder has a ``Modelfile``.
    """
    root = training_root(run_dir, config)
    bases = base_names(config, base)
    meta = card_metadata(bases, config, adapter_only=adapter_only, vision=vision, root=root)
    how = method_line(config, merged=not adapter_only) if config is not None else "exported model"
    tower = f" with the vision tower {describe_base(bases[1], root)}" if len(bases) > 1 else ""
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip("\n"),
        "---",
        "",
        f"# {name}",
        "",
        f"Fine-tuned from {describe_base(bases[0], root)}{tower} with tunesmith: {how}. "
        f"Weights: {dtype}.",
        "",
        *_data_section(config),
    ]
    metrics = metric_lines(run_dir)
    if metrics:
        lines += ["## Results", "", *metrics, ""]
    lines += ["## Use", "", *_usage(vision, adapter_only), ""]
    notes = ["The generation config stops at the chat template's end-of-turn token."]
    if ollama:
        notes.append("For Ollama: `ollama create NAME -f Modelfile` in this folder.")
    elif vision:
        notes.append(
            "No Ollama Modelfile: Ollama does not import LLaVA models from safetensors "
            "(it needs GGUF weights plus a projector file)."
        )
    lines += [" ".join(notes), ""]
    return "\n".join(lines)


def run_card(run_dir: str | Path) -> str:
    """The README.md of a run directory: what was trained, from what, on what, how it went."""
    record = load_run(run_dir)
    run = record.dir
    cfg = record.config
    shown = shlex.quote(cfg.output.run_dir)
    vision = cfg.method.stage.startswith("vlm_")
    root = training_root(run, cfg)
    bases = base_names(cfg, "unknown")
    tower = f" with the vision tower {describe_base(bases[1], root)}" if len(bases) > 1 else ""
    tokenizer = "processor" if vision else "tokenizer"
    if record.adapter is not None:
        weights = f"`adapter/` holds the LoRA adapter (and the {tokenizer}) over that base"
    else:
        weights = f"`model/` holds the full weights (and the {tokenizer})"
    lines = [
        f"# {run.resolve().name}",
        "",
        f"Trained with tunesmith from {describe_base(bases[0], root)}{tower}: "
        f"{method_line(cfg, merged=None)}. {weights}.",
        "",
        *_data_section(cfg),
    ]
    metrics = metric_lines(run)
    if metrics:
        lines += ["## Results", "", *metrics, ""]
    image = " --image photo.png" if vision else ""
    lines += [
        "## Use",
        "",
        "```sh",
        f"tunesmith chat {shown}{image}",
        f"tunesmith export {shown} --out exported/{run.resolve().name}   # a Hugging Face folder",
        f"tunesmith serve {shown}   # an OpenAI-compatible server",
        *([f"tunesmith eval identity {shown}"] if cfg.data.identity is not None else []),
        "```",
        "",
        "`config.yaml` is the resolved config; `data_report.md` the data mix as trained; "
        "`metrics.jsonl` and `loss.png` the losses.",
        "",
    ]
    return "\n".join(lines)


def write_run_card(run_dir: str | Path) -> Path | None:
    """Write ``README.md`` into a finished run directory (``None``: no ``config.yaml``, no run)."""
    if not is_run_dir(run_dir):
        return None
    path = Path(run_dir) / "README.md"
    path.write_text(run_card(run_dir), encoding="utf-8")
    return path
