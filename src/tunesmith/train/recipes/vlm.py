"""Vision-language fine-tuning, LLaVA-style, in two stages, top to bottom.

* ``vlm_pretrain``: the vision tower and the LLM stay frozen; only the projector learns, on
  image-caption pairs (a higher learning rate suits it, e.g. 1e-3). Saves the whole model to
  ``model/``.
* ``vlm_sft``: start from the first stage's run directory (``model.name: runs/vlm-pretrain``);
  the projector and the LLM (``method.type`` ``full`` or ``lora``) learn, the vision tower is
  frozen unless ``model.vision.train_vision`` says ``lora`` or ``full``. Saves ``model/`` (full)
  or ``adapter/`` (LoRA, whose ``adapter_config.json`` records the base folder).

The steps are SFT's (``train/session.py``): the same run directory, renderer, data engine,
optimiser, loop and checkpoints. What differs: the model and its processor, the ``<image>``
placeholders expanded into the tower's image tokens before truncation, and batches that carry
``pixel_values`` (loaded when a batch is used, not all at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

from tunesmith.atomic import replace_dir
from tunesmith.config.load import check_stage_settings
from tunesmith.config.schema import RunConfig
from tunesmith.errors import ConfigError
from tunesmith.train.session import Session, TrainResult

STAGES = ("vlm_pretrain", "vlm_sft")


class VLMBatches(Sequence[dict[str, Any]]):
    """One epoch of collated micro-batches whose images are loaded when a batch is taken.

    The order and sharding are ``data/shard.shard``'s, as for text batches: packed rows (or single
    samples, grouped by length with ``group_by_length``) in a seeded order, ``batch_size *
    num_processes`` units per global micro-batch, every ``num_processes``-th unit of it for this
    process.
    """

    def __init__(
        self,
        samples: Sequence[dict[str, Any]],
        *,
        batch_size: int,
        max_length: int,
        packing: bool,
        pad_token_id: int,
        image_processor: Any,
        seed: int,
        allow_remote: bool = False,
        num_processes: int = 1,
        rank: int = 0,
        group_by_length: bool = False,
    ) -> None:
        from tunesmith.data.shard import shard_samples

        self.samples, self.packing, self.pad = samples, packing, pad_token_id
        self.image_processor, self.allow_remote = image_processor, allow_remote
        units, shards = shard_samples(
            samples,
            max_length=max_length,
            packing=packing,
            group_by_length=group_by_length,
            seed=seed,
            batch_size=batch_size,
            num_processes=num_processes,
            rank=rank,
        )
        self.groups: list[list[list[int]]] = []
        self.no_loss: list[bool] = []
        for mine in shards:
            self.no_loss.append(not mine)  # fewer units than processes: a batch with no loss
            self.groups.append(mine or [units[0]])

    def __len__(self) -> int:
        return len(self.groups)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return self._collate(self.groups[i], self.no_loss[i])

    def _collate(self, units: list[list[int]], no_loss: bool) -> dict[str, Any]:
        from tunesmith.data.collate import add_pixel_values, collate_packed, collate_padded

        rows = [[self.samples[k] for k in u] for u in units]
        if no_loss:
            rows = [[{**rows[0][0], "labels": [-100] * len(rows[0][0]["labels"])}]]
        if self.packing:
            batch = collate_packed(rows, self.pad)
        else:
            batch = collate_padded([r[0] for r in rows], self.pad)
        flat = [s for row in rows for s in row]
        return add_pixel_values(batch, flat, self.image_processor, allow_remote=self.allow_remote)


def check_stage(cfg: RunConfig) -> None:
    """The vlm stages only, and the schema's stage/setting rules (``config/schema/run.py``,
    ``stage_problems``: load_config ran them already). What needs the model (the tower's image
    tokens, LoRA targets) is checked in ``model/multimodal.py`` on loading it."""
    if cfg.method.stage not in STAGES:
        raise ConfigError(f"method.stage {cfg.method.stage!r}: the vlm recipe runs {STAGES}")
    check_stage_settings(cfg)


def run(cfg: RunConfig, *, console: Any = None, show_progress: bool = True) -> TrainResult:
    """Train one vlm stage according to ``cfg``."""
    from tunesmith.model.adapters import param_report
    from tunesmith.model.multimodal import (
        IMAGE_TOKEN,
        apply_vlm_method,
        image_seq_length,
        load_llava_for_training,
    )
    from tunesmith.train.session import enable_activation_checkpointing, seed_everything

    check_stage(cfg)
    session = Session.start(cfg, console)
    tc, stage, accelerator = cfg.train, cfg.method.stage, session.accelerator
    vision = cfg.model.vision
    allow_remote = bool(vision and vision.allow_remote_images)

    # 1. Model and processor (composed, built-in, a LLaVA checkpoint or the previous stage).
    model, processor, source = load_llava_for_training(cfg.model)
    seed_everything(tc.seed)  # the same adapter init whether or not a model was built just now
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:  # as load_tokenizer does for text models
        tokenizer.pad_token = tokenizer.eos_token
    session.say(f"model: {source} ({image_seq_length(processor)} tokens per image)")

    # 2. Data: <image> becomes the tower's image tokens before the length policy applies.
    renderer = session.renderer(
        tokenizer,
        image_token=IMAGE_TOKEN,
        image_seq_length=image_seq_length(processor),
        allow_remote_images=allow_remote,
    )
    processor.chat_template = renderer.chat_template  # saved: inference uses the same template
    data = session.data(renderer, "sft")

    # 3. What trains.
    model.config.use_cache = False  # a KV cache would break packed-sequence isolation
    model.config.text_config.use_cache = False
    if tc.gradient_checkpointing:
        enable_activation_checkpointing(model)
    model = apply_vlm_method(model, stage, cfg.method, vision)
    session.say(f"stage {stage}: {param_report(model)}")

    # 4. Batches (images load when a batch is used), schedule, optimiser, resume.
    def batches_for(samples: list[dict[str, Any]], seed: int) -> VLMBatches:
        return VLMBatches(
            samples,
            batch_size=tc.batch_size,
            max_length=cfg.data.max_length,
            packing=cfg.data.packing,
            pad_token_id=tokenizer.pad_token_id,
            image_processor=processor.image_processor,
            seed=seed,
            allow_remote=allow_remote,
            num_processes=accelerator.num_processes,
            rank=accelerator.process_index,
            group_by_length=cfg.data.group_by_length,
        )

    opt = session.optimise(model, batches_for, data.train, data.val)

    # 5. The shared loop (its default step passes pixel_values through), then save in standard
    # formats: stock transformers (+ peft for an adapter) reload them.
    loop = session.train(opt, show_progress=show_progress)
    return session.finish(
        loop,
        opt.model,
        tokenizer,
        renderer,
        save=lambda unwrapped, state_dict: save_vlm(
            unwrapped, processor, session.run_dir, state_dict=state_dict
        ),
    )


def save_vlm(
    model: Any, processor: Any, run_dir: Path, *, state_dict: dict[str, Any] | None = None
) -> Path:
    """Save ``adapter/`` (a peft model) or ``model/`` with the processor, atomically.

    ``state_dict``: the weights gathered from a sharded run (see ``gathered_state_dict``).
    """
    is_peft = hasattr(model, "get_base_model")
    target = run_dir / ("adapter" if is_peft else "model")
    base = model.get_base_model() if is_peft else model
    base.config.use_cache = True  # training turned it off; inference wants it back
    base.config.text_config.use_cache = True
    with replace_dir(target, f".{target.name}.") as tmp:  # written whole or not at all
        model.save_pretrained(tmp, **({} if state_dict is None else {"state_dict": state_dict}))
        processor.save_pretrained(tmp)
    from tunesmith.export.card import write_run_card

    write_run_card(run_dir)  # the run's README.md: what was trained, how it went, what next
    return target
