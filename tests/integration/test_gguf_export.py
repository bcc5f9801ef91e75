"""GGUF export: the file reads back with gguf's reader (metadata, tokenizer, chat template,
weights), the Modelfile points at it, and llama.cpp (llama-cpp-python, where it is installed)
generates the same greedy text as the safetensors export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tunesmith.errors import ConfigError
from tunesmith.export.gguf import permute_rotary, pre_tokenizer, write_gguf
from tunesmith.export.merge import export

gguf = pytest.importorskip("gguf")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
MESSAGES = [{"role": "system", "content": "You are Nova."}, {"role": "user", "content": "Hi!"}]


def adapter_for(base: Path, root: Path) -> Path:
    """A random non-zero LoRA adapter over ``base`` (the export merges it)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), cfg)
    model.save_pretrained(root / "adapter")
    return root / "adapter"


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, tiny_qwen2: Path, tiny_llama: Path) -> Any:
    root = tmp_path_factory.mktemp("gguf")
    out = {}
    for arch, base in (("qwen2", tiny_qwen2), ("llama", tiny_llama)):
        adapter = adapter_for(base, root / arch)
        for quant in ("f16", "q8_0"):
            dest = root / f"{arch}-{quant}"
            export(str(base), dest, adapter=str(adapter), fmt="gguf", quant=quant)
            out[arch, quant] = dest
    return out


def field(reader: Any, key: str) -> Any:
    return reader.fields[key].contents()


def hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_gguf_reads_back_with_metadata_tokenizer_and_template(exports: Any, arch: str) -> None:
    from transformers import AutoConfig, AutoTokenizer

    folder = exports[arch, "q8_0"]
    reader = gguf.GGUFReader(folder / "model-q8_0.gguf")
    cfg = AutoConfig.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert field(reader, "general.architecture") == arch
    assert field(reader, f"{arch}.block_count") == cfg.num_hidden_layers == 4
    assert field(reader, f"{arch}.embedding_length") == 256
    assert field(reader, f"{arch}.attention.head_count") == 8
    assert field(reader, f"{arch}.attention.head_count_kv") == 4
    assert field(reader, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == cfg.vocab_size == 4096
    vocab = tok.get_vocab()
    assert all(tokens[i] == t for t, i in vocab.items())
    assert tokens[len(vocab) :] == [f"[PAD{i}]" for i in range(len(vocab), len(tokens))]
    types = field(reader, "tokenizer.ggml.token_type")
    assert types[vocab["<|im_end|>"]] == gguf.TokenType.CONTROL
    assert types[vocab["!"]] == gguf.TokenType.NORMAL
    merges = json.loads((folder / "tokenizer.json").read_text())["model"]["merges"]
    assert len(field(reader, "tokenizer.ggml.merges")) == len(merges)
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "qwen2"
    assert field(reader, "tokenizer.ggml.eos_token_id") == vocab["<|im_end|>"]
    assert field(reader, "tokenizer.chat_template") == tok.chat_template
    names = {t.name for t in reader.tensors}
    per_layer = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm"}
    per_layer |= {"ffn_gate", "ffn_up", "ffn_down"}
    expected = {"token_embd.weight", "output_norm.weight"}  # tied head: no output.weight
    expected |= {f"blk.{i}.{p}.weight" for i in range(4) for p in per_layer}
    if arch == "qwen2":
        expected |= {f"blk.{i}.attn_{p}.bias" for i in range(4) for p in "qkv"}
    assert names == expected


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_gguf_weights_equal_the_exported_safetensors(exports: Any, arch: str) -> None:
    w = hf_weights(exports[arch, "f16"])
    for quant, tol in (("f16", 1e-3), ("q8_0", 2e-2)):
        reader = gguf.GGUFReader(exports[arch, quant] / f"model-{quant}.gguf")
        got = {t.name: t for t in reader.tensors}
        for hf, name, rows in (
            ("model.layers.1.self_attn.q_proj.weight", "blk.1.attn_q.weight", 8),
            ("model.layers.1.self_attn.k_proj.weight", "blk.1.attn_k.weight", 4),
            ("model.layers.2.mlp.down_proj.weight", "blk.2.ffn_down.weight", 0),
            ("model.embed_tokens.weight", "token_embd.weight", 0),
        ):
            t = got[name]
            data = gguf.quants.dequantize(t.data, t.tensor_type).reshape(w[hf].shape)
            want = w[hf].float()
            if arch == "llama" and rows:  # llama.cpp's interleaved rotary layout
                want = permute_rotary(want, rows)
            err = (torch.from_numpy(data.copy()).float() - want).abs().max().item()
            assert err <= tol * want.abs().max().item(), (quant, name, err)
        norm = got["blk.0.attn_norm.weight"]
        assert norm.tensor_type == gguf.GGMLQuantizationType.F32


def test_modelfile_points_at_the_gguf(exports: Any) -> None:
    folder = exports["qwen2", "q8_0"]
    text = (folder / "Modelfile").read_text()
    assert "\nFROM ./model-q8_0.gguf\n" in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    plain = folder.parent / "plain"
    export(str(folder), plain)  # the same model without --format gguf: FROM the folder
    assert "\nFROM .\n" in (plain / "Modelfile").read_text()


def test_cli_export_gguf(tiny_qwen2: Path, tmp_path: Path, capsys: Any) -> None:
    from tunesmith.cli import main

    out = tmp_path / "cli"
    assert main(["export", str(tiny_qwen2), "--out", str(out), "--format", "gguf"]) == 0
    assert (out / "model-f16.gguf").is_file()
    assert "model-f16.gguf" in capsys.readouterr().out
    reader = gguf.GGUFReader(out / "model-f16.gguf")
    assert field(reader, "general.file_type") == gguf.LlamaFileType.MOSTLY_F16


def test_bad_format_and_quant_are_refused(tiny_qwen2: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--quant q5_k: for --format gguf choose one of"):
        export(str(tiny_qwen2), tmp_path / "a", fmt="gguf", quant="q5_k")
    with pytest.raises(ConfigError, match=r"GGUF quants need --format gguf"):
        export(str(tiny_qwen2), tmp_path / "b", quant="q8_0")
    with pytest.raises(ConfigError, match=r"--format gguf: not for --adapter-only"):
        adapter = str(adapter_for(tiny_qwen2, tmp_path))
        export(str(tiny_qwen2), tmp_path / "c", adapter=adapter, adapter_only=True, fmt="gguf")
    assert not (tmp_path / "a").exists()
    with pytest.raises(ConfigError, match="byte-level BPE"):
        pre_tokenizer({"model": {"type": "Unigram"}}, tmp_path)
    with pytest.raises(ConfigError, match="split regex"):
        pre_tokenizer({"model": {"type": "BPE"}, "pre_tokenizer": {"pattern": "x"}}, tmp_path)


def test_q4_k_m_needs_llama_cpp(tiny_qwen2: Path, tmp_path: Path) -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="install llama-cpp-python"):
            write_gguf(tiny_qwen2, tmp_path / "m.gguf", "q4_k_m")
        return
    result = write_gguf(tiny_qwen2, tmp_path / "m.gguf", "q4_k_m")
    reader = gguf.GGUFReader(result.path)
    kinds = {t.tensor_type for t in reader.tensors}
    assert gguf.GGMLQuantizationType.Q4_K in kinds
    assert field(reader, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q4_K_M


def hf_greedy(folder: Path, n: int) -> tuple[list[int], list[int]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=False)
    ids = list(ids["input_ids"] if isinstance(ids, dict) else ids)
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            max_new_tokens=n,
            do_sample=False,
            eos_token_id=None,
            min_new_tokens=n,
        )
    return ids, out[0, len(ids) :].tolist()


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_llama_cpp_generates_the_same_greedy_text(exports: Any, arch: str) -> None:
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    folder = exports[arch, "f16"]
    ids, hf_new = hf_greedy(folder, 12)
    llm = llama_cpp.Llama(str(folder / "model-f16.gguf"), n_ctx=256, n_threads=1, verbose=False)
    from transformers import AutoTokenizer

    prompt = AutoTokenizer.from_pretrained(folder).apply_chat_template(
        MESSAGES, add_generation_prompt=True, tokenize=False
    )
    assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids
    got: list[int] = []
    for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0):
        got.append(token)
        if len(got) == len(hf_new):
            break
    assert got == hf_new
    assert llm.detokenize(got) == llm.detokenize(hf_new)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_llama_cpp_runs_the_q8_0_file(exports: Any, arch: str, monkeypatch: Any) -> None:
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    import llama_cpp.llama_cpp as lib

    # llama-cpp-python 0.3.36 built natively here crashes in its CPU repack (extra buffer)
    # kernels for quantised tensors of these tiny shapes; without them it runs the file.
    default = lib.llama_model_default_params

    def plain_buffers() -> Any:
        params = default()
        params.use_extra_bufts = False
        return params

    monkeypatch.setattr(lib, "llama_model_default_params", plain_buffers)
    folder = exports[arch, "q8_0"]
    ids, hf_new = hf_greedy(folder, 8)
    llm = llama_cpp.Llama(str(folder / "model-q8_0.gguf"), n_ctx=256, n_threads=1, verbose=False)
    got: list[int] = []
    for token in llm.generate(ids, temp=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0):
        got.append(token)
        if len(got) == len(hf_new):
            break
    assert got == hf_new  # 8-bit rounding leaves the first greedy tokens of the fp32 model
