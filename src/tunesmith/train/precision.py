"""``train.precision``: what each value means, and how ``auto`` decides on a CPU."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from tunesmith.errors import ConfigError


class PrecisionChoice(NamedTuple):
    """What ``train.precision`` resolves to here, and why (for the run's log and ``env``)."""

    mixed_precision: str | None  # Accelerate's value; None: a measurement would decide
    why: str
    bf16_speedup: float | None = None  # the measured bf16 / fp32 step ratio, where measured


class StepShape(NamedTuple):
    """What the CPU bf16 check replays of a training step: one decoder layer at the run's rows."""

    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    max_length: int = 512  # data.max_length: the packed row
    rows: int = 4  # train.batch_size: rows per micro-batch

    def describe(self) -> str:
        """E.g. ``layer 256x768, 8/4 heads of 32, rows 8x256``."""
        return (
            f"layer {self.hidden}x{self.intermediate}, {self.heads}/{self.kv_heads} heads of "
            f"{self.head_dim}, rows {self.rows}x{self.max_length}"
        )


DEFAULT_SHAPE = StepShape(512, 1536, 8, 4, 64)  # measured at when the model's shape is unknown


def choose_precision(precision: str, shape: StepShape | None = None) -> str:
    """Accelerate's ``mixed_precision`` for a config value (see ``decide_precision``)."""
    return decide_precision(precision, shape).mixed_precision or "no"


def decide_precision(
    precision: str, shape: StepShape | None = None, *, measure: bool = True
) -> PrecisionChoice:
    """Accelerate's ``mixed_precision`` for a config value, and why.

    ``auto``: bf16 on GPUs that support it; on CPU bf16 only where a training step of one of the
    model's decoder layers at the run's rows (``shape``, see ``cpu_bf16_speedup``) measures at
    least ``CPU_BF16_MIN_SPEEDUP`` times faster under bf16 autocast than in fp32, else fp32. A
    bare matmul is the wrong test: on an AMX CPU it ran ~4x faster in bf16 while a small model
    trained 1.3x slower (the casts, the attention kernel). Several CPU processes take fp32
    without measuring: each would time on its own and might choose otherwise; so do CPUs without
    bf16 hardware (``cpu_has_bf16_units``). With ``measure`` false, a choice that needs the
    measurement comes back as ``None``.
    """
    import torch

    if precision != "auto":
        return PrecisionChoice(_ACCELERATE[precision], "set in the config")
    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return PrecisionChoice("bf16" if bf16 else "no", f"CUDA, bf16 supported: {bf16}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return PrecisionChoice("no", "this CPU; several processes take fp32 unmeasured")
    if not cpu_has_bf16_units():
        return PrecisionChoice("no", "this CPU; no bf16 hardware (avx512_bf16 / AMX), not measured")
    need = CPU_BF16_MIN_SPEEDUP
    if not measure:
        return PrecisionChoice(None, f"this CPU; bf16 if a bf16 training step runs {need}x fp32")
    shape = shape or DEFAULT_SHAPE
    attention = decide_cpu_attention("bf16", shape)
    speedup = cpu_bf16_speedup(shape, attention.bf16)
    attn = "bf16" if attention.bf16 else "fp32"
    return PrecisionChoice(
        "bf16" if speedup >= need else "no",
        f"this CPU; a bf16 training step ({shape.describe()}, attention in {attn}) measures "
        f"{speedup:.2f}x fp32 (bf16 needs {need}x)",
        speedup,
    )


class AttentionChoice(NamedTuple):
    """Whether a bf16 run on CPU keeps its attention in bf16 (else fp32), and why."""

    bf16: bool
    why: str
    speedup: float | None = None  # measured bf16 / fp32 attention time ratio, where measured


def decide_cpu_attention(mixed_precision: str, shape: StepShape | None = None) -> AttentionChoice:
    """The attention precision of a run on CPU at ``mixed_precision`` (Accelerate's value).

    bf16 runs time torch's attention kernel in bf16 against fp32 at the model's heads and the
    run's sample lengths (``cpu_bf16_attention_speedup``) and keep bf16 where it is at least
    ``CPU_BF16_ATTENTION_MIN_SPEEDUP`` times faster: on a Zen 4 EPYC it is slower below 512
    tokens, while AMX CPUs run its matmuls on the tiles. fp16 runs and several processes take
    fp32 attention without measuring (the kernel's fp16 path is not measured; each process would
    time on its own), as do CPUs without bf16 hardware.
    """
    if mixed_precision != "bf16":
        return AttentionChoice(False, f"fp32 attention (the run trains in {mixed_precision})")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return AttentionChoice(False, "fp32 attention, unmeasured: several processes")
    if not cpu_has_bf16_units():
        return AttentionChoice(False, "fp32 attention: no bf16 hardware")
    shape = shape or DEFAULT_SHAPE
    speedup = cpu_bf16_attention_speedup(shape)
    need = CPU_BF16_ATTENTION_MIN_SPEEDUP
    return AttentionChoice(
        speedup >= need,
        f"{'bf16' if speedup >= need else 'fp32'} attention: bf16 measures {speedup:.2f}x fp32 "
        f"at {shape.heads}/{shape.kv_heads} heads of {shape.head_dim}, samples up to "
        f"{_attention_lengths(shape)[0]} tokens (bf16 needs {need}x)",
        speedup,
    )


_ACCELERATE = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 in hardware (avx512_bf16 or AMX tiles).

    Elsewhere bf16 is emulated: on a 2-core AVX2 EPYC a bf16 matmul ran at 0.3 GFLOP/s against
    150 in fp32, so measuring it would take minutes to learn what the flags already say.
    """
    import torch

    cpu = torch.cpu
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    if all(hasattr(cpu, p) for p in probes):
        return any(getattr(cpu, p)() for p in probes)
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # older torch: oneDNN's own check


CPU_BF16_MIN_SPEEDUP = 1.3
CPU_BF16_ATTENTION_MIN_SPEEDUP = 1.2  # a margin: bf16 attention also costs casts and some RSS
CHECK_TOKENS = 2048  # at most one CPU pass (train.pass_tokens' default)
CHECK_FLOPS = 4e10  # and about a quarter second of fp32 work per timed pass
ATTENTION_CHECK_LENGTH = 1024  # longer samples cost seconds to time (14 heads at 2048: 3.6 s)


def _attention_lengths(shape: StepShape) -> tuple[int, int, int]:
    """The sample lengths the attention check times: the row's, half and a quarter of it."""
    top = min(shape.max_length, ATTENTION_CHECK_LENGTH)
    return tuple(max(64, -(-top // (d * 64)) * 64) for d in (1, 2, 4))  # type: ignore[return-value]


@functools.cache
def cpu_bf16_attention_speedup(shape: StepShape, reps: int = 3) -> float:
    """How many times faster causal attention trains in bf16 than in fp32 on this CPU.

    Times torch's SDPA, forward and backward, at the model's heads (grouped KV heads as the
    model has them) over what packed rows hand it: one sample as long as the row (at most
    ``ATTENTION_CHECK_LENGTH``), one of half that, and four of a quarter in one call, at
    multiples of 64 as bf16 runs pad them (``model.attention.keep_low_precision_on_cpu``). fp32
    and bf16 passes alternate after a warm-up; the best of ``reps`` each is compared. 0.1-1 s.
    On a 2-core Zen 4 EPYC (avx512_bf16, no AMX) it read 0.96-1.01x for the LF bench's rows of
    1024 (whose step ran no faster with bf16 attention), 0.44-0.47x for the identity demo's rows
    of 256 and 1.15x for 14/2 heads of 64 at 2048.
    """
    import torch
    import torch.nn.functional as F

    gqa = shape.kv_heads != shape.heads
    with torch.random.fork_rng(devices=[]):
        calls = []
        for count, length in zip((1, 1, 4), _attention_lengths(shape)):
            q, k, v, grad = (
                torch.randn(count, heads, length, shape.head_dim)
                for heads in (shape.heads, shape.kv_heads, shape.kv_heads, shape.heads)
            )
            calls.append((q, k, v, grad))

        def timed(bf16: bool) -> float:
            start = time.perf_counter()
            for tensors in calls:
                q, k, v, grad = (t.bfloat16() if bf16 else t for t in tensors)
                q, k, v = (t.requires_grad_() for t in (q, k, v))
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
                out.backward(grad)
            return time.perf_counter() - start

        return _alternating_ratio(timed, reps)


@functools.cache
def cpu_bf16_speedup(shape: StepShape, bf16_attention: bool = False, reps: int = 3) -> float:
    """How many times faster one decoder layer trains under bf16 autocast than in fp32 here.

    The layer is a Llama block (RMSNorm, rotary attention with grouped KV heads, SwiGLU MLP) of
    the model's sizes, with a small vocabulary, run as packed training runs it: rows of
    ``max_length`` holding samples of a quarter of it, per-sample attention from the position ids
    (``model/attention.py``; in bf16 under bf16 if ``bf16_attention``, else fp32), forward and
    backward. Up to ``CHECK_TOKENS`` tokens, fewer for wide layers (``CHECK_FLOPS``), so the
    check takes about 1-5 s. fp32 and bf16 passes alternate after a warm-up (oneDNN builds its
    kernels on the first pass of each shape), and the best of ``reps`` each is compared. On a
    2-core Zen 4 EPYC (avx512_bf16) it read 1.6-2.0x for the identity demo's layer, whose whole
    step ran 1.6x.
    """
    import torch
    from transformers import LlamaConfig, LlamaModel

    from tunesmith.model.attention import keep_low_precision_on_cpu, register

    per_token = 6 * (
        shape.hidden * shape.head_dim * (2 * shape.heads + 2 * shape.kv_heads)
        + 3 * shape.hidden * shape.intermediate
    )
    tokens = min(shape.rows * shape.max_length, CHECK_TOKENS)
    tokens = max(128, min(tokens, int(CHECK_FLOPS / per_token)))
    length = min(shape.max_length, tokens)
    rows = max(1, tokens // length)
    config = LlamaConfig(
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        num_hidden_layers=1,
        vocab_size=256,
        max_position_embeddings=max(length, 128),
        use_cache=False,
    )
    # measuring must not move the run's random stream (no CUDA here: CPU state only)
    with torch.random.fork_rng(devices=[]):
        config._attn_implementation = register()
        layer = LlamaModel(config)
        ids = torch.randint(0, config.vocab_size, (rows, length))
        positions = (torch.arange(length) % max(16, length // 4)).expand(rows, -1)

        def timed(bf16: bool) -> float:
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = layer(input_ids=ids, position_ids=positions).last_hidden_state
            out.float().square().mean().backward()
            return time.perf_counter() - start

        previous = keep_low_precision_on_cpu(bf16_attention)
        try:
            return _alternating_ratio(timed, reps)
        finally:
            keep_low_precision_on_cpu(previous)


def _alternating_ratio(timed: Callable[[bool], float], reps: int) -> float:
    """Best fp32 time over best bf16 time of ``timed(bf16)``, the two alternating after a
    warm-up (oneDNN builds its kernels on the first pass of each shape; first-touch memory)."""
    for _ in range(2):
        timed(False), timed(True)
    fp32, bf16 = [], []
    for _ in range(reps):
        fp32.append(timed(False))
        bf16.append(timed(True))
    return min(fp32) / min(bf16)


def static_shapes(accelerator: Any) -> bool:
    """Whether a run should keep its shapes few: bf16/fp16 on CPU, where oneDNN keeps memory for
    every matmul shape it has seen and builds kernels for each new one (see
    ``model.attention.low_precision_cpu``)."""
    return accelerator.device.type == "cpu" and accelerator.mixed_precision in ("bf16", "fp16")


def model_shape(name: str, max_length: int = 512, rows: int = 4) -> StepShape | None:
    """The ``StepShape`` of a model's (text) config at the run's rows, or None if unknown."""
    from transformers import AutoConfig

    from tunesmith.model.loader import resolve_model_path

    try:  # VLM stages name run directories, which their own loader reads; fall back then
        config = AutoConfig.from_pretrained(resolve_model_path(name))
    except (OSError, ValueError, ConfigError):
        return None
    text = config.get_text_config()
    hidden, inter = getattr(text, "hidden_size", None), getattr(text, "intermediate_size", None)
    heads = getattr(text, "num_attention_heads", None)
    if not (hidden and inter and heads):
        return None
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    return StepShape(hidden, inter, heads, kv_heads, head_dim, max_length, rows)
