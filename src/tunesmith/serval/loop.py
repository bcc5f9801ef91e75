"""The SERVAL loop with its bookkeeping: annotate -> select -> fit -> back-tune, per iteration.

Run directory (``output.dir``)::

    config.yaml              the resolved config (the loop resumes only with the same one)
    upper_bound.json         the vertical model trained on the true train labels
    warmup/run, warmup/llm   the general warm-up (serval.warmup_steps > 0)
    iter_K/annotations.json  the LLM's soft labels of this iteration (a cache)
    iter_K/backtune.jsonl    the conversations the LLM is back-tuned on
    iter_K/run, iter_K/llm   the SFT run and the merged LLM it gives (the next iteration's LLM)
    iter_K/result.json       written last: the iteration is finished
    serval_report.json/.md, serval.png, metrics.jsonl, eval/serval.json
    model -> iter_N/llm      the final LLM (so `tunesmith compare` reads the run as finished)

A rerun of the same config continues after the last finished iteration (its cached annotations
and back-tuned model reused); ``overwrite`` starts again.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tunesmith.config.schema import RunConfig
from tunesmith.errors import ConfigError
from tunesmith.serval import backtune, noisy, report
from tunesmith.serval.metrics import accuracy, agreement, roc_auc
from tunesmith.serval.records import Records, load_records
from tunesmith.serval.softlabel import annotate, centre, log_odds_mean
from tunesmith.serval.vertical import make_vertical

Say = Callable[[str], None]


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def prepare_dir(run_dir: Path, cfg: RunConfig, overwrite: bool) -> None:
    """Create the run directory, or check that it holds this very config (to resume).

    Raises:
        ConfigError: the folder holds another run (without ``overwrite``), or is no serval run.
    """
    from tunesmith.config.load import dump_config

    text = dump_config(
        cfg.model_copy(update={"output": cfg.output.model_copy(update={"overwrite": False})})
    )
    saved = run_dir / "config.yaml"
    if run_dir.exists() and any(run_dir.iterdir()):
        if not saved.is_file() or "\nserval:" not in saved.read_text(encoding="utf-8"):
            raise ConfigError(
                f"output.dir {run_dir}: not empty and no serval run; give another output.dir"
            )
        if overwrite:
            shutil.rmtree(run_dir)
        elif saved.read_text(encoding="utf-8") != text:
            raise ConfigError(
                f"output.dir {run_dir}: holds a serval run with another config; give another "
                "output.dir, or --overwrite to start again"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    saved.write_text(text, encoding="utf-8")


def finished_iterations(run_dir: Path, iterations: int) -> list[dict[str, Any]]:
    """The results of the iterations finished in order (1, 2, ... up to the first missing)."""
    rows = []
    for k in range(1, iterations + 1):
        done = run_dir / f"iter_{k}" / "result.json"
        if not done.is_file():
            break
        rows.append(_read_json(done))
    return rows


def inputs(records: Records, kind: str) -> Sequence[Any]:
    """What the vertical model reads of ``records``: feature rows or texts."""
    if kind == "table":
        assert records.features is not None  # load_records joined the table
        return records.features
    return records.texts


def annotations(
    path: Path, llm: str, splits: dict[str, Records], cfg: RunConfig, say: Say
) -> dict[str, Any]:
    """The LLM's soft labels of every split (cached in ``path`` for this ``llm``)."""
    if path.is_file():
        cached = _read_json(path)
        if cached.get("model") == llm:
            say(f"annotations: cached ({path})")
            return cached
    from tunesmith.evaluate.base import EvalContext
    from tunesmith.infer.engine import Engine

    sv = cfg.serval
    assert sv is not None
    engine = Engine.load(llm, threads=cfg.train.threads)
    try:
        ctx = EvalContext(engine, seed=cfg.train.seed, batch_size=16)
        out: dict[str, Any] = {"model": llm, "parse_failures": 0}
        for name, recs in splits.items():
            got = annotate(
                ctx,
                recs.texts,
                prompt=sv.prompt,
                label_words=sv.label_words,
                read=sv.read,
                parse_prompt=sv.parse_prompt,
            )
            out[name] = list(got.probs)
            out["parse_failures"] += got.parse_failures
    finally:
        engine.close()
    _write_json(path, out)
    return out


def upper_bound(run_dir: Path, splits: dict[str, Records], cfg: RunConfig) -> dict[str, float]:
    """Test accuracy/AUC of the vertical model trained on the true train labels (cached)."""
    path = run_dir / "upper_bound.json"
    if path.is_file():
        return _read_json(path)
    sv = cfg.serval
    assert sv is not None
    train, test = splits["train"], splits["test"]
    model = make_vertical(sv.vertical, cfg.train.seed)
    labels = [float(y) for y in train.labels]
    model.fit(inputs(train, sv.vertical.kind), labels, [1.0] * len(labels))
    q = model.predict_proba(inputs(test, sv.vertical.kind))
    out = {"acc": accuracy(q, test.labels), "auc": roc_auc(q, test.labels)}
    _write_json(path, out)
    return out


def fit_vertical(
    train: Records, probs: Sequence[float], cfg: RunConfig, val: Records | None, seed: int
) -> tuple[Any, dict[str, Any]]:
    """The vertical model fitted on the confident (and, with ``noise.gmm``, clean) rows."""
    sv = cfg.serval
    assert sv is not None
    kind, nz = sv.vertical.kind, sv.noise
    x = inputs(train, kind)
    kept = noisy.confident_rows(probs, nz.threshold, nz.min_kept)
    rng = random.Random(seed)
    if val is not None and len(val):  # a few true labels: early stopping only
        fit_rows, holdout = kept, (inputs(val, kind), [float(y) for y in val.labels])
    else:
        shuffled = kept[:]
        rng.shuffle(shuffled)
        n_hold = max(int(len(shuffled) * nz.holdout), 1)
        held, fit_rows = sorted(shuffled[:n_hold]), sorted(shuffled[n_hold:])
        # Early stopping on the held-out confident rows' hard labels: their soft labels sit near
        # 0.5 for a weak LLM, and fitting those would stop at a model that is never confident.
        holdout = ([x[i] for i in held], [float(probs[i] >= 0.5) for i in held])
    weights = noisy.weights_for(probs, nz.weights)

    def fit(rows: list[int]) -> tuple[Any, dict[str, Any]]:
        model = make_vertical(sv.vertical, seed)
        info = model.fit(
            [x[i] for i in rows], [probs[i] for i in rows], [weights[i] for i in rows], holdout
        )
        return model, info

    model, info = fit(fit_rows)
    clean = len(fit_rows)
    if nz.gmm:
        pred = model.predict_proba([x[i] for i in fit_rows])
        split = noisy.gmm_split(noisy.cross_entropy(pred, [probs[i] for i in fit_rows]), seed=seed)
        clean_rows = [fit_rows[i] for i in split.clean]
        both = len({probs[i] >= 0.5 for i in clean_rows}) == 2
        if both and len(clean_rows) >= nz.min_kept // 2 and len(clean_rows) < len(fit_rows):
            model, info = fit(clean_rows)
            clean = len(clean_rows)
    kept_acc = accuracy([probs[i] for i in kept], [train.labels[i] for i in kept])
    return model, {"kept": len(kept), "clean": clean, "kept_acc": kept_acc, **info}


def run(cfg: RunConfig, *, overwrite: bool = False, say: Say = print) -> list[dict[str, Any]]:
    """Run (or resume) the SERVAL loop of ``cfg``; returns one result dict per iteration.

    Raises:
        ConfigError: no ``serval`` section, a run directory holding another run.
        DataError: unreadable records.
    """
    sv = cfg.serval
    if sv is None:
        raise ConfigError("serval: the config has no serval section; add one (see serval-demo)")
    if cfg.train.threads:  # the vertical models (FT-Transformer, text) train in this process
        import torch

        torch.set_num_threads(cfg.train.threads)
    run_dir = Path(cfg.output.run_dir)
    splits = load_records(sv.records, sv.table if sv.vertical.kind == "table" else None)
    train, test = splits["train"].take(sv.max_train), splits["test"]
    val = splits["val"].take(sv.val_labels) if sv.val_labels else None
    used = {"train": train, "test": test}
    prepare_dir(run_dir, cfg, overwrite or cfg.output.overwrite)
    seed = cfg.train.seed
    base = cfg.model_dump(mode="json")
    upper = upper_bound(run_dir, splits, cfg)
    say(f"upper bound (vertical model on true labels): acc {upper['acc']:.3f}")

    llm = cfg.model.name
    if sv.warmup_steps:
        llm_dir = run_dir / "warmup" / "llm"
        if not (llm_dir / "config.json").is_file():
            tree = backtune.sft_tree(
                base,
                model=llm,
                task_file=None,
                task_rows=0,
                general_share=0,
                out_dir=run_dir / "warmup" / "run",
                max_steps=sv.warmup_steps,
                method_type="full" if sv.warmup_full else None,
                extra_sources=[d.model_dump(mode="json") for d in sv.warmup_data],
            )
            extra = " + serval.warmup_data" if sv.warmup_data else ""
            say(f"warm-up: {sv.warmup_steps} SFT steps on data.datasets{extra}")
            backtune.train_and_export(tree, llm_dir, say)
        llm = str(llm_dir)

    rows = finished_iterations(run_dir, sv.iterations)
    if rows:
        say(f"resuming after iteration {len(rows)}")
        llm = str(run_dir / f"iter_{len(rows)}" / "llm")
    for k in range(len(rows) + 1, sv.iterations + 1):
        it_dir = run_dir / f"iter_{k}"
        it_dir.mkdir(exist_ok=True)
        ann = annotations(it_dir / "annotations.json", llm, used, cfg, say)
        shift = log_odds_mean(ann["train"]) if sv.calibrate else 0.0
        p_train = centre(ann["train"], shift)
        p_test_cal = centre(ann["test"], shift)
        model, info = fit_vertical(train, p_train, cfg, val, seed + k)
        q_train = model.predict_proba(inputs(train, sv.vertical.kind))
        q_test = model.predict_proba(inputs(test, sv.vertical.kind))
        convs = backtune.conversations(
            train.texts,
            q_train,
            prompt=sv.prompt,
            label_words=sv.label_words,
            threshold=sv.backtune.threshold,
            max_rows=sv.backtune.max_rows,
            seed=seed + k,
        )
        row: dict[str, Any] = {
            "iteration": k,
            "llm": llm,
            "llm_acc": accuracy(ann["test"], test.labels),
            "llm_acc_cal": accuracy(p_test_cal, test.labels),
            "llm_auc": roc_auc(ann["test"], test.labels),
            "vertical_acc": accuracy(q_test, test.labels),
            "vertical_auc": roc_auc(q_test, test.labels),
            "agreement": agreement(p_train, q_train),
            "parse_failures": ann["parse_failures"],
            "backtune_rows": len(convs),
            "train": len(train),
            "test": len(test),
            **info,
        }
        say(
            f"iteration {k}: LLM acc {row['llm_acc']:.3f} (AUC {row['llm_auc']:.3f}), vertical "
            f"acc {row['vertical_acc']:.3f}, kept {row['kept']}, back-tune rows {len(convs)}"
        )
        llm_dir = it_dir / "llm"
        if convs:
            backtune.write_jsonl(it_dir / "backtune.jsonl", convs)
            tree = backtune.sft_tree(
                base,
                model=llm,
                task_file=it_dir / "backtune.jsonl",
                task_rows=len(convs),
                general_share=sv.backtune.general_share,
                out_dir=it_dir / "run",
                max_steps=sv.backtune.max_steps,
                lr=sv.backtune.lr,
            )
            backtune.train_and_export(tree, llm_dir, say)
            llm = str(llm_dir)
        else:
            say(f"iteration {k}: no prediction reached backtune.threshold; the LLM stays as is")
        _write_json(it_dir / "result.json", row)
        rows.append(row)
        report.write(run_dir, rows, upper)
    # The LLM the last back-tuning gave, measured like the others (train read for the centring).
    final = annotations(run_dir / "final_annotations.json", llm, used, cfg, say)
    if rows and "final_llm_acc" not in rows[-1]:
        shift = log_odds_mean(final["train"]) if sv.calibrate else 0.0
        rows[-1]["final_llm_acc"] = accuracy(final["test"], test.labels)
        rows[-1]["final_llm_acc_cal"] = accuracy(centre(final["test"], shift), test.labels)
        rows[-1]["final_llm_auc"] = roc_auc(final["test"], test.labels)
        _write_json(run_dir / f"iter_{len(rows)}" / "result.json", rows[-1])
    report.write(run_dir, rows, upper)
    link_model(run_dir, Path(llm))
    say(report.markdown(rows, upper))
    return rows


def link_model(run_dir: Path, llm: Path) -> None:
    """``run_dir/model``: the final LLM (a relative link), so that ``tunesmith compare`` and
    the inference engine (``Engine.load(run_dir)``) read the serval run like a training run."""
    link = run_dir / "model"
    if not llm.is_dir() or run_dir.resolve() not in llm.resolve().parents:
        return  # the LLM was never trained here (no warm-up, nothing back-tuned)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(llm.resolve().relative_to(run_dir.resolve()), target_is_directory=True)
