"""Write an exported Hugging Face folder (Llama or Qwen2) as one GGUF file for llama.cpp runtimes.

Written with the ``gguf`` package (the writer, the tensor-name map and the quantisers of the
llama.cpp project): the architecture's hyper-parameters, the byte-level BPE tokenizer (tokens,
types, merges, special ids), the chat template the run trained with, and the weights at
``f32``/``f16``/``bf16``/``q8_0``/``q4_0``. ``q4_k_m`` needs llama.cpp's own quantiser (the
``gguf`` package has no K-quant encoder): it is made from the f16 file through
``llama-cpp-python`` when that is installed.

Two layout details a converter must get right: llama.cpp's ``llama`` architecture applies rotary
embeddings to interleaved pairs, Hugging Face to the two halves of each head, so the rows of the
query and key projections are permuted (``qwen2`` uses the halves layout: no permutation); and the
vocabulary of the tiny models is padded past the tokenizer's size, so the pad ids get ``[PADn]``
tokens of type UNUSED.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.errors import ConfigError

QUANTS = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m")
ARCHS = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
# The split regexes llama.cpp knows by name (its tokenizer.ggml.pre values).
PRE_TOKENIZERS = {
    "qwen2": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",  # noqa: E501
    "llama-bpe": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",  # noqa: E501
}


@dataclass
class GGUFResult:
    """What was written."""

    path: Path
    arch: str
    quant: str
    tensors: int
    kept_f16: list[str] = field(default_factory=list)  # rows not a multiple of the block size


def gguf_name(quant: str) -> str:
    """The file name an export gives its GGUF."""
    return f"model-{quant}.gguf"


def _hf_config(folder: Path) -> dict[str, Any]:
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise ConfigError(f"{folder}: no config.json; export the run as a folder first")
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    q = cfg.get("quantization_config")
    if q:
        raise ConfigError(
            f"{folder}: the weights are quantized ({q.get('quant_method')}); GGUF is written "
            "from float weights: export without --quant bnb-*"
        )
    return cfg


def architecture(cfg: dict[str, Any], where: Path) -> str:
    """``llama`` or ``qwen2`` from ``config.json``'s architectures, or a one-line refusal."""
    for a in cfg.get("architectures") or []:
        if a in ARCHS:
            return ARCHS[a]
    have = ", ".join(cfg.get("architectures") or ["none"])
    raise ConfigError(
        f"{where}/config.json: architecture {have} has no GGUF writer here; supported: "
        f"{', '.join(ARCHS)} (or convert with llama.cpp's convert_hf_to_gguf.py)"
    )


def _rope_theta(cfg: dict[str, Any]) -> float:
    rp = cfg.get("rope_parameters") or {}  # transformers 5
    theta = rp.get("rope_theta") if isinstance(rp, dict) else None
    return float(theta or cfg.get("rope_theta") or 10000.0)


def _weights(folder: Path) -> dict[str, Any]:
    """Every tensor of the folder's safetensors shards, as float32 torch tensors."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"{folder}: no .safetensors weights")
    out: dict[str, Any] = {}
    for f in files:
        out.update({k: v.float() for k, v in load_file(str(f)).items()})
    return out


def permute_rotary(w: Any, heads: int) -> Any:
    """Rows of a q/k projection from Hugging Face's half-split rotary layout to interleaved."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def pre_tokenizer(tokenizer_json: dict[str, Any], where: Path) -> str:
    """The llama.cpp pre-tokenizer name of a byte-level BPE ``tokenizer.json``."""
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE":
        raise ConfigError(
            f"{where}/tokenizer.json: a {model.get('type')} tokenizer; this GGUF writer handles "
            "byte-level BPE (Qwen2, Llama 3) only"
        )
    pre = json.dumps(tokenizer_json.get("pre_tokenizer"))
    for name, regex in PRE_TOKENIZERS.items():
        if json.dumps(regex)[1:-1] in pre:
            return name
    raise ConfigError(
        f"{where}/tokenizer.json: its split regex is not one llama.cpp knows by name "
        f"({', '.join(PRE_TOKENIZERS)}); the GGUF would tokenize differently"
    )


def _add_tokenizer(writer: Any, folder: Path, n_vocab: int) -> None:
    import gguf
    from transformers import AutoTokenizer

    tj = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    pre = pre_tokenizer(tj, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    by_id = {i: t for t, i in tok.get_vocab().items()}
    added = tok.added_tokens_decoder
    if len(by_id) > n_vocab:
        raise ConfigError(
            f"{folder}: the tokenizer has {len(by_id)} tokens, more than the model's vocab_size "
            f"{n_vocab}"
        )
    tokens, types = [], []
    T = gguf.TokenType
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(T.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            types.append(T.CONTROL if added[i].special else T.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(T.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=n_vocab)
    if not special.merges:
        raise ConfigError(f"{folder}/tokenizer.json: no BPE merges found")
    special.chat_template = None  # written below from the tokenizer, the one training used
    special.add_to_gguf(writer, quiet=True)
    writer.add_add_bos_token(tok.bos_token is not None and bool(getattr(tok, "add_bos_token", 0)))
    if tok.chat_template:
        writer.add_chat_template(tok.chat_template)


def _tensor_type(quant: str, name: str, shape: tuple[int, ...]) -> Any:
    import gguf

    Q = gguf.GGMLQuantizationType
    if len(shape) < 2 or quant == "f32":
        return Q.F32  # norms and biases stay in float32, as llama.cpp expects
    want = {"f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0}[quant]
    block = gguf.GGML_QUANT_SIZES[want][0]
    if shape[-1] % block:
        return Q.F16
    return want


FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0"}
FILE_TYPES["q4_0"] = "MOSTLY_Q4_0"


def write_gguf(folder: str | Path, out: str | Path, quant: str = "f16") -> GGUFResult:
    """Write the model in ``folder`` (config.json, safetensors, tokenizer) to ``out``.

    Args:
        folder: a Hugging Face folder with float weights (what ``tunesmith export`` writes).
        out: the ``.gguf`` file to write.
        quant: ``f32``, ``f16``, ``bf16``, ``q8_0``, ``q4_0`` or ``q4_k_m`` (through
            llama-cpp-python).
    """
    if quant not in QUANTS:
        raise ConfigError(f"--quant {quant}: choose one of {', '.join(QUANTS)} for --format gguf")
    folder, out = Path(folder), Path(out)
    if quant == "q4_k_m":
        return _via_llama_cpp(folder, out)
    import gguf
    import numpy as np

    cfg = _hf_config(folder)
    arch = architecture(cfg, folder)
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    hidden = cfg["hidden_size"]
    head_dim = cfg.get("head_dim") or hidden // heads
    layers = cfg["num_hidden_layers"]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], layers)

    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_name(folder.resolve().name)
    writer.add_context_length(cfg.get("max_position_embeddings", 2048))
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(_rope_theta(cfg))
    writer.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(cfg["vocab_size"])
    writer.add_file_type(getattr(gguf.LlamaFileType, FILE_TYPES[quant]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, folder, cfg["vocab_size"])

    result = GGUFResult(out, arch, quant, 0)
    tied = cfg.get("tie_word_embeddings", False)
    for hf_name, t in _weights(folder).items():
        if hf_name == "lm_head.weight" and tied:
            continue  # llama.cpp reuses token_embd when output is absent
        if "rotary_emb" in hf_name:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ConfigError(f"{folder}: tensor {hf_name} has no GGUF name for {arch}")
        if arch == "llama" and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            t = permute_rotary(t, heads)
        elif arch == "llama" and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            t = permute_rotary(t, kv_heads)
        data = t.numpy().astype(np.float32)
        qtype = _tensor_type(quant, name, data.shape)
        if qtype == gguf.GGMLQuantizationType.F16 and quant not in ("f16",):
            result.kept_f16.append(name)
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, data)
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, data.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        result.tensors += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return result


def _via_llama_cpp(folder: Path, out: Path) -> GGUFResult:
    """``q4_k_m``: llama.cpp's quantiser over the f16 GGUF (the gguf package has no K-quants)."""
    try:
        import llama_cpp
    except ImportError:
        raise ConfigError(
            "--quant q4_k_m: the gguf package cannot write K-quants; install llama-cpp-python "
            "(pip install llama-cpp-python) or use --quant q8_0 / q4_0"
        ) from None
    tmp = out.with_name(out.name + ".f16.tmp")
    base = write_gguf(folder, tmp, "f16")
    try:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
        rc = llama_cpp.llama_model_quantize(str(tmp).encode(), str(out).encode(), params)
        if rc != 0:
            raise ConfigError(f"--quant q4_k_m: llama.cpp's quantiser failed (code {rc})")
    finally:
        tmp.unlink(missing_ok=True)
    return GGUFResult(out, base.arch, "q4_k_m", base.tensors)
