"""Build tiny Llama / Qwen2 models and a BPE tokenizer locally, deterministically, in seconds.

Nothing here downloads: the tokenizer is trained with the ``tokenizers`` library on text the package
ships (``model/corpus/`` plus the built-in demo data), the model is randomly initialised from a
fixed seed, and both are written with ``save_pretrained`` so they load back through the ordinary
``AutoTokenizer`` / ``AutoModelForCausalLM`` path. Same command, same bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tunesmith.atomic import replace_dir
from tunesmith.errors import ConfigError
from tunesmith.model.llava import compose_llava
from tunesmith.model.paths import BUILTIN_PREFIX, cache_root, damaged_file
from tunesmith.model.tiny_vlm import TinyVisionSpec, build_tiny_tower
from tunesmith.quiet import quiet_transformers

ARCHS = ("llama", "qwen2", "llava")  # llava: tiny_vlm.py's CLIP tower + tiny Qwen2, below
# Qwen2's split regex: AutoTokenizer rebuilds a qwen2 tokenizer with it, so we train with it too
# (otherwise ids change on reload; see STACK-NOTES).
SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]
# Written for this project: ChatML, with tool definitions in the system turn and tool calls as
# <tool_call>{json}</tool_call>, tool results as a `tool` turn.
CHATML_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages and messages[0].role == 'system' %}"
    "{{- messages[0].content + '\\n\\n' }}{%- endif %}"
    '{{- \'You can call these tools. Reply with <tool_call>{"name": ..., "arguments": ...}'
    "</tool_call> to use one.\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '\\n</tools><|im_end|>\\n' }}"
    "{%- elif messages and messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' %}{%- if not loop.first %}"
    "{{- raise_exception('a system message is only allowed first') }}{%- endif %}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if message.content %}{{- message.content }}{%- endif %}"
    "{%- for call in message.tool_calls or [] %}"
    "{%- set fn = call.function if call.function is defined else call %}"
    "{%- if message.content or not loop.first %}{{- '\\n' }}{%- endif %}"
    "{{- '<tool_call>{\"name\": ' + (fn.name | tojson) + ', \"arguments\": ' }}"
    "{%- if fn.arguments is string %}{{- fn.arguments }}{%- else %}{{- fn.arguments | tojson }}"
    "{%- endif %}{{- '}</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Shape of a tiny model. Every linear size is a multiple of 32 so 4-bit quantisation works."""

    arch: str = "qwen2"
    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 768
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 4
    max_position: int = 2048
    seed: int = 0


def corpus_files() -> list[Path]:
    """The shipped text the tokenizer is trained on, in a fixed order."""
    here = Path(__file__).resolve().parent
    data = here.parent / "data" / "builtin"
    files = sorted((here / "corpus").glob("*.txt"))
    files += [data / n for n in ("identity.jsonl", "general.jsonl") if (data / n).is_file()]
    return files


def build_fingerprint(spec: TinySpec) -> str:
    """A short hash of everything the build depends on (spec, corpus, template, library)."""
    import tokenizers
    import transformers

    h = hashlib.sha256(repr(spec).encode())
    h.update(CHATML_TEMPLATE.encode())
    h.update(f"{tokenizers.__version__}|{transformers.__version__}".encode())
    for f in corpus_files():
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def train_tokenizer(spec: TinySpec):  # -> tokenizers.Tokenizer
    """Train a byte-level BPE on the shipped corpus (deterministic)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(f) for f in corpus_files()], trainer)
    return tok


def build_tiny(out_dir: str | Path, spec: TinySpec | None = None) -> Path:
    """Build tokenizer + random-init model into ``out_dir`` (written atomically)."""
    # Rayon threads can reorder BPE merge ties; one thread keeps the build byte-identical.
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

    spec = spec or TinySpec()
    if spec.arch == "llava":
        return build_tiny_vlm(out_dir, TinyVisionSpec(seed=spec.seed))
    if spec.arch not in ARCHS:
        raise ConfigError(f"--arch {spec.arch!r}: unknown; choose one of {', '.join(ARCHS)}")
    out = Path(out_dir)
    with replace_dir(out, prefix=".tiny-") as tmp:
        raw = train_tokenizer(spec)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=raw,
            bos_token=None,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            unk_token=None,
            additional_special_tokens=["<|im_start|>", "<image>"],
            model_max_length=spec.max_position,
        )
        tokenizer.chat_template = CHATML_TEMPLATE
        tokenizer.save_pretrained(tmp)

        config = _model_config(spec, tokenizer)
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
            torch.manual_seed(spec.seed)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.generation_config = GenerationConfig(
            eos_token_id=[config.eos_token_id, tokenizer.pad_token_id],
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
        )
        quiet_transformers()  # no "Writing model shards" bar for a one-file model
        model.save_pretrained(tmp)
    return out


def _model_config(spec: TinySpec, tokenizer):  # -> PretrainedConfig
    from transformers import LlamaConfig, Qwen2Config

    common = dict(
        # Padded to a multiple of 64: fast matmuls and 4-bit blocks need aligned shapes.
        vocab_size=-(-len(tokenizer) // 64) * 64,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        use_cache=True,
    )
    if spec.arch == "qwen2":
        return Qwen2Config(**common)
    return LlamaConfig(**common)


# Other shapes with the same tokenizer: a half-width student for distillation (issue 20).
VARIANTS = {
    "qwen2-narrow": TinySpec(hidden_size=128, intermediate_size=384, num_heads=4, num_kv_heads=2)
}


def resolve_builtin(name: str) -> Path:
    """Map ``builtin:tiny-qwen2`` / ``builtin:tiny-llama`` / ``builtin:tiny-qwen2-narrow`` to a
    cached build, building if needed."""
    key = name[len(BUILTIN_PREFIX) :] if name.startswith(BUILTIN_PREFIX) else name
    arch = key.removeprefix("tiny-")
    if not key.startswith("tiny-") or (arch not in ARCHS and arch not in VARIANTS):
        valid = ", ".join(f"{BUILTIN_PREFIX}tiny-{a}" for a in (*ARCHS, *VARIANTS))
        raise ConfigError(f"model.name {name!r}: unknown built-in model; choose one of {valid}")
    builtin_notice(f"{BUILTIN_PREFIX}{key}")
    if arch == "llava":
        return resolve_tiny_vlm()
    spec = VARIANTS.get(arch) or TinySpec(arch=arch)
    path = cache_root() / "models" / f"tiny-{arch}-{build_fingerprint(spec)}"
    if not (path / "config.json").is_file() or _damaged(path):
        build_tiny(path, spec)
    return path


def _damaged(path: Path) -> bool:
    """Whether a cached build's weights are unreadable (an interrupted build or copy)."""
    return damaged_file(path) is not None


def build_tiny_vlm(out_dir: str | Path, spec: TinyVisionSpec | None = None) -> Path:
    """Build the tiny LLaVA (vision tower + projector + tiny Qwen2) into ``out_dir``."""
    quiet_transformers()
    spec = spec or TinyVisionSpec()
    lm = resolve_builtin("builtin:tiny-qwen2")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-tower-", dir=out.parent))
    try:
        tower = build_tiny_tower(tmp, spec)
        return compose_llava(
            lm,
            tower,
            out,
            projector_depth=spec.projector_depth,
            feature_layer=spec.feature_layer,
            seed=spec.seed,
            tower_id="tunesmith/tiny-clip-vision",  # not the temporary or cache folders:
            lm_id="builtin:tiny-qwen2",  # the same bytes wherever it is built
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_tiny_vlm(spec: TinyVisionSpec | None = None) -> Path:
    """The cached ``builtin:tiny-llava`` build (built on first use)."""
    spec = spec or TinyVisionSpec()
    h = hashlib.sha256(f"{build_fingerprint(TinySpec())}|{spec!r}".encode())
    for module in ("llava.py", "tiny_vlm.py", "tiny.py"):  # the build code itself
        h.update((Path(__file__).parent / module).read_bytes())
    path = cache_root() / "models" / f"tiny-llava-{h.hexdigest()[:12]}"
    if not (path / "config.json").is_file():
        import torch

        with torch.random.fork_rng():  # building (the tiny LM too) must not shift the RNG
            build_tiny_vlm(path, spec)
    return path


_noticed: set[str] = set()


def builtin_notice(name: str) -> None:
    """Say once per process (on stderr, main process only) that ``name`` has random weights."""
    if name in _noticed or os.environ.get("RANK", "0") != "0":
        return
    _noticed.add(name)
    print(
        f"note: {name} has random weights (a tiny model for testing): it answers gibberish "
        "until trained; `tunesmith recipes` marks the recipes that teach it something",
        file=sys.stderr,
    )
