"""``tunesmith env``: the facts a bug report needs, gathered in a second or two.

Library versions, the CPU (model and the flags that decide bf16 speed: AVX-512 BF16, AMX), the
GPUs, what ``train.precision: auto`` and the attention setting would use, and where models are
cached. Nothing is downloaded; the bf16 timing ``auto`` runs on a CPU at training start is only
run with ``measure=True``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from importlib import metadata
from typing import Any

PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "bitsandbytes",
    "tokenizers",
    "safetensors",
    "huggingface_hub",
    "flash_attn",
)
#: CPU flags that matter for training speed (bf16 / int8 matrix units), as /proc/cpuinfo names them.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")
NOT_INSTALLED = "not installed"


def package_version(name: str) -> str:
    """The installed version of a distribution, or ``"not installed"``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def cpu_info() -> dict[str, Any]:
    """CPU model, logical cores and the flags in ``CPU_FLAGS`` (Linux reads /proc/cpuinfo)."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux
        pass
    if not model and sys.platform == "darwin":
        import subprocess

        with contextlib.suppress(OSError, subprocess.SubprocessError):
            model = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
    return {
        "model": model or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "flags": {flag: flag in flags for flag in CPU_FLAGS},
    }


def gpu_info() -> list[dict[str, Any]]:
    """CUDA devices: index, name, memory (GiB), compute capability and native bf16."""
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        out.append(
            {
                "index": i,
                "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}",
                "bf16": props.major >= 8,  # native bf16 from Ampere on
            }
        )
    return out


def precision_auto(measure: bool) -> dict[str, Any]:
    """What ``train.precision: auto`` would choose here (see ``train/precision.py``).

    On a GPU the answer is fixed (bf16 where supported). On a CPU, ``auto`` times a bf16 training
    step against fp32 at training start; that check runs here only when ``measure`` is true.
    """
    from tunesmith.train import precision

    decided = precision.decide_precision("auto", measure=measure)
    if decided.mixed_precision is not None:
        out = {"choice": {"no": "fp32"}.get(decided.mixed_precision, decided.mixed_precision)}
        why = decided.why
        if decided.bf16_speedup is not None:
            why += "; training measures the model's own layer at its rows"
            out["bf16_speedup"] = round(decided.bf16_speedup, 2)
            attention = precision.decide_cpu_attention("bf16")  # measured just now: cached
            if attention.speedup is not None:
                out["attention_bf16_speedup"] = round(attention.speedup, 2)
                why += f"; {attention.why}"
        return {**out, "why": why}
    need = precision.CPU_BF16_MIN_SPEEDUP
    return {
        "choice": "measured at training start",
        "why": f"bf16 only if a bf16 training step of one of the model's layers runs at least "
        f"{need}x faster than fp32; this CPU has bf16 hardware (avx512_bf16 / AMX), so either "
        "may win; `tunesmith env --measure` checks now",
    }


def attention_info(gpus: list[dict[str, Any]]) -> dict[str, Any]:
    """The default ``model.attn_implementation``, what packed training uses, flash-attn."""
    from tunesmith.config.schema import ModelConfig

    info: dict[str, Any] = {
        "default": ModelConfig.model_fields["attn_implementation"].default,
        "packed": "tunesmith_sdpa_varlen (SDPA per packed sample, no block mask)",
        "flash_attn": package_version("flash_attn"),
    }
    if not gpus:
        from tunesmith.train.precision import CPU_BF16_ATTENTION_MIN_SPEEDUP as need

        info["cpu_bf16"] = (
            f"bf16 runs keep attention in bf16 only if it measures {need}x fp32 at their start "
            "(the model's heads, samples up to data.max_length), else fp32"
        )
    else:
        import torch

        info["cuda_sdpa_kernels"] = [
            name
            for name, on in (
                ("flash", torch.backends.cuda.flash_sdp_enabled()),
                ("mem_efficient", torch.backends.cuda.mem_efficient_sdp_enabled()),
                ("math", torch.backends.cuda.math_sdp_enabled()),
            )
            if on
        ]
    return info


def cache_info() -> dict[str, Any]:
    """Where built-in models and Hugging Face downloads are cached, and whether it is offline."""
    from huggingface_hub import constants

    from tunesmith.model.tiny import cache_root

    return {
        "tunesmith": str(cache_root()),
        "hf_home": str(constants.HF_HOME),
        "hf_hub": str(constants.HF_HUB_CACHE),
        "hf_offline": bool(constants.HF_HUB_OFFLINE),
        "hf_endpoint": constants.ENDPOINT,
    }


def collect(measure: bool = False) -> dict[str, Any]:
    """Everything ``tunesmith env`` reports, as a JSON-ready dict.

    Args:
        measure: also run the ~1 s bf16-vs-fp32 timing ``train.precision: auto`` uses on CPUs.
    """
    import torch

    from tunesmith import __version__

    cpu = cpu_info()
    cpu["torch_threads"] = torch.get_num_threads()
    gpus = gpu_info()
    return {
        "tunesmith": __version__,
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "packages": {name: package_version(name) for name in PACKAGES},
        "torch_build": {
            "cuda": torch.version.cuda,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        },
        "cpu": cpu,
        "gpus": gpus,
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "precision_auto": precision_auto(measure),
        "attention": attention_info(gpus),
        "caches": cache_info(),
    }


def format_text(info: dict[str, Any]) -> str:
    """The report as aligned ``key  value`` lines, ready to paste into an issue."""
    cpu = info["cpu"]
    flags = [f for f, on in cpu["flags"].items() if on]
    gpus = [
        f"{g['index']}: {g['name']} ({g['memory_gib']} GiB, sm {g['capability']}"
        f"{', bf16' if g['bf16'] else ''})"
        for g in info["gpus"]
    ]
    build = info["torch_build"]
    att = info["attention"]
    caches = info["caches"]
    rows = [
        ("tunesmith", info["tunesmith"]),
        ("python", info["python"]),
        ("platform", info["platform"]),
        *[(name, version) for name, version in info["packages"].items()],
        ("torch build", f"cuda {build['cuda'] or 'none'}, cpu {build['cpu_capability']}"),
        (
            "cpu",
            f"{cpu['model']} ({cpu['cores']} logical cores, torch uses {cpu['torch_threads']})",
        ),
        ("cpu flags", ", ".join(flags) or "none of " + ", ".join(cpu["flags"])),
        ("gpus", "; ".join(gpus) or ("none (Apple MPS available)" if info["mps"] else "none")),
        ("precision auto", f"{info['precision_auto']['choice']}: {info['precision_auto']['why']}"),
        ("attention", f"{att['default']}; packed training: {att['packed']}"),
        *(
            [("sdpa kernels", ", ".join(att["cuda_sdpa_kernels"]))]
            if "cuda_sdpa_kernels" in att
            else []
        ),
        *([("bf16 attention", att["cpu_bf16"])] if "cpu_bf16" in att else []),
        ("tunesmith cache", caches["tunesmith"]),
        ("hf cache", caches["hf_hub"]),
        ("hf offline", "yes (HF_HUB_OFFLINE)" if caches["hf_offline"] else "no"),
    ]
    width = max(len(k) for k, _ in rows)
    return "".join(f"{k:<{width}}  {v}\n" for k, v in rows)
