"""Multi-process launch: torchrun for DDP (CPU or GPU), Accelerate's launcher for FSDP/DeepSpeed.

The training command re-runs itself once per process. Accelerate 1.15's own launcher starts a
single process on CPU (see STACK-NOTES), so plain data parallelism goes through torchrun and
Accelerate picks the process group up from torchrun's environment inside the loop. FSDP and
DeepSpeed are configured by an Accelerate config file (``accelerate config`` writes one; tunesmith
ships ``ddp``, ``fsdp``, ``fsdp-offload``, ``zero2`` and ``zero3``), which only Accelerate's
launcher turns into the environment its plugins read, so those runs go through
``accelerate launch --config_file``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tunesmith.errors import ConfigError

SHARDED = ("FSDP", "DEEPSPEED")


@dataclass(frozen=True)
class Launch:
    """Where and how many processes to start."""

    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    accelerate_config: str | None = None


def shipped_configs() -> dict[str, Path]:
    """Shipped Accelerate config name -> file (``ddp``, ``fsdp``, ...)."""
    folder = Path(str(resources.files("tunesmith") / "config" / "accelerate"))
    return {f.stem: f for f in sorted(folder.glob("*.yaml"), key=lambda f: f.stem)}


def resolve_accelerate_config(name: str) -> Path:
    """A path to an Accelerate config file, or the name of a shipped one."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_configs()
    if name in shipped:
        return shipped[name]
    raise ConfigError(
        f"--accelerate-config {name}: no such file; give a path or one of {', '.join(shipped)}"
    )


def distributed_type(config_file: Path) -> str:
    """The ``distributed_type`` an Accelerate config file asks for (read by Accelerate itself)."""
    from accelerate.commands.config.config_args import load_config_from_file

    try:
        cfg = load_config_from_file(str(config_file))
    except Exception as exc:  # its parser raises plain errors on bad keys
        raise ConfigError(
            f"--accelerate-config {config_file}: not an Accelerate config ({exc})"
        ) from None
    kind = cfg.distributed_type
    return str(getattr(kind, "value", kind))


def command(launch: Launch, train_args: list[str], *, cuda: bool) -> list[str]:
    """The command line that starts ``launch.nproc`` processes each running ``train_args``.

    Args:
        launch: Process counts and rendezvous.
        train_args: What follows ``tunesmith`` in every process (``train CFG overrides...``).
        cuda: Whether this machine has CUDA devices (FSDP/DeepSpeed need them).

    Raises:
        ConfigError: An unknown Accelerate config, or FSDP/DeepSpeed asked for without GPUs.
    """
    module = ["-m", "tunesmith", *train_args]
    if launch.accelerate_config is None:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={launch.nproc}",
            f"--nnodes={launch.nnodes}",
            f"--node_rank={launch.node_rank}",
            f"--master_addr={launch.master_addr}",
            f"--master_port={launch.master_port}",
            *module,
        ]
    config_file = resolve_accelerate_config(launch.accelerate_config)
    kind = distributed_type(config_file)
    if kind in SHARDED and not cuda:
        raise ConfigError(
            f"--accelerate-config {launch.accelerate_config}: {kind} needs GPUs and none is "
            "visible (Accelerate runs CPU processes as DDP); drop the option to train with DDP"
        )
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_file),
        "--num_processes",
        str(launch.nproc * launch.nnodes),
        "--num_machines",
        str(launch.nnodes),
        "--machine_rank",
        str(launch.node_rank),
        "--main_process_ip",
        launch.master_addr,
        "--main_process_port",
        str(launch.master_port),
        *module,
    ]


def run(launch: Launch, train_args: list[str]) -> int:
    """Start the processes and wait for them; their exit code."""
    import subprocess

    import torch

    return subprocess.call(command(launch, train_args, cuda=torch.cuda.is_available()))
