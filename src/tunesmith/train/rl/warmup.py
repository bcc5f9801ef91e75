"""GRPO's optional warm-up: a few full fine-tuning steps on the prompts' answers before RL.

Group-relative advantages need rewards that differ within a group; a model that never produces
the format the rule rewards check (a freshly initialised one, or a base model far from the task)
gets all-zero groups and no gradient. ``method.grpo.warmup_steps`` first teaches the answer
format with the ordinary next-token loss on ``prompt -> answer`` (the prompts' ``answer``
fields). It fine-tunes the whole model before the method is applied, so the warmed-up model is
both what LoRA adapts and the reference (adapters off, or the frozen copy), as if an SFT run had
come first; its optimiser is its own (the RL optimiser starts fresh). It needs the memory of
full fine-tuning: for a large model, train an sft run and start GRPO from its model instead.

Checkpoints hold the trainable weights only, so a resumed run repeats the (deterministic)
warm-up before the checkpoint restores the adapters, optimiser and RNG.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from tunesmith.errors import DataError


def warmup_samples(
    prompts: Sequence[dict[str, Any]], renderer: Any
) -> tuple[list[dict[str, Any]], int]:
    """Rendered ``prompt + answer`` conversations (labels on the answer), and how many prompts
    had no answer or did not render (counted, not trained)."""
    from tunesmith.data.render import SkipSample
    from tunesmith.data.types import Conversation, Message

    have = [p for p in prompts if p.get("answer") is not None]
    convs = [
        Conversation(
            messages=[Message(role=m["role"], content=m["content"]) for m in p["messages"]]
            + [Message(role="assistant", content=str(p["answer"]))]
        )
        for p in have
    ]
    rendered = renderer.render_many(convs, [p["where"] for p in have])
    out = [r.as_dict() for r in rendered if not isinstance(r, SkipSample)]
    return out, len(prompts) - len(out)


def run_warmup(
    cfg: Any, model: Any, renderer: Any, prompts: Sequence[dict[str, Any]], accelerator: Any
) -> dict[str, float]:
    """Fine-tune every weight of ``model`` for ``method.grpo.warmup_steps`` SFT steps.

    Batches of ``train.batch_size * group_size`` answers (as many sequences as an RL
    micro-batch trains on) in a seeded order (``train.seed``), constant
    learning rate ``method.grpo.warmup_lr`` (default ``train.lr``), the run's optimiser kind.

    Returns:
        ``warmup/loss_first``, ``warmup/loss_last`` (mean token loss of the first and last
        step), ``warmup/samples`` and ``warmup/skipped``.
    """
    import torch

    from tunesmith.data.collate import collate_padded
    from tunesmith.train.optim import make_optimizer

    g, tc = cfg.method.grpo, cfg.train
    samples, skipped = warmup_samples(prompts, renderer)
    if not samples:
        raise DataError(
            "method.grpo.warmup_steps: no prompt has an answer to warm up on; give the data an "
            "answer field (or a final assistant turn), or set warmup_steps 0"
        )
    lr = g.warmup_lr or tc.lr
    model.requires_grad_(True)  # the method (LoRA, freeze) decides what trains afterwards
    optimizer = make_optimizer(
        model, cfg.model_copy(update={"train": tc.model_copy(update={"lr": lr})})
    )
    pad = renderer.tokenizer.pad_token_id
    rng = random.Random(tc.seed)
    width = tc.batch_size * g.group_size
    order: list[int] = []
    losses: list[float] = []
    model.train()
    dev = accelerator.device
    for _ in range(g.warmup_steps):
        if len(order) < width:
            fresh = list(range(len(samples)))
            rng.shuffle(fresh)
            order += fresh
        chunk, order = order[:width], order[width:]
        batch = collate_padded([samples[i] for i in chunk], pad)
        with accelerator.autocast():
            out = model(
                input_ids=batch["input_ids"].to(dev),
                attention_mask=batch["attention_mask"].to(dev),
                labels=batch["labels"].to(dev),
                use_cache=False,
            )
        out.loss.backward()
        if tc.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], tc.max_grad_norm
            )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(out.loss.detach()))
    return {
        "warmup/loss_first": round(losses[0], 6),
        "warmup/loss_last": round(losses[-1], 6),
        "warmup/samples": float(len(samples)),
        "warmup/skipped": float(skipped),
    }
