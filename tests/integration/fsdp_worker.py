"""One process of ``test_fsdp_checkpoint.py`` (started by torchrun, gloo, CPU).

Accelerate runs CPU processes as DDP whatever its config says, so the model is sharded here with
``torch.distributed.fsdp.fully_shard`` itself (FSDP2, what Accelerate's ``fsdp_version: 2`` uses on
GPUs); Accelerate only provides the process group, as in a real run.

    python -m torch.distributed.run --nproc_per_node 2 fsdp_worker.py MODEL RUN_DIR MODE OUT

MODE: ``straight`` (4 steps), ``save`` (2 steps, then a checkpoint) or ``resume`` (load the
checkpoint, then steps 3 and 4). ``straight`` and ``resume`` write the full weights to OUT.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForCausalLM

from tunesmith.train.checkpoint import find_latest, load_checkpoint, save_checkpoint

STEPS = 4


def batch(step: int, rank: int, vocab: int) -> torch.Tensor:
    """Fixed tokens for each (step, rank): the same in every run."""
    gen = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randint(0, vocab, (2, 24), generator=gen)


def main(model_dir: str, run_dir: str, mode: str, out: str) -> None:
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    vocab = model.config.vocab_size

    first = 0
    if mode == "resume":
        ckpt = find_latest(Path(run_dir))
        assert ckpt is not None, "no checkpoint to resume from"
        first = load_checkpoint(
            ckpt, model=model, optimizer=optimizer, scheduler=scheduler, accelerator=accelerator
        )["step"]
    last = 2 if mode == "save" else STEPS
    for step in range(first, last):
        x = batch(step, accelerator.process_index, vocab)
        model(input_ids=x, labels=x).loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    if mode == "save":
        save_checkpoint(
            Path(run_dir),
            last,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            accelerator=accelerator,
            state={"step": last},
            keep_last=2,
        )
        return
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(model, options=options)
    if accelerator.is_main_process:
        save_file({k: v.contiguous() for k, v in full.items()}, out)


if __name__ == "__main__":
    main(*sys.argv[1:5])
