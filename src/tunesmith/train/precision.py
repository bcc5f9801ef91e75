"""``train.precision``: what each value means, and how ``auto`` decides on a CPU."""

from __future__ import annotations

import functools
import os
import time
from typing import NamedTuple

from tunesmith.errors import ConfigError


class PrecisionChoice(NamedTuple):
    """What ``train.precision`` resolves to here, and why (for the run's log and ``env``)."""

    mixed_precision: str | None  # Accelerate's value; None: a measurement would decide
    why: str
    bf16_speedup: float | None = None  # the measured bf16 / fp32 step ratio, where measured


def choose_precision(precision: str, dims: tuple[int, int] | None = None) -> str:
    """Accelerate's ``mixed_precision`` for a config value (see ``decide_precision``)."""
    return decide_precision(precision, dims).mixed_precision or "no"


def decide_precision(
    precision: str, dims: tuple[int, int] | None = None, *, measure: bool = True
) -> PrecisionChoice:
    """Accelerate's ``mixed_precision`` for a config value, and why.

    ``auto``: bf16 on GPUs that support it; on CPU bf16 only where a training step of the model's
    MLP shape (``dims`` = hidden, intermediate) measures at least ``CPU_BF16_MIN_SPEEDUP`` times
    faster under bf16 autocast than in fp32, else fp32. A bare matmul is the wrong test: on AMX
    CPUs it runs ~4x faster in bf16, yet a small model trained 1.3x slower, because autocast adds
    casts and every new shape (the loss rows change each step) costs a kernel build. Several CPU
    processes take fp32 without measuring: each would time on its own and might choose otherwise;
    so do CPUs without bf16 hardware (``cpu_has_bf16_units``). With ``measure`` false, a choice
    that needs the measurement comes back as ``None``.
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
    speedup = cpu_bf16_speedup(*(dims or DEFAULT_DIMS))
    return PrecisionChoice(
        "bf16" if speedup >= need else "no",
        f"this CPU; a bf16 training step measures {speedup:.2f}x fp32 (bf16 needs {need}x)",
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
DEFAULT_DIMS = (512, 1536)  # measured at when the model's own sizes are unknown


@functools.cache
def cpu_bf16_speedup(hidden: int = 512, intermediate: int = 1536, reps: int = 2) -> float:
    """How many times faster an MLP forward+backward runs under bf16 autocast than in fp32 here.

    Token counts change between calls, as the trained positions of a real run do, so the cost of
    building kernels for new shapes is part of what is measured (on AMX CPUs that cost turns a
    2.3x bf16 gain at fixed shapes into a 0.7x loss); 16-512 tokens keep the check about a second.
    """
    import torch

    hidden, intermediate = min(hidden, 1024), min(intermediate, 4096)  # big models: a slice
    tokens = max(16, min(512, int(3e8 / (hidden * intermediate))))
    sizes = [tokens + 8 * i for i in range(4)]

    def total(autocast: bool) -> float:
        up = torch.nn.Linear(hidden, intermediate)
        down = torch.nn.Linear(intermediate, hidden)
        best = float("inf")
        for rep in range(reps + 1):
            t = time.perf_counter()
            for n in sizes:
                x = torch.randn(n + 2 * rep, hidden, requires_grad=True)  # new shapes each pass
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    y = down(torch.nn.functional.silu(up(x)))
                y.float().sum().backward()
            if rep:  # the first pass also pays one-off library start-up; not counted
                best = min(best, time.perf_counter() - t)
        return best

    state = torch.random.get_rng_state()  # measuring must not move the run's random stream
    try:
        return total(False) / total(True)
    finally:
        torch.random.set_rng_state(state)


def model_dims(name: str) -> tuple[int, int] | None:
    """``(hidden_size, intermediate_size)`` of a model's (text) config, or None if unknown."""
    from transformers import AutoConfig

    from tunesmith.model.loader import resolve_model_path

    try:  # VLM stages name run directories, which their own loader reads; fall back then
        config = AutoConfig.from_pretrained(resolve_model_path(name))
    except (OSError, ValueError, ConfigError):
        return None
    text = config.get_text_config()
    hidden, inter = getattr(text, "hidden_size", None), getattr(text, "intermediate_size", None)
    return (hidden, inter) if hidden and inter else None
