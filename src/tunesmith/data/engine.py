"""DataEngine: sources -> canonical examples -> identity substitution -> render -> mix.

Each unique row is rendered once (and cached on disk, see ``data/cache.py``); mixing then draws
indices, so resampling a small identity set 50 times costs nothing. Every row that does not make
it into the mix is counted by reason in the report — nothing is dropped without a number next to
it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tunesmith.config.schema import DataConfig, DatasetConfig
from tunesmith.data.examples import (
    PreparedData,
    load_source,
    new_report,
    resolve_source,
    split_and_mix,
)
from tunesmith.data.images import IMAGE_TOKEN, check_conversation
from tunesmith.data.render import Rendered, Renderer, SkipSample, build_renderer
from tunesmith.data.report import DataReport, SourceReport
from tunesmith.data.types import Conversation, KTOExample, PreferencePair, TextDoc
from tunesmith.errors import DataError

_CHUNK = 512  # conversations per batched tokenisation call

__all__ = [
    "DataReport",
    "PreparedData",
    "SourceReport",
    "build_renderer",
    "load_source",
    "new_report",
    "prepare",
    "resolve_source",
    "write_report",
]


def prepare(
    cfg: DataConfig, renderer: Renderer, *, stage: str = "sft", refuse: bool = True
) -> PreparedData:
    """Run the whole pipeline for a training stage.

    ``sft`` / ``pt`` here; the preference stages (``dpo``, ``orpo``, ``simpo``, ``kto``) go
    through ``data.pairs.prepare_pairs``, so every stage's data can be inspected the same way.
    ``renderer`` comes from ``render.build_renderer`` (it carries ``data.loss_weights``); sources
    are served from the on-disk cache when ``cfg.cache`` and their fingerprint match.

    Raises:
        DataError: with ``refuse`` (training), a source loses most of its rows and
            ``data.allow_drop`` is off (``report.refusal()``); ``data stats`` passes ``False`` and
            shows the reason instead.
    """
    if cfg.augment:  # fact-graph samples become sources like any other (data/augment/mix.py)
        from tunesmith.data.augment.mix import expand

        cfg = expand(cfg, stage)
    if stage in ("dpo", "orpo", "simpo", "kto"):
        from tunesmith.data.pairs import prepare_pairs  # imports torch

        return prepare_pairs(cfg, renderer, stage=stage, refuse=refuse)
    t0 = time.perf_counter()
    reports: list[SourceReport] = []
    rendered: list[list[Rendered]] = []
    for index, ds in enumerate(cfg.datasets):
        samples, report = _source_samples(ds, cfg, index, renderer, stage)
        rendered.append(samples)
        reports.append(report)
    mix, held = split_and_mix(cfg, rendered, reports)
    val = [r.as_dict() for r in held]
    train: list[dict[str, Any]] = []
    for g, sample in mix:
        train.append(sample.as_dict())
        reports[g].trained_tokens += sample.trained_tokens
    report = new_report(reports, cfg, refuse)
    report.set_lengths([len(s["input_ids"]) for s in train])
    if cfg.packing and train:
        from tunesmith.data.packing import pack_best_fit_decreasing, packing_efficiency

        lengths = [len(s["input_ids"]) for s in train]
        rows = pack_best_fit_decreasing(lengths, cfg.max_length)
        report.packing_efficiency = packing_efficiency(lengths, rows, cfg.max_length)
        report.packed_rows = len(rows)
    report.seconds = time.perf_counter() - t0
    return PreparedData(train, val, report)


def _source_samples(
    ds: DatasetConfig, cfg: DataConfig, index: int, renderer: Renderer, stage: str
) -> tuple[list[Rendered], SourceReport]:
    """One source's rendered samples, from the cache when its fingerprint matches."""
    from tunesmith.data import cache

    t0 = time.perf_counter()
    weights = ds.loss_weights if ds.loss_weights is not None else renderer.options.loss_weights
    key = _cache_key(ds, cfg, renderer, stage, weights) if cfg.cache else None
    hit = cache.load(key) if key else None
    if hit is not None:
        report = SourceReport(name=ds.display_name, rows_read=hit.rows_read)
        report.skipped.update(hit.skipped)
        report.truncated = hit.truncated
        report.cache = "hit"
        report.seconds = time.perf_counter() - t0
        report.time_saved = max(0.0, hit.seconds - report.seconds)
        return hit.samples, report
    examples, report, wheres = load_source(ds, cfg, index)
    rendered = _render_source(examples, wheres, renderer, report, stage, index, ds, cfg, weights)
    report.seconds = time.perf_counter() - t0
    if key:
        entry = cache.CachedSource(
            rendered, report.rows_read, dict(report.skipped), report.truncated, report.seconds
        )
        cache.save(key, entry)
        report.cache = "miss"
    return rendered, report


def _cache_key(
    ds: DatasetConfig,
    cfg: DataConfig,
    renderer: Renderer,
    stage: str,
    weights: dict[str, float] | None,
) -> str | None:
    from tunesmith.data import cache

    kwargs = resolve_source(ds)
    data_digest = cache.path_digest(kwargs["path"])
    if data_digest is None:
        return None  # a hub dataset: nothing local to fingerprint
    return cache.fingerprint(
        {
            "code": cache.code_digest(),
            "renderer": cache.renderer_digest(renderer),
            "data": data_digest,
            "info": cache.path_digest(ds.from_info) if ds.from_info else None,
            "read": {**kwargs, "path": str(kwargs["path"]), "max_samples": ds.max_samples},
            "on_error": cfg.on_error,
            "identity": cfg.identity.model_dump() if cfg.identity else None,
            "stage": stage,
            "loss_weights": weights,
        }
    )


def _render_source(
    examples: list[Any],
    wheres: list[str],
    renderer: Renderer,
    report: SourceReport,
    stage: str,
    index: int,
    ds: DatasetConfig,
    cfg: DataConfig,
    weights: dict[str, float] | None,
) -> list[Rendered]:
    convs: list[Conversation] = []
    conv_wheres: list[str] = []
    docs: list[TextDoc] = []
    for ex, where in zip(examples, wheres):
        if isinstance(ex, (PreferencePair, KTOExample)):
            kind = "preference pairs" if isinstance(ex, PreferencePair) else "KTO examples"
            stages = "dpo, orpo, simpo or kto" if isinstance(ex, PreferencePair) else "kto"
            raise DataError(
                f"{where} (data.datasets.{index}, {ds.display_name}): the source holds {kind}, "
                f"which method.stage {stage!r} cannot train; set method.stage to {stages}, "
                "or use chat/instruction data for this stage"
            )
        if isinstance(ex, TextDoc):
            if stage != "pt":
                report.skipped["plain text in an SFT mix (use method.stage: pt)"] += 1
            else:
                docs.append(ex)
            continue
        if renderer.options.image_token and (ex.images or _has_placeholder(ex)):
            try:  # a vision model: every image must be there and readable
                check_conversation(ex, where, allow_remote=renderer.options.allow_remote_images)
            except DataError:
                if cfg.on_error == "raise":
                    raise
                report.skipped["bad image"] += 1
                continue
        convs.append(ex)
        conv_wheres.append(where)
    out: list[Rendered] = []
    for r in _render_conversations(renderer, convs, conv_wheres, weights, cfg.num_proc):
        if isinstance(r, SkipSample):
            report.skipped[r.reason] += 1
            continue
        report.truncated += int(r.truncated)
        out.append(r)
    for chunks in renderer.render_texts(docs):
        out.extend(chunks)
    return out


# ---- parallel rendering (fork: workers inherit the renderer and the examples) ----------------
_JOB: tuple[Renderer, list[Conversation], list[str], dict[str, float] | None] | None = None


def _render_range(bounds: tuple[int, int]) -> tuple[dict[str, Any], list[str]]:
    """Worker: render a slice; send back packed arrays (pickling int lists costs more)."""
    from tunesmith.data.cache import pack

    assert _JOB is not None
    renderer, convs, wheres, weights = _JOB
    lo, hi = bounds
    out = renderer.render_many(convs[lo:hi], wheres[lo:hi], weights)
    kept = [r for r in out if isinstance(r, Rendered)]
    return pack(kept), [r.reason for r in out if isinstance(r, SkipSample)]


def auto_num_proc(rows: int, num_proc: int | None) -> int:
    """Worker processes for ``rows`` conversations.

    One unless ``data.num_proc`` asks for more: measured on 2 cores (alpaca_en_demo x20, tiny
    Qwen2 tokenizer), two forked workers were ~20% *slower* than one process, since each worker
    rebuilds the tokenizer's word cache and the results travel back between processes. Worth it
    on machines with many idle cores and large sources.
    """
    import multiprocessing as mp

    if not num_proc or num_proc <= 1 or rows < 2 * _CHUNK:
        return 1
    return num_proc if "fork" in mp.get_all_start_methods() else 1


def _render_conversations(
    renderer: Renderer,
    convs: list[Conversation],
    wheres: list[str],
    weights: dict[str, float] | None,
    num_proc: int | None,
) -> list[Rendered | SkipSample]:
    bounds = [(i, min(i + _CHUNK, len(convs))) for i in range(0, len(convs), _CHUNK)]
    procs = min(auto_num_proc(len(convs), num_proc), len(bounds))
    if procs <= 1:
        return [r for b in bounds for r in _render_range_with(renderer, convs, wheres, weights, b)]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from tunesmith.data.cache import unpack

    global _JOB
    _JOB = (renderer, convs, wheres, weights)
    results: list[Rendered | SkipSample] = []
    try:
        with ProcessPoolExecutor(procs, mp_context=mp.get_context("fork")) as pool:
            for packed, reasons in pool.map(_render_range, bounds):
                results += unpack(packed)
                results += [SkipSample(r) for r in reasons]
    finally:
        _JOB = None
    return results


def _render_range_with(
    renderer: Renderer,
    convs: list[Conversation],
    wheres: list[str],
    weights: dict[str, float] | None,
    bounds: tuple[int, int],
) -> list[Rendered | SkipSample]:
    lo, hi = bounds
    return renderer.render_many(convs[lo:hi], wheres[lo:hi], weights)


def _has_placeholder(conv: Conversation) -> bool:
    return any(IMAGE_TOKEN in m.content for m in conv.messages)


def write_report(report: DataReport, run_dir: Path) -> Path:
    """Write ``data_report.md`` into the run directory."""
    path = run_dir / "data_report.md"
    path.write_text(report.markdown(), encoding="utf-8")
    return path
