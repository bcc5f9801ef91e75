"""Multi-process launch commands: torchrun for DDP, Accelerate's launcher for FSDP / DeepSpeed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tunesmith.errors import ConfigError
from tunesmith.train import launch


def test_shipped_accelerate_configs_parse_with_accelerate_itself() -> None:
    kinds = {name: launch.distributed_type(path) for name, path in launch.shipped_configs().items()}
    assert kinds == {
        "ddp": "MULTI_GPU",
        "fsdp": "FSDP",
        "fsdp-offload": "FSDP",
        "zero2": "DEEPSPEED",
        "zero3": "DEEPSPEED",
    }


def test_ddp_goes_through_torchrun_with_the_rendezvous() -> None:
    spec = launch.Launch(nproc=2, nnodes=2, node_rank=1, master_addr="10.0.0.5", master_port=2222)
    cmd = launch.command(spec, ["train", "cfg.yaml", "train.lr=1e-4"], cuda=False)
    assert cmd == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--nnodes=2",
        "--node_rank=1",
        "--master_addr=10.0.0.5",
        "--master_port=2222",
        "-m",
        "tunesmith",
        "train",
        "cfg.yaml",
        "train.lr=1e-4",
    ]


def test_fsdp_goes_through_accelerate_launch_on_gpus() -> None:
    spec = launch.Launch(nproc=8, accelerate_config="fsdp")
    cmd = launch.command(spec, ["train", "cfg.yaml"], cuda=True)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    args = dict(zip(cmd[3:13:2], cmd[4:14:2]))
    assert Path(args["--config_file"]) == launch.shipped_configs()["fsdp"]
    assert args["--num_processes"] == "8"
    assert args["--num_machines"] == "1"
    assert cmd[-4:] == ["-m", "tunesmith", "train", "cfg.yaml"]


@pytest.mark.parametrize("name", ["fsdp", "fsdp-offload", "zero2", "zero3"])
def test_sharded_strategies_without_gpus_are_a_clear_error(name: str) -> None:
    with pytest.raises(ConfigError, match=r"--accelerate-config .*needs GPUs.*drop the option"):
        launch.command(launch.Launch(nproc=2, accelerate_config=name), ["train", "x"], cuda=False)


def test_unknown_accelerate_config_names_the_shipped_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such file.*ddp, fsdp, fsdp-offload, zero2, zero3"):
        launch.resolve_accelerate_config("fsdpp")
    bad = tmp_path / "bad.yaml"
    bad.write_text("distributed_type: NOPE\n")
    with pytest.raises(ConfigError, match=r"not an Accelerate config"):
        launch.distributed_type(bad)


def test_cli_passes_the_command_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tunesmith import cli

    seen: list[tuple[launch.Launch, list[str]]] = []
    monkeypatch.setattr(launch, "run", lambda spec, args: seen.append((spec, args)) or 0)
    code = cli.main(["train", "identity", "--nproc", "2", "--no-progress", "train.lr=1e-3"])
    assert code == 0
    spec, args = seen[0]
    assert spec.nproc == 2 and spec.accelerate_config is None
    assert args[0] == "train" and args[1].endswith("identity.yaml")
    assert args[2:] == ["train.lr=1e-3", "--no-progress"]
