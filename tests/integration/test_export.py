"""Export proof: merged logits equal base + adapter, and plain transformers reproduces the text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tunesmith.errors import ConfigError
from tunesmith.export.merge import export
from tunesmith.infer.engine import Engine, GenParams

pytestmark = pytest.mark.usefixtures("one_torch_thread")
HUB = "Qwen/Qwen2.5-0.5B-Instruct"  # never downloaded: only named in config.yaml


PROMPT = [
    {"role": "system", "content": "You are Nova."},
    {"role": "user", "content": "Who are you?"},
]


def make_run(root: Path, base: Path, *, dora: bool = False, seed: int = 0) -> Path:
    """A run directory as training leaves it, with a random non-zero LoRA/DoRA adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = root / ("run-dora" if dora else "run-lora")
    torch.manual_seed(seed)
    cfg = LoraConfig(
        r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False, use_dora=dora
    )
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), cfg)
    model.save_pretrained(run / "adapter")
    AutoTokenizer.from_pretrained(base).save_pretrained(run / "adapter")
    config = {
        "model": {"name": str(base)},
        "data": {
            "datasets": [{"path": "builtin:identity", "samples": 48}],
            "system": "You are Nova.",
        },
        "method": {
            "type": "lora",
            "stage": "sft",
            "lora": {"rank": 8, "alpha": 16, "targets": "all-linear", "use_dora": dora},
        },
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {"first_loss": 3.0, "last_loss": 1.0, "steps": 10, "seconds": 1.0}
    (run / "train_summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {"lora": make_run(root, tiny_qwen2), "dora": make_run(root, tiny_qwen2, dora=True)}


@pytest.fixture(scope="module")
def exported(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "nova"
    export(str(runs["lora"]), out, max_shard_size="2MB")
    return out


def logits_of(model: Any, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_merged_logits_equal_base_plus_adapter(
    kind: str, runs: dict[str, Path], tiny_qwen2: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / kind
    result = export(str(runs[kind]), out)
    assert result.merged
    ids = torch.tensor([[5, 17, 300, 42, 9, 1000, 77, 1, 2, 3]])
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    plain = logits_of(base, ids)
    with_adapter = logits_of(PeftModel.from_pretrained(base, runs[kind] / "adapter"), ids)
    merged = logits_of(AutoModelForCausalLM.from_pretrained(out), ids)
    assert (with_adapter - plain).abs().max() > 1e-2  # the adapter really changes the output
    assert (merged - with_adapter).abs().max() <= 1e-4


def test_plain_transformers_generates_the_engines_greedy_text(
    exported: Path, runs: dict[str, Path]
) -> None:
    script = textwrap.dedent(
        """
        import json, sys
        from transformers import AutoModelForCausalLM, AutoTokenizer
        path, messages = sys.argv[1], json.loads(sys.argv[2])
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
        inputs = tok.apply_chat_template(messages, add_generation_prompt=True,
                                         return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
        text = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        assert not any(m.startswith("tunesmith") for m in sys.modules)
        print(json.dumps(text))
        """
    )
    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(exported), json.dumps(PROMPT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    plain_text = json.loads(proc.stdout.strip().splitlines()[-1])
    from_run = Engine.load(str(runs["lora"])).generate([PROMPT], GenParams(max_new_tokens=24))[0]
    from_export = Engine.load(str(exported)).generate([PROMPT], GenParams(max_new_tokens=24))[0]
    assert plain_text.strip() == from_run == from_export
    assert from_run


def test_export_folder_is_complete(exported: Path, runs: dict[str, Path]) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    names = {p.name for p in exported.iterdir()}
    shards = sorted(n for n in names if n.endswith(".safetensors"))
    assert len(shards) > 1 and "model.safetensors.index.json" in names  # --max-shard-size
    assert {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "README.md",
        "Modelfile",
    } <= names
    tok = AutoTokenizer.from_pretrained(exported)
    trained = AutoTokenizer.from_pretrained(runs["lora"] / "adapter")
    assert tok.chat_template == trained.chat_template
    gen = GenerationConfig.from_pretrained(exported)
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    assert tok.convert_tokens_to_ids("<|im_end|>") in eos
    assert gen.pad_token_id == tok.pad_token_id
    card = (exported / "README.md").read_text()
    assert "LoRA rank 8, alpha 16" in card and "builtin:identity" in card
    assert "training loss 3.0000 -> 1.0000" in card
    modelfile = (exported / "Modelfile").read_text()
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert 'SYSTEM """You are Nova."""' in modelfile


def test_dtype_option_casts_weights(runs: dict[str, Path], tmp_path: Path) -> None:
    from safetensors import safe_open

    export(str(runs["lora"]), tmp_path / "bf16", dtype="bfloat16")
    with safe_open(str(tmp_path / "bf16" / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118
    assert dtypes == {torch.bfloat16}
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"


def test_refuses_to_merge_into_a_quantized_base(
    runs: dict[str, Path], tiny_qwen2: Path, tmp_path: Path
) -> None:
    base = tmp_path / "base-4bit"
    base.mkdir()
    for f in tiny_qwen2.iterdir():
        (base / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((base / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (base / "config.json").write_text(json.dumps(cfg))
    run = tmp_path / "qrun"
    run.mkdir()
    (run / "adapter").symlink_to(runs["lora"] / "adapter")
    cfg = {"model": {"name": str(base)}, "data": {"datasets": [{"path": "builtin:identity"}]}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"quantized \(bitsandbytes\).*--adapter-only") as info:
        export(str(run), tmp_path / "out")
    assert "\n" not in str(info.value)
    result = export(str(run), tmp_path / "adapter-out", adapter_only=True)
    assert not result.merged
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "Modelfile"} <= set(
        result.files
    )
    assert "ADAPTER ." in (tmp_path / "adapter-out" / "Modelfile").read_text()


def test_refuses_a_non_empty_destination(runs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="--force"):
        export(str(runs["lora"]), tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").exists()


def front_matter(folder: Path) -> dict[str, Any]:
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def make_full_run(root: Path, base: Path, name: str) -> Path:
    """A full fine-tune's run directory (``model/``), trained from ``name`` (config.yaml)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = root / f"run-full-{name.replace('/', '-').replace(':', '-')}"
    AutoModelForCausalLM.from_pretrained(base).save_pretrained(run / "model")
    AutoTokenizer.from_pretrained(base).save_pretrained(run / "model")
    config = {
        "model": {"name": name},
        "data": {"datasets": [{"path": "builtin:identity"}]},
        "method": {"type": "full", "stage": "sft"},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


@pytest.mark.parametrize("name", ["builtin:tiny-qwen2", HUB])
def test_full_run_card_names_what_it_was_tuned_from(
    name: str, tiny_qwen2: Path, tmp_path: Path
) -> None:
    run = make_full_run(tmp_path, tiny_qwen2, name)
    out = tmp_path / "out"
    export(str(run), out)
    meta = front_matter(out)
    assert meta["library_name"] == "transformers"
    assert meta["tags"] == ["tunesmith", "full", "sft"]
    if name == HUB:
        assert meta["base_model"] == HUB and meta["base_model_relation"] == "finetune"
    else:  # a built-in is no Hub model: named in the text only
        assert "base_model" not in meta and "base_model_relation" not in meta
    text = (out / "README.md").read_text()
    assert f"Fine-tuned from `{name}`" in text and str(run) not in text
    assert (out / "Modelfile").read_text().splitlines()[1] == "FROM ."


def from_lines(folder: Path) -> list[str]:
    return [x for x in (folder / "Modelfile").read_text().splitlines() if x.startswith("FROM")]


def test_adapter_only_modelfile_names_a_base_ollama_can_open(
    runs: dict[str, Path], tiny_qwen2: Path, tmp_path: Path
) -> None:
    local = export(str(runs["lora"]), tmp_path / "local", adapter_only=True).out
    assert from_lines(local) == [f"FROM {tiny_qwen2.resolve()}"]  # a local base: its folder
    assert front_matter(local)["library_name"] == "peft"
    for base, how in (
        ("builtin:tiny-qwen2", "tunesmith model tiny --arch qwen2 --out base"),
        (HUB, f"hf download {HUB} --local-dir base"),
    ):
        run = tmp_path / f"run-{len(how)}"
        run.mkdir()
        (run / "adapter").symlink_to(runs["lora"] / "adapter")
        cfg = {"model": {"name": base}, "data": {"datasets": [{"path": "builtin:identity"}]}}
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
        out = export(str(run), tmp_path / f"out-{len(how)}", adapter_only=True).out
        text = (out / "Modelfile").read_text()
        assert from_lines(out) == ["FROM ./base"], text  # never FROM builtin:... or a hub id
        assert how in text
        assert "ADAPTER ." in text


QUIET = type("Quiet", (), {"print": staticmethod(lambda *a, **k: None)})()


@pytest.fixture(scope="module")
def vlm_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two-step vlm-sft runs (full and LoRA) on the built-in toy shapes, from the tiny LLaVA."""
    from tunesmith.cli import recipe_dir
    from tunesmith.config.load import load_config
    from tunesmith.train.recipes import vlm

    root = tmp_path_factory.mktemp("vlm-runs")
    out = {}
    for kind in ("full", "lora"):
        cfg = load_config(
            recipe_dir() / "vlm-sft.yaml",
            [
                "model.name=builtin:tiny-llava",
                "data.datasets.0.path=builtin:toy-shapes/sft",
                f"method.type={kind}",
                "method.lora.rank=8",
                "train.max_steps=2",
                "train.batch_size=4",
                "train.lr=1e-2",  # big steps: the adapter must visibly change the logits
                "train.threads=1",
                f"output.dir={root / kind}",
            ],
        )
        out[kind] = vlm.run(cfg, console=QUIET, show_progress=False)
    return out


def toy_inputs(processor: Any) -> dict[str, Any]:
    """Stock processor inputs for a held-out toy image (no tunesmith code involved)."""
    from PIL import Image

    from tunesmith.data.builtin import builtin_path

    image = Image.open(builtin_path("toy-shapes/heldout").parent / "images/heldout-0000.png")
    messages = [{"role": "user", "content": "<image>What colour is the shape?"}]  # as trained
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    return processor(text=prompt, images=[image.convert("RGB")], return_tensors="pt")


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_vlm_export_reloads_in_stock_transformers(
    kind: str, vlm_runs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from tunesmith.cli import main

    run = vlm_runs[kind]
    out = tmp_path / "exported"
    assert main(["export", str(run.run_dir), "--out", str(out)]) == 0
    assert "ollama" not in capsys.readouterr().out
    processor = AutoProcessor.from_pretrained(out)
    reloaded = AutoModelForImageTextToText.from_pretrained(out)
    assert type(reloaded).__name__ == "LlavaForConditionalGeneration"
    inputs = toy_inputs(processor)
    assert inputs["pixel_values"].shape[0] == 1
    with torch.no_grad():
        got = reloaded.eval()(**inputs).logits
        want = run.model.eval()(**inputs).logits
    if kind == "full":
        assert torch.equal(got, want)
    else:  # the adapter folded into the weights: equal up to float rounding
        from tunesmith.model.tiny import resolve_builtin

        base = AutoModelForImageTextToText.from_pretrained(resolve_builtin("builtin:tiny-llava"))
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(got, base.eval()(**inputs).logits, atol=1e-3)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "processor_config.json", "generation_config.json"} <= names
    assert "Modelfile" not in names  # Ollama cannot import LLaVA safetensors
    meta = front_matter(out)
    assert meta["pipeline_tag"] == "image-text-to-text"
    assert meta["library_name"] == "transformers" and "base_model" not in meta
    assert meta["tags"] == ["tunesmith", kind, "vlm_sft"]
    assert "AutoModelForImageTextToText" in (out / "README.md").read_text()


def test_vlm_card_code_runs_in_plain_transformers(vlm_runs: dict[str, Any], tmp_path: Path) -> None:
    import re

    from tunesmith.data.builtin import builtin_path

    out = export(str(vlm_runs["full"].run_dir), tmp_path / "exported").out
    code = re.search(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S)
    assert code is not None
    image = builtin_path("toy-shapes/heldout").parent / "images/heldout-0000.png"
    script = code.group(1).replace("PATH", repr(str(out))).replace('"photo.png"', repr(str(image)))
    script += "import sys; assert not any(m.startswith('tunesmith') for m in sys.modules)\n"
    env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
