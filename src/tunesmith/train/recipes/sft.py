"""Supervised fine-tuning and continued pre-training, top to bottom.

Read ``run`` in order: start the session (run directory, seed, accelerator), load tokenizer and
template, build the data, load the model and choose what trains, then optimise, loop, and save in
the standard ``transformers`` / ``peft`` format. What every recipe shares is ``train/session.py``.
"""

from __future__ import annotations

from typing import Any

from tunesmith.config.schema import RunConfig
from tunesmith.train.accelerator import (  # noqa: F401  (re-exported: older imports)
    allow_precision,
    flat_hparams,
    make_accelerator,
)
from tunesmith.train.optim import make_optimizer, make_scheduler  # noqa: F401  (re-exported)
from tunesmith.train.run_dir import (  # noqa: F401  (checkpoint_step, prepare_run_dir: re-exported)
    checkpoint_step,
    open_run,
    prepare_run_dir,
)
from tunesmith.train.session import (  # noqa: F401  (re-exported)
    Session,
    TrainResult,
    enable_activation_checkpointing,
    gathered_state_dict,
    resume,
    save_result,
    seed_everything,
)


def build_renderer(cfg: RunConfig, tokenizer: Any) -> Any:
    """The run's renderer for ``tokenizer`` (``data/render.build_renderer`` with the run's
    template and stage), as training builds it."""
    from tunesmith.data.render import build_renderer as build

    return build(tokenizer, cfg.data, cfg.model.template, stage=cfg.method.stage)


def run(cfg: RunConfig, *, console: Any = None, show_progress: bool = True) -> TrainResult:
    """Train according to ``cfg``."""
    from tunesmith.model.adapters import apply_method, param_report
    from tunesmith.model.loader import tokenizer_for
    from tunesmith.train.batches import sample_batcher

    session = Session.start(cfg, console)
    tc, accelerator = cfg.train, session.accelerator

    # 1. Tokenizer, template, data (the main process prepares; the others read its cache).
    tokenizer = tokenizer_for(cfg.model)  # errors name model.tokenizer or model.name
    renderer = session.renderer(tokenizer)
    data = session.data(renderer, cfg.method.stage)

    # 2. Model and what trains; with train.compile its decoder layers compile (train/compile.py).
    model = session.load_model()
    model = apply_method(model, cfg.method)
    session.say(f"method: {cfg.method.type}; {param_report(model)}")
    if tc.compile:
        from tunesmith.train.compile import compile_layers

        session.say(f"compile: {compile_layers(model)} decoder layers (the first step compiles)")

    # 3. Batches, schedule, optimiser, resume.
    batches_for = sample_batcher(cfg, tokenizer.pad_token_id, accelerator, static_rows=tc.compile)

    opt = session.optimise(model, batches_for, data.train, data.val)

    # 4. The loop, then save in standard formats.
    loop = session.train(opt, tokenizer=tokenizer, show_progress=show_progress)
    return session.finish(loop, opt.model, tokenizer, renderer)
