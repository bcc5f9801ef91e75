"""Atomic training checkpoints and exact resume.

A checkpoint is the directory ``<run_dir>/checkpoints/step-00000010/``::

    weights.safetensors   trainable parameters of the unwrapped model by name (peft: the adapter)
    optimizer.pt          optimizer.state_dict()
    scheduler.pt          scheduler.state_dict()
    scaler.pt             the fp16 GradScaler state (only when Accelerate uses one)
    rng-<rank>.pt         Python, NumPy, torch CPU and CUDA RNG states of each process
    state.json            the caller's loop state (step, epoch, data position, tokens seen, ...)
    complete.json         step, time and a SHA-256 for every file above, written last

Under FSDP the same files hold full tensors: the shards are gathered to the main process on save
(the optimizer state then keyed by parameter name) and every process keeps its own shards of them
on load, so its weights and optimizer files do not depend on how the run was sharded.

Everything is written into a hidden temporary directory next to it, fsynced, and only then renamed
to its final name, so a checkpoint exists under ``step-*`` only once it is complete: a SIGKILL at
any moment leaves either the previous checkpoints or a ``.tmp-*`` directory that is ignored (and
removed by the next save). Nothing is written into a checkpoint after the rename.

Before any of a checkpoint is read on resume, its marker must parse and every file must match its
checksum (``verify_checkpoint``): ``train.resume: auto`` skips damaged ones (a disk error, a torn
copy, a hand edit) with a notice naming each and why, and resumes from the newest intact one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunesmith.errors import ConfigError, TunesmithError

CHECKPOINT_DIR = "checkpoints"
WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
SCALER = "scaler.pt"
STATE = "state.json"
COMPLETE = "complete.json"
FORMAT_VERSION = 1

_FINAL = re.compile(r"^step-(\d+)$")
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_CHUNK = 8 << 20


def checkpoint_name(step: int) -> str:
    """The directory name of the checkpoint taken after optimiser step ``step``."""
    return f"step-{step:08d}"


# --------------------------------------------------------------------------------------------
# Save


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    accelerator: Any = None,
    state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write the checkpoint of ``step`` atomically and prune to the newest ``keep_last``.

    Call it on every process (it synchronises them); only the main process writes, but every
    process's RNG states are kept. ``model`` may be the Accelerate-prepared model. Call it as the
    last thing of a step: whatever draws random numbers after it would not be replayed on resume.

    Args:
        run_dir: The run directory; checkpoints go to ``run_dir/checkpoints``.
        step: Optimiser steps completed.
        model: The model (plain ``transformers``, a ``peft`` model, or any ``nn.Module``).
        optimizer: The optimizer (possibly Accelerate's wrapper).
        scheduler: The LR scheduler.
        accelerator: The ``Accelerator``, or None in a single process without one.
        state: JSON-serialisable loop state, returned unchanged by ``load_checkpoint``.
        keep_last: How many complete checkpoints to keep (>= 1).

    Returns:
        The final checkpoint directory.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    sharded = _sharded(model, accelerator)
    root = Path(run_dir) / CHECKPOINT_DIR
    final = root / checkpoint_name(step)
    tmp = root / f"{_TMP_PREFIX}{final.name}"
    payload = json.dumps(state)  # fail before touching the disk if state is not JSON
    # Each process draws its own random numbers (dropout): keep every process's RNG states,
    # gathered to the main process so that only it writes (no shared filesystem needed).
    rng_states = _gather_rng(accelerator)
    # Under FSDP each process holds a shard: gather full tensors to the main process (a
    # collective), so the checkpoint has the same layout as an unsharded one.
    full = _full_states(model, optimizer, accelerator) if sharded else None

    if _is_main(accelerator):
        root.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(root)
        tmp.mkdir()
        for rank, rng in enumerate(rng_states):
            _write_file(tmp / f"rng-{rank}.pt", lambda p, rng=rng: torch.save(rng, p))
        weights, optim_state = full or (None, optimizer.state_dict())
        _write_weights(tmp / WEIGHTS, _unwrap(model, accelerator), weights)
        _write_file(tmp / OPTIMIZER, lambda p: torch.save(optim_state, p))
        _write_file(tmp / SCHEDULER, lambda p: torch.save(scheduler.state_dict(), p))
        scaler = getattr(accelerator, "scaler", None)
        if scaler is not None:
            _write_file(tmp / SCALER, lambda p: torch.save(scaler.state_dict(), p))
        _write_file(tmp / STATE, lambda p: Path(p).write_text(payload + "\n", encoding="utf-8"))
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        marker = {"format": FORMAT_VERSION, "step": step, "time": time.time(), "files": files}
        _write_file(
            tmp / COMPLETE,
            lambda p: Path(p).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8"),
        )
        _fsync_dir(tmp)
        if final.exists():  # the same step saved again (a run resumed from an older checkpoint)
            _discard(final)
        os.replace(tmp, final)  # the commit point: complete under its final name, or absent
        _fsync_dir(root)
        _prune(root, keep_last)
    _barrier(accelerator)
    return final


def _write_weights(path: Path, model: Any, full: dict[str, torch.Tensor] | None = None) -> None:
    """The trainable parameters by name; ``full``: gathered tensors of a sharded model."""
    from safetensors.torch import save_file

    tensors = {
        name: (p if full is None else full[name]).detach().to("cpu").contiguous()
        for name, p in model.named_parameters()
        if p.requires_grad
    }
    if not tensors:
        raise TunesmithError("checkpoint: the model has no trainable parameters to save")
    _write_file(path, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))


def _write_file(path: Path, write: Any) -> None:
    """Write with ``write(path)`` and force the bytes to disk."""
    write(path)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms without directory handles (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _discard(path: Path) -> None:
    """Delete a directory crash-safely: rename it out of sight first, then remove it."""
    trash = path.with_name(f"{_TRASH_PREFIX}{path.name}-{os.getpid()}-{time.time_ns()}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _remove_leftovers(root: Path) -> None:
    """Remove temporary and half-deleted directories left by an interrupted save or prune."""
    for child in root.iterdir():
        if child.is_dir() and child.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)):
            shutil.rmtree(child, ignore_errors=True)


def _prune(root: Path, keep_last: int) -> None:
    for old in _complete_checkpoints(root)[:-keep_last]:
        _discard(old)


# --------------------------------------------------------------------------------------------
# Find


def _step_of(path: Path) -> int | None:
    match = _FINAL.match(path.name)
    return int(match.group(1)) if match else None


def is_complete(path: Path) -> bool:
    """Whether ``path`` is a checkpoint directory that finished writing (not yet verified)."""
    path = Path(path)
    return path.is_dir() and (path / COMPLETE).is_file()


REQUIRED = (WEIGHTS, OPTIMIZER, SCHEDULER, STATE, "rng-0.pt")


def verify_checkpoint(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be resumed from, or None when it is intact.

    Nothing in it is read before its completion marker parses and every file matches the
    SHA-256 recorded there at save time: a torn, truncated or hand-edited checkpoint is named
    instead of failing halfway through the load.
    """
    path = Path(path)
    if not path.exists():
        return "no such directory"
    if not path.is_dir():
        return "not a directory"
    if path.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)):
        return "an unfinished save (a temporary directory)"
    if not (path / COMPLETE).is_file():
        return f"{COMPLETE} is missing (the save did not finish)"
    try:
        marker = json.loads((path / COMPLETE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return f"{COMPLETE} is not valid JSON (torn or truncated)"
    files = marker.get("files") if isinstance(marker, dict) else None
    if not isinstance(files, dict):
        files = {}
    for name in REQUIRED:
        if not (path / name).is_file():
            return f"{name} is missing"
    if missing := [name for name in REQUIRED if name not in files]:
        return f"{COMPLETE} lists no checksum for {missing[0]} (edited, or not from tunesmith)"
    for name, expected in files.items():
        if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
            return f"{COMPLETE} lists a file outside the checkpoint ({name!r})"
        target = path / name
        if not target.is_file():
            return f"{name} is missing"
        try:
            digest = _sha256(target)
        except OSError as exc:
            return f"{name} cannot be read ({exc.strerror})"
        if digest != expected:
            return f"{name} does not match its checksum (torn, truncated or modified)"
    return None


def _complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest step first."""
    if not root.is_dir():
        return []
    found = [
        (step, child)
        for child in root.iterdir()
        if (step := _step_of(child)) is not None and is_complete(child)
    ]
    return [path for _, path in sorted(found)]


def _all_checkpoints(root: Path) -> list[Path]:
    """Every ``step-*`` directory under ``root`` (finished or not), oldest step first."""
    if not root.is_dir():
        return []
    found = [(step, c) for c in root.iterdir() if (step := _step_of(c)) is not None and c.is_dir()]
    return [path for _, path in sorted(found)]


def find_latest(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step in ``run_dir``, or None (not verified)."""
    found = _complete_checkpoints(Path(run_dir) / CHECKPOINT_DIR)
    return found[-1] if found else None


def resolve_resume(
    run_dir: Path, resume: str | bool | None, *, say: Callable[[str], Any] | None = None
) -> Path | None:
    """The verified checkpoint to resume from for a ``train.resume`` value.

    ``"auto"`` (or True) gives the newest intact checkpoint of ``run_dir``: damaged ones are
    skipped with a notice through ``say`` naming each and why; with none at all it says the run
    starts fresh and gives None. A path must be an intact checkpoint; False/None never resumes.
    """
    say = say or (lambda _: None)
    if resume is None or resume is False:
        return None
    if resume is True or resume == "auto":
        root = Path(run_dir) / CHECKPOINT_DIR
        candidates = _all_checkpoints(root)
        skipped: list[tuple[Path, str]] = []
        for path in reversed(candidates):
            reason = verify_checkpoint(path)
            if reason is None:
                for bad, why in skipped:
                    say(f"train.resume: skipping {bad}: {why}; resuming from {path} instead")
                return path
            skipped.append((path, reason))
        for bad, why in skipped:
            say(f"train.resume: skipping {bad}: {why}")
        if not skipped:
            say(f"train.resume: no checkpoint in {root}; starting fresh")
        return None
    path = Path(resume).expanduser()
    reason = verify_checkpoint(path)
    if reason is not None:
        raise ConfigError(
            f"train.resume: {resume}: {reason}; give an intact checkpoint, or "
            "train.resume=auto (the newest intact one)"
        )
    return path


# --------------------------------------------------------------------------------------------
# Load


def load_checkpoint(
    path: Path,
    *,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    accelerator: Any = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG states from ``path``; return its state.

    Call it on every process after ``accelerator.prepare`` and after everything else that draws
    random numbers during setup, right before the loop: the RNG states it restores must be the
    ones the loop continues with.

    ``verify=False`` skips the checksums when ``resolve_resume`` has just checked them (they read
    every byte of the checkpoint).

    Raises:
        ConfigError: the checkpoint is incomplete, corrupt, or does not fit the model.
    """
    path = Path(path)
    if verify:
        reason = verify_checkpoint(path)
        if reason is not None:
            raise ConfigError(f"train.resume: {path}: {reason}; resume from an older checkpoint")
    sharded = _sharded(model, accelerator)

    inner = _unwrap(model, accelerator)
    optim_state = torch.load(path / OPTIMIZER, map_location="cpu", weights_only=True)
    if sharded:
        _load_sharded(path, inner, optimizer, optim_state)
    else:
        _load_weights(path, inner)
        optimizer.load_state_dict(optim_state)
    scheduler.load_state_dict(torch.load(path / SCHEDULER, weights_only=True))
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and (path / SCALER).is_file():
        scaler.load_state_dict(torch.load(path / SCALER, weights_only=True))
    rng_file = path / f"rng-{_rank(accelerator)}.pt"
    if not rng_file.is_file():  # resumed with more processes than were saved
        rng_file = path / "rng-0.pt"
    _set_rng_state(torch.load(rng_file, weights_only=True))
    return json.loads((path / STATE).read_text(encoding="utf-8"))


def _load_weights(path: Path, model: Any, *, copy: bool = True) -> dict[str, torch.Tensor]:
    """Check the saved trainable parameters against ``model`` and (``copy``) load them."""
    from safetensors.torch import load_file

    saved = load_file(str(path / WEIGHTS))
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing = sorted(params.keys() - saved.keys())
    unexpected = sorted(saved.keys() - params.keys())
    if missing or unexpected:
        detail = "; ".join(
            f"{label} {len(names)} (e.g. {names[0]})"
            for label, names in (("missing", missing), ("unexpected", unexpected))
            if names
        )
        raise ConfigError(
            f"train.resume: {path}: trainable parameters do not match the model ({detail}); "
            "resume with the same model and method"
        )
    for name, p in params.items():
        tensor = saved[name]
        if tensor.shape != p.shape or tensor.dtype != p.dtype:
            raise ConfigError(
                f"train.resume: {path}: {name} is {tuple(tensor.shape)} {tensor.dtype} in the "
                f"checkpoint but {tuple(p.shape)} {p.dtype} in the model; resume with the same "
                "model, method and dtype"
            )
    if copy:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name])
    return saved


# --------------------------------------------------------------------------------------------
# FSDP: full (gathered) states in the checkpoint, sharded states in the processes


def _sharded(model: Any, accelerator: Any) -> bool:
    """Whether the weights are FSDP shards; DeepSpeed is refused (its engine owns the states)."""
    kind = getattr(getattr(accelerator, "distributed_type", None), "value", "")
    if kind == "DEEPSPEED":
        raise ConfigError(
            "train.save_every: checkpoints under DeepSpeed (its engine shards weights and "
            "optimizer) are not supported; use FSDP (--accelerate-config fsdp) or DDP, or set "
            "train.save_every: null"
        )
    if kind == "FSDP":
        return True
    from torch.distributed.tensor import DTensor

    inner = _unwrap(model, accelerator)
    return any(isinstance(p, DTensor) for p in inner.parameters())


def _full_states(model: Any, optimizer: Any, accelerator: Any) -> tuple[dict, dict]:
    """Full model and optimizer state dicts (on the main process; empty elsewhere)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    inner = _unwrap(model, accelerator)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(inner, options=options)
    optim = get_optimizer_state_dict(
        inner, getattr(optimizer, "optimizer", optimizer), options=options
    )
    return weights, optim


def _load_sharded(path: Path, model: Any, optimizer: Any, optim_state: dict) -> None:
    """Every process reads the full states and keeps its own shards of them."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    saved = _load_weights(path, model, copy=False)  # names, shapes and dtypes checked
    options = StateDictOptions(full_state_dict=True, strict=False)  # trainable weights only
    set_model_state_dict(model, saved, options=options)
    inner_opt = getattr(optimizer, "optimizer", optimizer)
    set_optimizer_state_dict(model, inner_opt, optim_state, options=options)


# --------------------------------------------------------------------------------------------
# RNG


def _rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        # NumPy's key array as a tensor, so the file loads with ``weights_only=True``.
        "numpy": [str(kind), torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss],
        "numpy_gauss": float(cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss = state["numpy"]
    np.random.set_state(
        (kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), state["numpy_gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"][: torch.cuda.device_count()]
        for index, rng in enumerate(saved):
            torch.cuda.set_rng_state(rng, index)


# --------------------------------------------------------------------------------------------
# Processes


def _is_main(accelerator: Any) -> bool:
    return accelerator is None or bool(accelerator.is_main_process)


def _rank(accelerator: Any) -> int:
    return 0 if accelerator is None else int(accelerator.process_index)


def _gather_rng(accelerator: Any) -> list[dict[str, Any]]:
    """Every process's RNG states, in rank order (a collective call in multi-process runs)."""
    if accelerator is None or accelerator.num_processes == 1:
        return [_rng_state()]
    from accelerate.utils import gather_object

    return list(gather_object([_rng_state()]))


def _barrier(accelerator: Any) -> None:
    if accelerator is not None:
        accelerator.wait_for_everyone()


def _unwrap(model: Any, accelerator: Any) -> Any:
    return model if accelerator is None else accelerator.unwrap_model(model)
