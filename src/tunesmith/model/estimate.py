"""Before training: exact parameter counts and a per-device memory estimate for a run config.

Counts come from the real model built on the meta device (``accelerate.init_empty_weights``:
no weights are read) with the run's method applied, so LoRA counts are those of the module shapes
peft wraps. Memory is the sum of weights (at their precision or quantisation), gradients,
optimiser state, activations (with or without activation checkpointing) and the loss buffer,
divided over ``devices`` as the sharding strategy does.

Activations per token and decoder layer are ``e·(11h + 2kv + 4i)`` bytes in element size ``e``
(what the Qwen2/Llama layers save for backward), plus the fp32 copies RMSNorm makes under
bf16/fp16, plus the fp32 inputs peft's upcast adapters keep, plus ``e·7h`` per token after the
last layer. ``measure`` runs real steps of the same config and reports the peak, so
``tunesmith estimate CONFIG --measure`` prints the estimate's error on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunesmith.config.schema import RunConfig
from tunesmith.errors import ConfigError

GIB = 1024**3
GPU_SIZES_GB = (8, 12, 16, 24, 40, 80)
SHARDING = ("none", "ddp", "zero2", "zero3", "fsdp", "fsdp-offload")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
#: Optimiser-state bytes per trainable parameter (two fp32 moments; bitsandbytes' 8-bit moments
#: carry one fp32 absmax per 256-value block each). adamw keeps its moments in the param dtype.
OPTIM_STATE_BYTES = {
    "adamw": 8.0,
    "paged_adamw": 8.0,
    "adamw_8bit": 2.0 + 8 / 256,
    "paged_adamw_8bit": 2.0 + 8 / 256,
    "badam": 8.0,  # of the active block only (see ``estimate``)
}
CUDA_CONTEXT = 0.5 * GIB  # CUDA context + allocator slack, per GPU


@dataclass
class Counts:
    """Parameters of the model as the method trains it (logical counts, not packed storage)."""

    trainable: int
    total: int
    quantisable: int = 0  # decoder linear weights that bitsandbytes would quantise
    layers: int = 0
    hidden: int = 0
    intermediate: int = 0
    kv: int = 0
    vocab: int = 0
    adapter_inputs: int = 0  # distinct input widths per layer of the LoRA-wrapped linears
    largest_layer: int = 0
    lowrank_shapes: list[tuple[int, int]] = field(default_factory=list)  # trainable 2-D, in layers


@dataclass
class Estimate:
    """Bytes per device, by part."""

    counts: Counts
    parts: dict[str, float] = field(default_factory=dict)
    devices: int = 1
    sharding: str = "none"
    target: str = "gpu"
    activations_plain: float = 0.0  # without activation checkpointing
    activations_ckpt: float = 0.0  # with it

    @property
    def total(self) -> float:
        """Bytes per device."""
        return sum(self.parts.values())

    def fits(self, gb: float) -> bool:
        """Whether the estimate fits a device of ``gb`` GB (1e9 bytes, as GPUs are sold)."""
        return self.total <= gb * 1e9


def build_meta(cfg: RunConfig) -> Any:
    """The run's model with its method applied, on the meta device (no weights read)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunesmith.model.adapters import apply_freeze, apply_lora
    from tunesmith.model.loader import resolve_model_path

    path = resolve_model_path(cfg.model.name, revision=cfg.model.revision)
    try:
        config = AutoConfig.from_pretrained(
            path, trust_remote_code=cfg.model.trust_remote_code, revision=cfg.model.revision
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.name {cfg.model.name!r}: {str(exc).splitlines()[0]}") from None
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(
            config, trust_remote_code=cfg.model.trust_remote_code
        )
    # from_config ties the head to the embeddings only once weights are materialised: tie here,
    # or a tied model counts its embedding matrix twice.
    model.tie_weights()
    m = cfg.method
    if m.type == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    elif m.type == "freeze":
        apply_freeze(model, m.freeze)
    else:
        # The counts do not depend on the initialisation: plain init works on meta tensors.
        lora = m.lora.model_copy(update={"init": "default"})
        with init_empty_weights():
            model = apply_lora(model, m.model_copy(update={"lora": lora}))
    return model


def count(model: Any, cfg: RunConfig) -> Counts:
    """Parameter counts and the shapes the memory model needs."""
    import torch

    from tunesmith.model.adapters import decoder_layers

    c = model.config
    c = getattr(c, "text_config", None) or c
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    kv = (getattr(c, "num_key_value_heads", None) or heads) * head_dim
    layers = decoder_layers(model)
    quantisable = 0
    inputs: set[tuple[str, str]] = set()
    shared = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gu", "up_proj": "gu"}
    first = layers[0][0] + "." if layers else None
    for name, mod in model.named_modules():
        if not layers or not name.startswith(tuple(f"{n}." for n, _ in layers)):
            continue
        base = getattr(mod, "base_layer", None)
        if isinstance(mod, torch.nn.Linear) and ".lora_" not in name:
            quantisable += mod.weight.numel()  # a plain linear, or the one a LoRA wraps
        if base is not None and name.startswith(first or "") and hasattr(mod, "lora_A"):
            leaf = name.rsplit(".", 1)[-1]
            inputs.add((shared.get(leaf, leaf), str(base.in_features)))
    adapter_inputs = sum(int(w) for _, w in inputs)
    largest = max((sum(p.numel() for p in m.parameters()) for _, m in layers), default=0)
    lowrank = [
        (int(p.shape[0]), int(p.shape[1]))
        for _, layer in layers
        for p in layer.parameters()
        if p.requires_grad and p.ndim == 2
    ]
    return Counts(
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total=sum(p.numel() for p in model.parameters()),
        quantisable=quantisable,
        layers=len(layers),
        hidden=c.hidden_size,
        intermediate=getattr(c, "intermediate_size", 4 * c.hidden_size),
        kv=kv,
        vocab=c.vocab_size,
        adapter_inputs=adapter_inputs,
        largest_layer=largest,
        lowrank_shapes=lowrank,
    )


def weight_dtype(cfg: RunConfig, target: str) -> str:
    """The dtype weights load in: ``auto`` is bf16 on (bf16-capable) GPUs, fp32 on CPU."""
    if cfg.model.dtype != "auto":
        return cfg.model.dtype
    return "bfloat16" if target == "gpu" else "float32"


def optimiser_bytes(cfg: RunConfig, c: Counts, train_bytes: int) -> float:
    """Optimiser state for ``train.optim`` over the trainable parameters."""
    optim, rank = cfg.train.optim, cfg.train.optim_args.rank
    if optim == "adamw":
        return 2.0 * train_bytes * c.trainable
    if optim == "badam":
        return OPTIM_STATE_BYTES["badam"] * c.largest_layer
    if optim in ("galore_adamw", "galore_adamw_8bit", "apollo_adamw"):
        # Projected matrices (m x n): moments of the rank-r gradient, r x max(m, n), and (GaLore)
        # the projector, min(m, n) x r; everything else full AdamW moments.
        per = 2.0 if optim == "galore_adamw_8bit" else 8.0
        low = projected = 0.0
        for m, n in c.lowrank_shapes:
            r = min(rank, m, n)
            low += per * r * max(m, n)  # two moments of per / 2 bytes
            if optim != "apollo_adamw":  # APOLLO regenerates its random projection from a seed
                low += 4 * r * min(m, n)
            projected += m * n
        return low + 8.0 * (c.trainable - projected)
    return OPTIM_STATE_BYTES[optim] * c.trainable


def activation_bytes(cfg: RunConfig, c: Counts, e: int, tokens: int) -> tuple[float, float]:
    """Activation bytes of one pass of ``tokens`` tokens: (without, with) checkpointing."""
    h, i, kv = c.hidden, c.intermediate, c.kv
    trained_layers = c.layers
    if cfg.method.type == "freeze":  # frozen lower layers build no graph
        trained_layers = min(c.layers, abs(cfg.method.freeze.trainable_layers))
    per_layer = e * (11 * h + 2 * kv + 4 * i) + (4 - e) * 4 * h
    if cfg.method.type in ("lora", "qlora") and (e < 4 or cfg.method.type == "qlora"):
        per_layer += 4 * c.adapter_inputs  # peft keeps fp32 adapters: their inputs are cast
    if cfg.method.type == "qlora":
        # Measured with bitsandbytes on CPU (tiny and bench models): its 4-bit matmuls keep
        # another 1.5 fp32 copies of each distinct linear input for backward.
        per_layer += 6 * c.adapter_inputs
    head = e * 7 * h
    plain = tokens * (per_layer * trained_layers + head)
    # Checkpointing keeps each layer's input and recomputes one layer at a time in backward:
    # that layer's saved activations and the gradients flowing through them are alive together.
    ckpt = tokens * (e * h * trained_layers + 2 * per_layer + head)
    return plain, ckpt


def loss_bytes(cfg: RunConfig, c: Counts, tokens: int, target: str) -> float:
    """The fp32 logits (and their gradient) the loss materialises."""
    impl = cfg.train.ce_impl
    if impl == "auto":
        impl = "chunked"  # liger on CUDA, chunked on CPU: both work in chunks
    rows = min(tokens, cfg.train.ce_chunk_size) if impl in ("chunked", "liger") else tokens
    return 2.0 * rows * c.vocab * 4


def estimate(
    cfg: RunConfig,
    *,
    devices: int = 1,
    sharding: str = "none",
    target: str = "gpu",
    model: Any = None,
) -> Estimate:
    """The memory of one training step per device.

    Args:
        cfg: the run config (model, method, train.batch_size, data.max_length, ...).
        devices: data-parallel devices the run is spread over.
        sharding: ``none``/``ddp`` (replicated), ``zero2`` (gradients and optimiser state
            sharded), ``zero3``/``fsdp`` (weights too), ``fsdp-offload`` (weights and optimiser
            on the host).
        target: ``gpu`` (``model.dtype: auto`` is bf16, no CUDA context on CPU) or ``cpu``.
        model: a meta model already built by ``build_meta`` (built when not given).
    """
    if sharding not in SHARDING:
        raise ConfigError(f"--sharding {sharding!r}: choose one of {', '.join(SHARDING)}")
    if devices < 1:
        raise ConfigError(f"--devices {devices}: must be at least 1")
    model = model if model is not None else build_meta(cfg)
    c = count(model, cfg)
    m, t = cfg.method, cfg.train
    wd = weight_dtype(cfg, target)
    e = DTYPE_BYTES[wd]
    optim = t.optim
    frozen = c.total - c.trainable
    if m.type == "qlora":
        q = m.quant
        if q.bits == 4:
            per = 0.5 + (1 / 64 + 4 / (64 * 256) if q.double_quant else 4 / 64)
        else:
            per = 1.0 + 4 / max(c.hidden, 1)
        # prepare_model_for_kbit_training casts every other parameter to fp32.
        weights = c.quantisable * per + (frozen - c.quantisable) * 4 + c.trainable * 4
        train_bytes = 4
    elif m.type in ("lora", "qlora"):
        weights = frozen * e + c.trainable * 4  # peft keeps adapters in fp32
        train_bytes = 4
    else:
        weights = c.total * e
        train_bytes = e
    grads = c.trainable * train_bytes
    state = optimiser_bytes(cfg, c, train_bytes)
    if optim == "badam":  # one decoder layer holds gradients and moments at a time
        grads = c.largest_layer * train_bytes
    tokens = t.batch_size * cfg.data.max_length
    if target == "cpu" and t.pass_tokens == "auto":
        tokens = min(tokens, max(cfg.data.max_length, 2048))
    elif isinstance(t.pass_tokens, int):
        tokens = min(tokens, max(cfg.data.max_length, t.pass_tokens))
    plain, ckpt = activation_bytes(cfg, c, e, tokens)
    acts = ckpt if t.gradient_checkpointing else plain
    n = devices
    if sharding == "zero2":
        grads, state = grads / n, state / n
    elif sharding in ("zero3", "fsdp"):
        weights = weights / n + 2 * c.largest_layer * e  # one layer gathered (and prefetched)
        grads, state = grads / n, state / n
    elif sharding == "fsdp-offload":
        weights, state = 2 * c.largest_layer * e, 0.0
        grads = grads / n
    parts = {
        "weights": weights,
        "gradients": grads,
        "optimiser": state,
        "activations": acts,
        "loss": loss_bytes(cfg, c, tokens, target),
    }
    if target == "gpu":
        parts["cuda_context"] = CUDA_CONTEXT
    return Estimate(c, parts, devices, sharding, target, plain, ckpt)


def _size(x: float, unit: str) -> str:
    """Bytes in ``unit`` (one unit per table, picked by its total, so rows compare at a glance)."""
    return f"{x / GIB:,.2f} GiB" if unit == "GiB" else f"{x / 2**20:,.1f} MiB"


def report(cfg: RunConfig, est: Estimate) -> str:
    """The text ``tunesmith estimate`` prints."""
    c = est.counts
    pct = 100.0 * c.trainable / max(c.total, 1)
    lines = [
        f"model {cfg.model.name}: {c.layers} layers, hidden {c.hidden}, vocab {c.vocab}",
        f"method {cfg.method.type}: trainable {c.trainable:,} / total {c.total:,} ({pct:.2f}%)",
        f"per device ({est.target}, {est.devices} device(s), sharding {est.sharding}; "
        f"batch {cfg.train.batch_size} x {cfg.data.max_length} tokens, "
        f"optimiser {cfg.train.optim}, "
        f"gradient checkpointing {'on' if cfg.train.gradient_checkpointing else 'off'}):",
    ]
    unit = "GiB" if est.total >= GIB else "MiB"
    lines += [f"  {k:<12} {_size(v, unit):>12}" for k, v in est.parts.items()]
    lines.append(f"  {'total':<12} {_size(est.total, unit):>12}")
    lines.append(
        f"  activations: {_size(est.activations_plain, unit)} without checkpointing, "
        f"{_size(est.activations_ckpt, unit)} with (train.gradient_checkpointing)"
    )
    if est.target == "gpu":
        fit = "  ".join(f"{gb}GB:{'yes' if est.fits(gb) else 'no'}" for gb in GPU_SIZES_GB)
        lines.append(f"fits: {fit}")
    return "\n".join(lines)


@dataclass
class Measured:
    """A real training step's peak memory on this machine (what ``estimate`` is checked with)."""

    peak: float  # bytes: resident weights + the step's peak above them
    weights: float
    step_seconds: float
    device: str


def _release_freed() -> None:
    """Hand memory the allocator keeps after frees back to the OS (glibc), so the resident size
    is what is live; otherwise the warm-up step's freed activations hide the next step's peak."""
    import contextlib
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(AttributeError):  # not glibc
            ctypes.CDLL(name).malloc_trim(0)


def _hwm_reset() -> None:
    # Linux: writing 5 resets the process's peak resident size (VmHWM) to the current one.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _status_kb(key: str) -> int:
    import re

    with open("/proc/self/status", encoding="ascii") as f:
        m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
    if m is None:
        raise ConfigError(f"--measure: /proc/self/status has no {key} (Linux only)")
    return int(m.group(1)) * 1024


def measure(cfg: RunConfig, *, steps: int = 2) -> Measured:
    """Peak memory of ``steps`` real optimiser steps (after one warm-up step) of ``cfg`` on
    random full-length rows.

    The run's model, method, optimiser, loss path (``train.ce_impl``), passes
    (``train.pass_tokens``) and activation checkpointing, as ``tunesmith train`` sets them up. On
    CUDA the peak is ``torch.cuda.max_memory_allocated``; on CPU it is the resident weights plus
    the rise of the process's peak resident size (``VmHWM``) over the steps.
    """
    import gc
    import math
    import time

    import torch

    from tunesmith.model.adapters import apply_method
    from tunesmith.model.loader import load_model
    from tunesmith.train.lm_loss import lm_loss_sum, resolve_ce_impl
    from tunesmith.train.optim import make_optimizer
    from tunesmith.train.session import enable_activation_checkpointing

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    target = "gpu" if cuda else "cpu"
    m, t = cfg.model, cfg.train
    model = load_model(
        m.name,
        dtype=weight_dtype(cfg, target),
        attn_implementation=m.attn_implementation,
        quant=cfg.method.quant if cfg.method.type == "qlora" else None,
    )
    model.config.use_cache = False
    if t.gradient_checkpointing:
        enable_activation_checkpointing(model)
    model = apply_method(model, cfg.method).to(device)
    model.train()
    optimizer = make_optimizer(model, cfg)
    impl = resolve_ce_impl(t.ce_impl, model, device=device, sharded=False)
    length = cfg.data.max_length
    rows_per_pass = t.batch_size
    if t.pass_tokens == "auto" and not cuda:
        rows_per_pass = max(1, 2048 // length)
    elif isinstance(t.pass_tokens, int):
        rows_per_pass = max(1, t.pass_tokens // length)
    vocab = model.get_input_embeddings().num_embeddings
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, vocab - 1, (t.batch_size, length), generator=gen).to(device)
    passes = math.ceil(t.batch_size / rows_per_pass)

    def step() -> None:
        for i in range(passes):
            chunk = ids[i * rows_per_pass : (i + 1) * rows_per_pass]
            batch = {"input_ids": chunk, "attention_mask": torch.ones_like(chunk), "labels": chunk}
            loss, n = lm_loss_sum(
                model,
                batch,
                attn_implementation=m.attn_implementation,
                impl=impl,
                chunk_size=t.ce_chunk_size,
            )
            (loss / n / passes).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # A warm-up step first: the optimiser allocates its state, and the kernels' code pages and
    # scratch buffers become resident, so the measured steps show the steady training peak.
    step()
    tensors = {id(p): p for p in model.parameters()}
    for st in optimizer.state.values():
        tensors.update({id(v): v for v in st.values() if isinstance(v, torch.Tensor)})
    resident = float(sum(v.numel() * v.element_size() for v in tensors.values()))
    weights = float(
        sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
    )
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        _release_freed()
        _hwm_reset()
        base = _status_kb("VmRSS")
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - t0) / steps
    if cuda:
        peak = float(torch.cuda.max_memory_allocated())  # allocated: no CUDA context
    else:
        peak = _status_kb("VmHWM") - base + resident  # weights and optimiser state stay put
    return Measured(float(peak), weights, seconds, target)


def error_line(est: Estimate, got: Measured) -> str:
    """``estimate`` against a measured peak (the CUDA context is not allocated memory)."""
    predicted = est.total - est.parts.get("cuda_context", 0.0)
    err = 100.0 * (predicted - got.peak) / got.peak
    unit = "GiB" if got.peak >= GIB else "MiB"
    return (
        f"measured on {got.device}: peak {_size(got.peak, unit)} (weights "
        f"{_size(got.weights, unit)}), {got.step_seconds:.2f} s/step; estimate "
        f"{_size(predicted, unit)} without the CUDA context: "
        f"error {err:+.1f}%"
    )
