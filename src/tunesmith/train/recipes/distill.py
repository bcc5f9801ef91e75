"""Logit distillation (``method.stage: distill``), top to bottom.

The student trains as in SFT (``train/session.py``: the same run directory, data, adapters,
optimiser, loop, checkpoints and resume); what differs is the step. For every micro-batch (or
pass, ``train.pass_tokens``) the teacher runs on the very same inputs -- packed rows included,
with the same per-sample attention -- in eval mode under ``no_grad``, and the student learns its
next-token distributions at the trained positions (``losses.distill_sum``: forward or reverse KL,
or GKD's generalised JSD, with a temperature and an optional CE term on the labels). The teacher's
logits exist for one pass at a time and are never stored. Validation is the student's plain
cross-entropy, so a distilled run and an SFT run of the same student compare directly.

The teacher must use the student's tokenizer (checked: same vocabulary, same logits width); it
can be a run directory (its LoRA adapter is merged), a model folder or ``builtin:...``, and with
``method.distill.teacher_4bit`` loads in 4-bit nf4 through bitsandbytes.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from tunesmith.config.load import check_stage_settings
from tunesmith.config.schema import DistillConfig, RunConfig
from tunesmith.data.collate import count_trained_tokens, model_inputs
from tunesmith.errors import ConfigError
from tunesmith.train.batches import split_rows
from tunesmith.train.loop import StepStats, _real_tokens, _to_device, optimizer_step
from tunesmith.train.losses import distill_sum, trained_targets
from tunesmith.train.session import Session, TrainResult

WHAT = "method.distill.teacher"


def teacher_config(name: str) -> str | None:
    """The config file ``name`` stands for (a YAML path or a shipped recipe name), or ``None``
    when it names a model (a run directory, a model folder, ``builtin:...``, a hub id)."""
    from tunesmith.recipes import resolve_config_arg

    path = Path(resolve_config_arg(name))
    return str(path) if path.suffix in (".yaml", ".yml") and path.is_file() else None


def prepare_teacher(cfg: RunConfig, say: Any, show_progress: bool) -> str:
    """What to load as the teacher: ``method.distill.teacher`` itself, or, when it names a
    config, that config's run directory, trained first (a finished run of the same config is
    reused, so the teacher trains once for any number of students).

    The teacher's training takes the student's ``train.threads`` (the machine is the same).

    Raises:
        ConfigError: the teacher config is itself a distillation, or its run directory holds
            another run (the message names the teacher's output.dir).
    """
    from tunesmith import api
    from tunesmith.runs import is_run_dir, load_run

    name = str(cfg.method.distill.teacher)
    path = teacher_config(name)
    if path is None:
        return name
    tcfg = api.load_config(path)
    if tcfg.method.stage == "distill":
        raise ConfigError(f"{WHAT}: {name} is itself a distill config; give the teacher's own")
    tcfg.train.threads = tcfg.train.threads or cfg.train.threads
    run_dir = Path(tcfg.output.run_dir)

    def same(other: RunConfig) -> bool:
        skip = {"train": {"threads"}, "output": {"overwrite"}}
        return other.model_dump(exclude=skip) == tcfg.model_dump(exclude=skip)

    if is_run_dir(run_dir):
        record = load_run(run_dir)
        if record.finished and same(record.config):
            say(f"teacher: {name} already trained in {run_dir}")
            return str(run_dir)
    say(f"teacher: training {name} first, into {run_dir}")
    return str(api.train(tcfg, progress=show_progress).run_dir)


def load_teacher(cfg: RunConfig, student_tokenizer: Any) -> Any:
    """The frozen teacher in eval mode, after checking it shares the student's tokenizer."""
    from tunesmith.config.schema import QuantConfig
    from tunesmith.infer.loading import attach_adapters
    from tunesmith.model.loader import load_model
    from tunesmith.model.source import load_tokenizer_from, locate

    name = str(cfg.method.distill.teacher)
    where = locate(name)  # a model (prepare_teacher turned a teacher config into its run)
    check_same_tokenizer(load_tokenizer_from(where.tokenizer or where.base), student_tokenizer)
    quant = QuantConfig() if cfg.method.distill.teacher_4bit else None
    model = load_model(
        where.base,
        dtype=cfg.model.dtype,
        attn_implementation=cfg.model.attn_implementation,
        trust_remote_code=cfg.model.trust_remote_code,
        quant=quant,
        what=WHAT,
    )
    if where.adapter:
        model, _keys = attach_adapters(model, {"teacher": where.adapter})
        if quant is None:  # a 4-bit base keeps its adapter on top
            model = model.merge_and_unload()
    model.config.use_cache = False
    from tunesmith.model.attention import use_varlen_sdpa

    use_varlen_sdpa(model)  # the student's attention: per packed sample, fp32 on CPU
    return model.eval().requires_grad_(False)


def check_same_tokenizer(teacher: Any, student: Any) -> None:
    """Refuse a teacher whose tokens mean something else than the student's.

    Raises:
        ConfigError: the vocabularies differ (in size or in any token's id).
    """
    tv, sv = teacher.get_vocab(), student.get_vocab()
    if tv != sv:
        differ = sorted(set(tv.items()) ^ set(sv.items()))[:3]
        raise ConfigError(
            f"{WHAT}: its tokenizer differs from the student's ({len(tv)} vs {len(sv)} tokens; "
            f"e.g. {differ}); distil from a teacher with the same tokenizer"
        )


def check_same_width(teacher: Any, student: Any) -> None:
    """Refuse models whose output layers differ (the same tokenizer, padded differently)."""
    t = teacher.get_output_embeddings().weight.shape[0]
    s = student.get_output_embeddings().weight.shape[0]
    if t != s:
        raise ConfigError(
            f"{WHAT}: its output layer has {t} logits, the student's {s}; distil between "
            "models with the same (padded) vocabulary size"
        )


def logits_path(model: Any, cfg: RunConfig, device: torch.device) -> str:
    """``logits`` (lm_head on the trained positions only) where the model allows it, else
    ``full``; ``train.ce_impl: full`` asks for the latter."""
    from tunesmith.train.lm_loss import resolve_ce_impl

    if cfg.train.ce_impl == "full":
        return "full"
    try:
        return resolve_ce_impl("logits", model, device=device, sharded=False)
    except ValueError:
        return "full"


def trained_logits(model: Any, inputs: dict[str, Any], keep: torch.Tensor, path: str) -> Any:
    """``[n, vocab]`` logits at the ``keep`` positions."""
    if path == "logits":
        logits = model(**inputs, logits_to_keep=keep).logits
        return logits.reshape(-1, logits.shape[-1])
    return model(**inputs).logits[keep]


def distill_step(
    student: Any,
    teacher: Any,
    optimizer: Any,
    scheduler: Any,
    accelerator: Any,
    micro: list[dict[str, Any]],
    *,
    options: DistillConfig,
    attn_implementation: str,
    paths: tuple[str, str],
    max_grad_norm: float | None,
    pass_tokens: int | None,
) -> StepStats:
    """One optimiser step: per pass, the teacher's logits, then the student's loss and backward.

    Normalised as ``train_step``: the sum over the step's trained tokens on every process,
    divided by their number. ``paths``: the student's and the teacher's ``logits_path``.
    """
    device = accelerator.device
    local = sum(count_trained_tokens(b) for b in micro)
    total_tokens = int(accelerator.reduce(torch.tensor(local, device=device), reduction="sum"))
    scale = accelerator.num_processes / max(total_tokens, 1)
    sums = torch.zeros(3, device=device)  # objective, divergence, CE
    seq_tokens = 0
    passes = [part for batch in micro for part in split_rows(batch, pass_tokens)]
    for k, batch in enumerate(passes):
        batch = _to_device(batch, device)
        inputs = model_inputs(batch, attn_implementation)
        keep, target, token_weights = trained_targets(batch["labels"], batch.get("weights"))
        sync = k == len(passes) - 1
        ctx = contextlib.nullcontext() if sync else accelerator.no_sync(student)
        with ctx, accelerator.autocast():
            with torch.no_grad():
                t_logits = trained_logits(teacher, inputs, keep, paths[1])
            s_logits = trained_logits(student, inputs, keep, paths[0])
            objective, div, ce = distill_sum(
                s_logits,
                t_logits,
                target,
                token_weights,
                kind=options.kind,
                beta=options.beta,
                temperature=options.temperature,
                ce_weight=options.ce_weight,
            )
            del t_logits  # one pass of teacher logits at a time
            accelerator.backward(objective * scale)
        sums += torch.stack([objective.detach(), div.detach(), ce.detach()]).to(sums.dtype)
        seq_tokens += _real_tokens(batch)
    grad_norm = optimizer_step(student, optimizer, scheduler, accelerator, max_grad_norm)
    means = accelerator.reduce(sums, reduction="sum") / max(total_tokens, 1)
    return StepStats(
        loss=float(means[0]),
        tokens=total_tokens,
        seq_tokens=seq_tokens,
        grad_norm=grad_norm,
        metrics={"distill_div": round(float(means[1]), 6), "distill_ce": round(float(means[2]), 6)},
    )


# ---- the recipe -------------------------------------------------------------------------------
def run(cfg: RunConfig, *, console: Any = None, show_progress: bool = True) -> TrainResult:
    """Distil ``method.distill.teacher`` into ``model.name`` according to ``cfg``."""
    from tunesmith.model.adapters import apply_method, param_report
    from tunesmith.model.loader import tokenizer_for
    from tunesmith.train.batches import sample_batcher
    from tunesmith.train.loop import resolve_pass_tokens

    check_stage_settings(cfg)  # the schema's rules (load_config ran them)
    say = console.print if console is not None else print
    teacher_name = prepare_teacher(cfg, say, show_progress)  # before the student's run starts
    if teacher_name != cfg.method.distill.teacher:
        cfg = cfg.model_copy(deep=True)
        cfg.method.distill.teacher = teacher_name
    session = Session.start(cfg, console)
    tc, k, accelerator = cfg.train, cfg.method.distill, session.accelerator

    # 1. Tokenizer, template, data: chat data as for SFT (the same cache as an SFT run).
    tokenizer = tokenizer_for(cfg.model)
    renderer = session.renderer(tokenizer)
    data = session.data(renderer, "sft")

    # 2. Student and what trains; the teacher, frozen, beside it.
    model = session.load_model()
    teacher = load_teacher(cfg, tokenizer)
    check_same_width(teacher, model)
    teacher.to(accelerator.device)
    model = apply_method(model, cfg.method)
    session.say(
        f"method: distill ({k.kind}, T={k.temperature:g}, ce_weight={k.ce_weight:g}) with "
        f"{cfg.method.type}; {param_report(model)}; teacher: {k.teacher}"
        + (" (4-bit)" if k.teacher_4bit else "")
    )

    # 3. Batches, schedule, optimiser, resume: as SFT.
    batches_for = sample_batcher(cfg, tokenizer.pad_token_id, accelerator)

    opt = session.optimise(
        model,
        batches_for,
        data.train,
        data.val,
        extra_guard={"stage": "distill", "teacher": k.teacher},
    )

    # 4. The loop with the distillation step (validation: the student's CE), then save.
    device = accelerator.device
    paths = (logits_path(opt.model, cfg, device), logits_path(teacher, cfg, device))
    pass_tokens = resolve_pass_tokens(tc.pass_tokens, device)
    loop = session.train(
        opt,
        tokenizer=tokenizer,
        step_fn=lambda micro: distill_step(
            opt.model,
            teacher,
            opt.optimizer,
            opt.scheduler,
            accelerator,
            micro,
            options=k,
            attn_implementation=cfg.model.attn_implementation,
            paths=paths,
            max_grad_norm=tc.max_grad_norm,
            pass_tokens=pass_tokens,
        ),
        show_progress=show_progress,
    )
    return session.finish(loop, opt.model, tokenizer, renderer)
