"""The run's ``Accelerator``: precision, device and experiment trackers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.config.schema import RunConfig
from tunesmith.errors import ConfigError
from tunesmith.train.precision import (
    AttentionChoice,
    StepShape,
    decide_cpu_attention,
    decide_precision,
    model_shape,
)

TRACKER_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def make_accelerator(cfg: RunConfig, run_dir: Path, say: Any = None) -> Any:
    """The run's Accelerator: precision, device, and the trackers of ``train.report_to``.

    Trackers log under ``<run_dir>/trackers`` (tensorboard) or wherever the tracker's own
    environment points (wandb, mlflow); a tracker that is not installed is a config error.
    """
    import importlib.util

    import torch
    from accelerate import Accelerator

    trackers = list(cfg.train.report_to)
    for name in trackers:
        if importlib.util.find_spec(TRACKER_MODULES[name]) is None:
            raise ConfigError(
                f"train.report_to: {name} is not installed; pip install {name}, or remove it"
            )
    cpu, shape = not torch.cuda.is_available(), None
    if cpu and cfg.train.precision != "fp32":
        shape = model_shape(cfg.model.name, cfg.data.max_length, cfg.train.batch_size)
    decided = decide_precision(cfg.train.precision, shape)
    mixed_precision = decided.mixed_precision or "no"
    attention = use_cpu_attention(mixed_precision, shape) if cpu else None
    allow_precision(mixed_precision)
    accelerator = Accelerator(
        mixed_precision=mixed_precision,
        cpu=cpu,
        log_with=trackers or None,
        project_dir=str(run_dir / "trackers") if trackers else None,
    )
    if trackers:
        accelerator.init_trackers(cfg.output.name, config=flat_hparams(cfg))
    if say is not None and accelerator.is_main_process:
        if cfg.train.precision == "auto":
            chosen = {"no": "fp32"}.get(mixed_precision, mixed_precision)
            say(f"precision auto -> {chosen} on {decided.why}")
        if attention is not None and attention.speedup is not None:
            say(f"attention on this CPU: {attention.why}")
    return accelerator


def use_cpu_attention(mixed_precision: str, shape: StepShape | None) -> AttentionChoice:
    """Decide a CPU run's attention precision (``decide_cpu_attention``) and set it for the run."""
    from tunesmith.model.attention import keep_low_precision_on_cpu

    attention = decide_cpu_attention(mixed_precision, shape)
    keep_low_precision_on_cpu(attention.bf16)
    return attention


def allow_precision(mixed_precision: str) -> None:
    """Let a later run in the same Python process (a notebook, a test session) change precision.

    Accelerate keeps one process-wide state and refuses an ``Accelerator`` whose precision differs
    from the first one's. Only its precision part is cleared here (Accelerate's own reset, which
    its tests use); the process group and device (``PartialState``) stay as they are.
    """
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed_precision) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def flat_hparams(cfg: RunConfig) -> dict[str, Any]:
    """The config as ``{"train.lr": 2e-4, ...}`` with scalar values only (what trackers take)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(value, (bool, int, float, str)):
            out[prefix] = value
        elif value is not None:
            out[prefix] = str(value)

    walk("", cfg.model_dump(mode="json"))
    return out
