"""Export a run as a standard Hugging Face folder: LoRA/DoRA merged into the base weights.

The folder holds sharded safetensors, ``config.json``, a generation config that stops at the
template's end-of-turn tokens, the tokenizer with the training chat template, a short model card
(``README.md``) and an Ollama ``Modelfile``. It loads with plain ``transformers``. With
``fmt="gguf"`` the folder also holds ``model-<quant>.gguf`` (``export/gguf.py``) and the
Modelfile's ``FROM`` names it; with ``quant="bnb-4bit"``/``"bnb-8bit"`` the safetensors are
bitsandbytes-quantised (``transformers`` reloads them with bitsandbytes installed; Ollama cannot
import them, so there is no Modelfile). A
vision-language (LLaVA) run exports the same way with its processor instead of a tokenizer
(``AutoModelForImageTextToText`` + ``AutoProcessor``), and without a Modelfile: Ollama does not
import LLaVA safetensors.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.atomic import replace_dir
from tunesmith.errors import ConfigError
from tunesmith.export.gptq import AWQ_QUANTS, GPTQ_QUANTS, NO_AWQ

DTYPES = ("float32", "bfloat16", "float16")
FORMATS = ("hf", "gguf")
BNB_QUANTS = {"bnb-4bit": 4, "bnb-8bit": 8}


@dataclass
class ExportResult:
    """What was written."""

    out: Path
    merged: bool
    files: list[str] = field(default_factory=list)


def quantization_of(model_path: str) -> str | None:
    """The quantisation method recorded in a model folder's ``config.json``, if any."""
    cfg_file = Path(model_path) / "config.json"
    if not cfg_file.is_file():
        return None
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except ValueError:
        return None
    q = cfg.get("quantization_config")
    if not q:
        return None
    return str(q.get("quant_method", "quantized")) if isinstance(q, dict) else "quantized"


def refuse_quantized(model: Any, what: str) -> None:
    """Merging into quantised weights would round the adapter away: refuse, in one line."""
    q = getattr(getattr(model, "config", None), "quantization_config", None)
    if q is not None or getattr(model, "is_quantized", False):
        raise ConfigError(
            f"{what}: the base weights are quantized; merging into them loses the adapter's "
            "precision. Dequantize first (load the base in float32/bfloat16) or export the "
            "adapter as is with --adapter-only"
        )


def merge_adapter(model: Any) -> Any:
    """Fold the adapter(s) of a ``PeftModel`` into its base weights; returns the plain model."""
    refuse_quantized(model.get_base_model() if hasattr(model, "get_base_model") else model, "merge")
    if not hasattr(model, "merge_and_unload"):
        return model
    return model.merge_and_unload(safe_merge=True)


def export(
    run_or_model: str,
    out: str | Path,
    *,
    adapter: str | None = None,
    dtype: str | None = None,
    max_shard_size: str | int = "2GB",
    adapter_only: bool = False,
    force: bool = False,
    fmt: str = "hf",
    quant: str | None = None,
    calibration_samples: int = 128,
    group_size: int = 128,
) -> ExportResult:
    """Write ``run_or_model`` (a run directory, or a base model plus ``adapter``) to ``out``.

    Args:
        run_or_model: run directory, or base model path / hub id / ``builtin:...``.
        out: destination folder (written atomically; must be empty unless ``force``).
        adapter: LoRA adapter folder when ``run_or_model`` is a base model.
        dtype: weights dtype of the export (default: the base model's).
        max_shard_size: largest safetensors shard, e.g. ``"500MB"``.
        adapter_only: copy the adapter (no merge), e.g. for quantized bases.
        force: replace a non-empty ``out``.
        fmt: ``hf`` (safetensors folder) or ``gguf`` (the folder plus one GGUF file).
        quant: ``gguf``: ``f16`` (default), ``bf16``, ``f32``, ``q8_0``, ``q4_0``, ``q4_k_m``;
            ``hf``: ``bnb-4bit`` (NF4, double quantisation), ``bnb-8bit``, or (CUDA GPU,
            ``gptqmodel``) ``gptq-4bit``/``gptq-8bit``.
        calibration_samples: GPTQ: training prompts of the run to calibrate on.
        group_size: GPTQ: columns sharing one scale (must divide every layer's in_features).
    """
    from tunesmith.infer.vision import is_vlm_target
    from tunesmith.model.source import locate

    where = locate(run_or_model, adapter)
    vision = is_vlm_target(run_or_model, adapter)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"--out {out}: folder is not empty; pass --force to replace it")
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    run_dir = where.run.dir if where.run is not None else None
    if adapter_only and not where.adapter:
        raise ConfigError(f"{run_or_model}: --adapter-only needs a LoRA run or --adapter PATH")
    gguf_quant, bnb_bits = _check_format(fmt, quant, adapter_only=adapter_only, vision=vision)
    gptq_bits = GPTQ_QUANTS.get(quant or "") if fmt == "hf" else None
    calib: tuple[Any, list[str], int] | None = None
    if gptq_bits:  # every precondition before the merge: shapes (CPU), CUDA, packages, data
        from tunesmith.export import gptq
        from tunesmith.model.loader import resolve_model_path

        gptq.check_shapes(resolve_model_path(where.base), group_size)
        gptq.check_environment()
        tok = _tokenizer(where)
        texts, _ = gptq.calibration_texts(where.run, tok, calibration_samples)
        calib = (tok, texts, calibration_samples)

    with replace_dir(out, prefix=f".{out.name}-") as tmp:
        if adapter_only:
            assert where.adapter is not None
            merged, model, tokenizer = False, None, _tokenizer(where)
            shutil.copytree(where.adapter, tmp, dirs_exist_ok=True)
        elif vision:
            merged, model, tokenizer = _merge_and_save_vlm(
                run_or_model, where, tmp, dtype, max_shard_size
            )
        elif bnb_bits:
            merged, model, tokenizer = _merge_and_quantize(where, tmp, bnb_bits, max_shard_size)
        elif gptq_bits and calib is not None:
            merged, model, tokenizer = _merge_and_gptq(
                where, tmp, gptq_bits, group_size, calib[1], max_shard_size
            )
        else:
            merged, model, tokenizer = _merge_and_save(where, tmp, dtype, max_shard_size)
        source = "."
        if gguf_quant:
            from tunesmith.export.gguf import gguf_name, write_gguf

            source = f"./{write_gguf(tmp, tmp / gguf_name(gguf_quant), gguf_quant).path.name}"
        _write_extras(
            tmp,
            where,
            run_dir,
            model,
            tokenizer,
            adapter_only=adapter_only,
            dtype=dtype if not (bnb_bits or gptq_bits) else str(quant),
            vision=vision,
            source=source,
            ollama=not (bnb_bits or gptq_bits),
        )
        if gptq_bits and calib is not None:
            from tunesmith.export.gptq import card_note

            note = card_note(gptq_bits, group_size, len(calib[1]), calib[2])
            with (tmp / "README.md").open("a", encoding="utf-8") as f:
                f.write(note)
    return ExportResult(out, merged, sorted(p.name for p in out.iterdir()))


def _check_format(
    fmt: str, quant: str | None, *, adapter_only: bool, vision: bool
) -> tuple[str | None, int | None]:
    """``(gguf quant, bitsandbytes bits)`` for ``--format``/``--quant``, or a one-line refusal."""
    from tunesmith.export.gguf import QUANTS

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if fmt == "gguf":
        if adapter_only or vision:
            what = "--adapter-only" if adapter_only else "a vision-language run"
            raise ConfigError(f"--format gguf: not for {what}; GGUF holds a merged text model")
        quant = quant or "f16"
        if quant not in QUANTS:
            raise ConfigError(
                f"--quant {quant}: for --format gguf choose one of {', '.join(QUANTS)}"
            )
        return quant, None
    if quant is None:
        return None, None
    if quant in AWQ_QUANTS:
        raise ConfigError(NO_AWQ.format(q=quant))
    if quant not in BNB_QUANTS and quant not in GPTQ_QUANTS:
        hint = " (GGUF quants need --format gguf)" if quant in QUANTS else ""
        choices = ", ".join([*BNB_QUANTS, *GPTQ_QUANTS])
        raise ConfigError(
            f"--quant {quant}: for --format hf choose one of {choices}{hint}; "
            "gptq-* needs a CUDA GPU and gptqmodel (see README)"
        )
    if adapter_only or vision:
        what = "--adapter-only" if adapter_only else "a vision-language run"
        raise ConfigError(f"--quant {quant}: not for {what}")
    return None, BNB_QUANTS.get(quant)


def _merge_and_gptq(
    where: Any, tmp: Path, bits: int, group_size: int, texts: list[str], shard: str | int
) -> Any:
    """Merge into a float16 scratch folder, then quantise it with GPTQ on the GPU."""
    import tempfile

    from tunesmith.export.gptq import quantize

    with tempfile.TemporaryDirectory(prefix=".merged-", dir=tmp.parent) as scratch:
        merged, _, tokenizer = _merge_and_save(where, Path(scratch), "float16", shard)
        model = quantize(Path(scratch), tmp, tokenizer, texts, bits, group_size, shard)
    tokenizer.save_pretrained(tmp)
    return merged, model, tokenizer


def _merge_and_quantize(where: Any, tmp: Path, bits: int, shard: str | int) -> Any:
    """Merge in float32 into a scratch folder, reload it through bitsandbytes, save that."""
    import tempfile

    from tunesmith.config.schema import QuantConfig
    from tunesmith.model.loader import load_model

    with tempfile.TemporaryDirectory(prefix=".merged-", dir=tmp.parent) as scratch:
        merged, _, tokenizer = _merge_and_save(where, Path(scratch), None, shard)
        model = load_model(scratch, dtype="float32", quant=QuantConfig(bits=bits), what="--quant")
        model.config.use_cache = True
        model.save_pretrained(tmp, max_shard_size=shard)
    tokenizer.save_pretrained(tmp)
    return merged, model, tokenizer


def _tokenizer(where: Any) -> Any:
    from tunesmith.model.source import load_tokenizer_from

    return load_tokenizer_from(where.tokenizer or where.base)


def _merge_and_save(where: Any, tmp: Path, dtype: str | None, shard: str | int) -> Any:
    import torch

    from tunesmith.model.loader import load_model, resolve_model_path

    base_path = resolve_model_path(where.base)
    method = quantization_of(base_path)
    if method and where.adapter:
        raise ConfigError(
            f"{where.base}: the base weights are quantized ({method}); merging into them loses "
            "the adapter's precision. Dequantize first (a float32/bfloat16 copy of the base) or "
            "export the adapter as is with --adapter-only"
        )
    tokenizer = _tokenizer(where)
    model = load_model(where.base, dtype="float32")  # merge in full precision
    if where.adapter:
        from peft import PeftModel

        from tunesmith.model.source import quiet_peft

        with quiet_peft():
            model = merge_adapter(PeftModel.from_pretrained(model, where.adapter))
    if dtype is not None:
        model = model.to(getattr(torch, dtype))
    model.config.use_cache = True
    model.save_pretrained(tmp, max_shard_size=shard)
    tokenizer.save_pretrained(tmp)
    return bool(where.adapter), model, tokenizer


def _merge_and_save_vlm(
    run_or_model: str, where: Any, tmp: Path, dtype: str | None, shard: str | int
) -> Any:
    """Merge a LLaVA run (or base + adapter) in float32 and save it with its processor."""
    import torch

    from tunesmith.infer.vision import load_vlm_model

    model, processor = load_vlm_model(
        run_or_model,
        adapter=where.adapter if where.run is None else None,
        dtype="float32",
        device="cpu",
    )
    if dtype is not None:
        model = model.to(getattr(torch, dtype))
    model.config.use_cache = True
    model.config.text_config.use_cache = True
    model.save_pretrained(tmp, max_shard_size=shard)
    processor.save_pretrained(tmp)  # tokenizer, image processor and the training chat template
    return bool(where.adapter), model, processor.tokenizer


def _write_extras(
    tmp: Path,
    where: Any,
    run_dir: Path | None,
    model: Any,
    tokenizer: Any,
    *,
    adapter_only: bool,
    dtype: str | None,
    vision: bool,
    source: str = ".",
    ollama: bool = True,
) -> None:
    """Generation config, model card and (for text models) the Ollama Modelfile.

    ``source``: the Modelfile's ``FROM`` (``.``: this folder's safetensors; ``./model-*.gguf``).
    """
    from tunesmith.export.card import base_names, model_card, training_root
    from tunesmith.export.modelfile import adapter_base, modelfile
    from tunesmith.export.stops import run_stops, stop_token_ids

    if model is not None:
        from transformers import GenerationConfig

        stops = stop_token_ids(model, tokenizer, run_stops(tokenizer, where.run))
        gen = GenerationConfig(
            eos_token_id=stops if len(stops) > 1 else stops[0],
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
        gen.save_pretrained(tmp)
        weights = str(model.dtype).removeprefix("torch.")
    else:
        # the template's end-of-turn tokens
        stops = stop_token_ids(None, tokenizer, run_stops(tokenizer, where.run))
        weights = "adapter"
    config = where.run.config if where.run is not None else None
    name = run_dir.resolve().name if run_dir is not None else Path(where.adapter or where.base).name
    card = model_card(
        name=name,
        base=where.base,
        config=config,
        run_dir=run_dir,
        adapter_only=adapter_only,
        dtype=dtype or weights,
        vision=vision,
        ollama=ollama and not vision,
    )
    (tmp / "README.md").write_text(card, encoding="utf-8")
    if vision or not ollama:
        return
    system = where.run.system if where.run is not None else None
    stop_text = [t for t in tokenizer.convert_ids_to_tokens(stops) if t]
    notes: list[str] = []
    if adapter_only:  # FROM is the base, which Ollama must be able to open
        base = base_names(config, where.base)[0]
        source, notes = adapter_base(base, training_root(run_dir, config))
    text = modelfile(tokenizer, stop_text, source=source, system=system, notes=notes)
    if adapter_only:
        text += "ADAPTER .\n"
    (tmp / "Modelfile").write_text(text, encoding="utf-8")
