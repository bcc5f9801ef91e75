"""Preference pairs and KTO examples -> token sequences, through the same renderer as SFT.

A pair renders as two conversations, *prompt + chosen* and *prompt + rejected*, with labels only on
the final reply: every turn of the prompt, earlier assistant turns included, is context. The prompt
is stored once: it is the longest common token prefix of the two renderings that ends before
either reply's first trained token. ``prompt + chosen`` is therefore the chosen rendering token for
token (likewise rejected), whatever the template does at the seam, and the labels are the
renderer's own, verified labels. A KTO example renders the same way with one reply.

Sample dicts (lists of ints; ``labels`` hold ``-100`` where nothing trains)::

    pair: {"prompt", "chosen", "chosen_labels", "rejected", "rejected_labels"}
    kto:  {"prompt", "completion", "completion_labels", "desirable",
           "kl_completion", "kl_completion_labels"}

``kl_completion`` is another example's reply (the next one in the prepared order) under this
example's prompt: KTO's mismatched pair for its KL estimate. It is fixed at preparation time, so
it is the same for any batch size, process count or epoch (and can be scored once up front).

Length: a pair longer than ``data.max_length`` is skipped under ``truncation: drop``. Under either
``truncate_*`` policy the prompt loses tokens on the left (its end, with the assistant header the
replies attach to, stays) down to what the longer reply leaves, but never below half of
``max_length``; the replies are then cut on the right to fit. Every skipped row is counted by
reason in the report.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from tunesmith.config.schema import DataConfig, DatasetConfig
from tunesmith.data.collate import collate_padded
from tunesmith.data.examples import PreparedData, load_source, new_report, split_and_mix
from tunesmith.data.render import Rendered, Renderer, SkipSample
from tunesmith.data.report import SourceReport
from tunesmith.data.shard import shard
from tunesmith.data.types import Conversation, KTOExample, Message, PreferencePair
from tunesmith.errors import DataError

IGNORE_INDEX = -100
PAIR_STAGES = ("dpo", "orpo", "simpo")
_UNLIMITED = 1 << 30

__all__ = [
    "PAIR_STAGES",
    "collate_kto",
    "collate_pairs",
    "kto_conversation",
    "make_pair_batches",
    "pair_conversations",
    "pair_renderer",
    "prepare_pairs",
    "render_kto",
    "render_pairs",
    "sequence",
]


# ---- canonical examples -> conversations ------------------------------------------------------
def _context(messages: list[Message]) -> list[Message]:
    """The prompt turns, none of them trained."""
    return [dataclasses.replace(m, loss=False) if m.role == "assistant" else m for m in messages]


def _reply(msg: Message) -> Message:
    return dataclasses.replace(msg, loss=True, weight=1.0)


def pair_conversations(pair: PreferencePair) -> tuple[Conversation, Conversation]:
    """The two conversations of a pair: the prompt (untrained) plus the chosen / rejected reply."""
    prompt = pair.prompt
    base = _context(list(prompt.messages))
    chosen = dataclasses.replace(prompt, messages=[*base, _reply(pair.chosen)])
    rejected = dataclasses.replace(prompt, messages=[*base, _reply(pair.rejected)])
    return chosen, rejected


def kto_conversation(example: KTOExample) -> Conversation:
    """The conversation of a KTO example, trained on its last (assistant) turn only."""
    conv = example.conversation
    *history, last = conv.messages
    return dataclasses.replace(conv, messages=[*_context(history), _reply(last)])


def pair_renderer(renderer: Renderer) -> Renderer:
    """A copy of ``renderer`` that labels replies only and leaves the length to this module."""
    options = dataclasses.replace(
        renderer.options,
        max_length=_UNLIMITED,
        truncation="drop",
        train_on_prompt=False,
        mask_history=False,
        loss_weights=None,
    )
    return dataclasses.replace(renderer, options=options)


# ---- rendering and length policy --------------------------------------------------------------
def _first_label(labels: list[int]) -> int:
    return next((i for i, t in enumerate(labels) if t != IGNORE_INDEX), len(labels))


def _trained(labels: list[int]) -> int:
    return sum(t != IGNORE_INDEX for t in labels)


def _split(renders: list[Rendered]) -> tuple[list[int], list[tuple[list[int], list[int]]]]:
    """The shared prompt (untrained common prefix) and each rendering's continuation."""
    first = min(_first_label(r.labels) for r in renders)
    n = 0
    ref = renders[0].input_ids
    while n < first and all(n < len(r.input_ids) and r.input_ids[n] == ref[n] for r in renders):
        n += 1
    return list(ref[:n]), [(r.input_ids[n:], r.labels[n:]) for r in renders]


def _fit(
    prompt: list[int],
    replies: list[tuple[list[int], list[int]]],
    max_length: int,
    truncation: str,
) -> tuple[list[int], list[tuple[list[int], list[int]]], bool]:
    """Apply the length policy (module docstring); returns the parts and whether they were cut."""
    longest = max(len(ids) for ids, _ in replies)
    if len(prompt) + longest <= max_length:
        return prompt, replies, False
    if truncation == "drop":
        raise SkipSample("longer than max_length")
    keep = min(len(prompt), max(max_length - longest, max_length // 2))
    room = max_length - keep
    prompt = prompt[len(prompt) - keep :]
    replies = [(ids[:room], labels[:room]) for ids, labels in replies]
    if any(_trained(labels) == 0 for _, labels in replies):
        raise SkipSample("no trained tokens left after truncation")
    return prompt, replies, True


def render_pairs(
    renderer: Renderer,
    pairs: list[PreferencePair],
    wheres: list[str],
    *,
    max_length: int,
    truncation: str = "drop",
) -> list[tuple[dict[str, Any], bool] | SkipSample]:
    """Render pairs; each result is ``(sample, truncated)`` or the ``SkipSample`` saying why not.

    ``renderer`` should come from ``pair_renderer``. Template failures and label self-check
    failures raise ``DataError`` as in SFT.
    """
    convs = [c for p in pairs for c in pair_conversations(p)]
    rendered = renderer.render_many(convs, [w for w in wheres for _ in (0, 1)])
    out: list[tuple[dict[str, Any], bool] | SkipSample] = []
    for i in range(len(pairs)):
        chosen, rejected = rendered[2 * i], rendered[2 * i + 1]
        if isinstance(chosen, SkipSample):
            out.append(chosen)
            continue
        if isinstance(rejected, SkipSample):
            out.append(rejected)
            continue
        if chosen.input_ids == rejected.input_ids:
            out.append(SkipSample("chosen and rejected are identical"))
            continue
        try:
            prompt, replies, cut = _fit(*_split([chosen, rejected]), max_length, truncation)
        except SkipSample as skip:
            out.append(skip)
            continue
        (c_ids, c_labels), (r_ids, r_labels) = replies
        if c_ids == r_ids:
            out.append(SkipSample("chosen and rejected identical after truncation"))
            continue
        sample = {
            "prompt": prompt,
            "chosen": c_ids,
            "chosen_labels": c_labels,
            "rejected": r_ids,
            "rejected_labels": r_labels,
        }
        out.append((sample, cut))
    return out


def render_kto(
    renderer: Renderer,
    examples: list[KTOExample],
    wheres: list[str],
    *,
    max_length: int,
    truncation: str = "drop",
) -> list[tuple[dict[str, Any], bool] | SkipSample]:
    """Render KTO examples (without their KL partner, see ``prepare_pairs``)."""
    rendered = renderer.render_many([kto_conversation(e) for e in examples], wheres)
    out: list[tuple[dict[str, Any], bool] | SkipSample] = []
    for ex, r in zip(examples, rendered):
        if isinstance(r, SkipSample):
            out.append(r)
            continue
        try:
            prompt, [(ids, labels)], cut = _fit(*_split([r]), max_length, truncation)
        except SkipSample as skip:
            out.append(skip)
            continue
        sample = {
            "prompt": prompt,
            "completion": ids,
            "completion_labels": labels,
            "desirable": ex.desirable,
        }
        out.append((sample, cut))
    return out


def sequence(sample: dict[str, Any], side: str) -> dict[str, Any]:
    """The full sequence ``prompt + side`` (``chosen``, ``rejected``, ``completion`` or
    ``kl_completion``) as a collatable sample."""
    prompt = sample["prompt"]
    ids = prompt + sample[side]
    labels = [IGNORE_INDEX] * len(prompt) + sample[f"{side}_labels"]
    return {"input_ids": ids, "labels": labels, "weights": None}


def _length(sample: dict[str, Any]) -> int:
    sides = ("chosen", "rejected") if "chosen" in sample else ("completion",)
    return len(sample["prompt"]) + max(len(sample[s]) for s in sides)


def _trained_tokens(sample: dict[str, Any]) -> int:
    sides = ("chosen", "rejected") if "chosen" in sample else ("completion",)
    return sum(_trained(sample[f"{s}_labels"]) for s in sides)


# ---- the pipeline -----------------------------------------------------------------------------
def prepare_pairs(
    cfg: DataConfig, renderer: Renderer, *, stage: str, refuse: bool = True
) -> PreparedData:
    """Sources -> rendered pairs (or KTO examples) -> validation split -> mix, with a report.

    ``renderer`` is the run's renderer; replies-only labelling is applied here. For ``kto``,
    preference pairs are split into a desirable and an undesirable example. ``refuse``: as in
    ``engine.prepare`` (a source that loses most of its rows is an error).
    """
    t0 = time.perf_counter()
    if stage not in (*PAIR_STAGES, "kto"):
        raise ValueError(f"prepare_pairs serves dpo/orpo/simpo/kto, not {stage!r}")
    pr = pair_renderer(renderer)
    reports: list[SourceReport] = []
    rendered: list[list[dict[str, Any]]] = []
    for index, ds in enumerate(cfg.datasets):
        examples, report, wheres = load_source(ds, cfg, index)
        rendered.append(_render_source(examples, wheres, pr, report, stage, index, ds, cfg))
        reports.append(report)
    mix, val = split_and_mix(
        cfg,
        rendered,
        reports,
        what=f"{stage} samples",
        hint="check max_length, truncation and the data",
    )
    train: list[dict[str, Any]] = []
    for g, sample in mix:
        train.append(dict(sample))  # a copy: resampled rows get their own KL partner
        reports[g].trained_tokens += _trained_tokens(sample)
    if stage == "kto":
        _attach_kl(train, cfg.max_length)
        _attach_kl(val, cfg.max_length)
    report = new_report(reports, cfg, refuse)
    report.set_lengths([_length(s) for s in train])
    report.seconds = time.perf_counter() - t0
    return PreparedData(train, val, report)


def _render_source(
    examples: list[Any],
    wheres: list[str],
    renderer: Renderer,
    report: SourceReport,
    stage: str,
    index: int,
    ds: DatasetConfig,
    cfg: DataConfig,
) -> list[dict[str, Any]]:
    pairs: list[PreferencePair] = []
    ktos: list[KTOExample] = []
    pair_wheres: list[str] = []
    kto_wheres: list[str] = []
    for ex, where in zip(examples, wheres):
        if isinstance(ex, PreferencePair) and stage in PAIR_STAGES:
            pairs.append(ex)
            pair_wheres.append(where)
        elif isinstance(ex, PreferencePair):  # KTO from pairs: one desirable, one undesirable
            chosen, rejected = pair_conversations(ex)
            ktos += [KTOExample(chosen, True, ex.source), KTOExample(rejected, False, ex.source)]
            kto_wheres += [where, where]
        elif isinstance(ex, KTOExample) and stage == "kto":
            ktos.append(ex)
            kto_wheres.append(where)
        else:
            need = "preference pairs (chosen/rejected)"
            if stage == "kto":
                need = "KTO examples (a reply with a true/false label) or preference pairs"
            raise DataError(
                f"{where} (data.datasets.{index}, {ds.display_name}): a "
                f"{_kind(ex)} cannot train stage {stage!r}, which needs {need}; "
                "use a matching dataset or stage"
            )
    if pairs:
        results = render_pairs(
            renderer, pairs, pair_wheres, max_length=cfg.max_length, truncation=cfg.truncation
        )
    else:
        results = render_kto(
            renderer, ktos, kto_wheres, max_length=cfg.max_length, truncation=cfg.truncation
        )
    out: list[dict[str, Any]] = []
    for r in results:
        if isinstance(r, SkipSample):
            report.skipped[r.reason] += 1
            continue
        sample, cut = r
        report.truncated += int(cut)
        out.append(sample)
    return out


def _kind(ex: Any) -> str:
    if isinstance(ex, KTOExample):
        return "KTO example (one labelled reply)"
    if isinstance(ex, PreferencePair):
        return "preference pair"
    if isinstance(ex, Conversation):
        return "chat conversation (SFT data)"
    return "plain-text document"


def _attach_kl(samples: list[dict[str, Any]], max_length: int) -> None:
    """Give each KTO example the next example's reply as its mismatched KL completion."""
    n = len(samples)
    for i, s in enumerate(samples):
        partner = samples[(i + 1) % n]
        room = max(max_length - len(s["prompt"]), 0)
        s["kl_completion"] = partner["completion"][:room]
        s["kl_completion_labels"] = partner["completion_labels"][:room]


# ---- batches ----------------------------------------------------------------------------------
def _refs(samples: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    if not all(k in s for s in samples for k in keys):
        return {}
    return {k: torch.tensor([float(s[k]) for s in samples], dtype=torch.float64) for k in keys}


def collate_pairs(
    samples: list[dict[str, Any]], pad_token_id: int, *, pad_to_multiple_of: int | None = None
) -> dict[str, Any]:
    """One padded batch: rows ``[chosen_1..chosen_B, rejected_1..rejected_B]`` (one forward pass).

    Also ``example_weight`` ``[B]`` (0 marks a filler that adds no loss) and, when every sample
    carries precomputed reference log-probs, ``ref_chosen`` / ``ref_rejected`` ``[B]``. With
    ``pad_to_multiple_of`` the length is rounded up to it (few shapes; the pads add nothing).
    """
    rows = [sequence(s, "chosen") for s in samples] + [sequence(s, "rejected") for s in samples]
    batch = collate_padded(rows, pad_token_id, pad_to_multiple_of=pad_to_multiple_of)
    batch["example_weight"] = torch.tensor([float(s.get("example_weight", 1.0)) for s in samples])
    batch.update(_refs(samples, ("ref_chosen", "ref_rejected")))
    return batch


def collate_kto(
    samples: list[dict[str, Any]], pad_token_id: int, *, pad_to_multiple_of: int | None = None
) -> dict[str, Any]:
    """One padded batch of KTO examples plus ``kl_*`` rows (each prompt with its KL completion).

    Also ``desirable`` (bool ``[B]``), ``example_weight`` and, when precomputed, ``ref`` /
    ``ref_kl`` ``[B]``. ``pad_to_multiple_of`` as for ``collate_pairs`` (both row sets).
    """
    pad = {"pad_to_multiple_of": pad_to_multiple_of}
    batch = collate_padded([sequence(s, "completion") for s in samples], pad_token_id, **pad)
    kl = collate_padded([sequence(s, "kl_completion") for s in samples], pad_token_id, **pad)
    batch.update({f"kl_{k}": v for k, v in kl.items()})
    batch["desirable"] = torch.tensor([bool(s["desirable"]) for s in samples])
    batch["example_weight"] = torch.tensor([float(s.get("example_weight", 1.0)) for s in samples])
    batch.update(_refs(samples, ("ref", "ref_kl")))
    return batch


def make_pair_batches(
    samples: list[dict[str, Any]],
    *,
    batch_size: int,
    pad_token_id: int,
    seed: int,
    num_processes: int = 1,
    rank: int = 0,
    pad_to_multiple_of: int | None = None,
) -> list[dict[str, Any]]:
    """One epoch of this process's micro-batches of pairs (or KTO examples), seeded.

    Sharded like ``train.batches.make_batches``: samples are shuffled, grouped
    ``batch_size * num_processes`` per global micro-batch, and process ``rank`` takes every
    ``num_processes``-th of each group. A process left without samples gets a filler with
    ``example_weight`` 0 (it runs the forward pass collectives need, and adds no loss).
    ``pad_to_multiple_of`` rounds each batch's length up (see ``collate_pairs``).
    """
    collate = collate_kto if samples and "completion" in samples[0] else collate_pairs
    units = [[i] for i in range(len(samples))]
    batches = []
    for b, mine in enumerate(
        shard(units, seed=seed, batch_size=batch_size, num_processes=num_processes, rank=rank)
    ):
        first = units[b * batch_size * num_processes][0]  # the global batch's first sample
        picked = (
            [samples[u[0]] for u in mine] if mine else [{**samples[first], "example_weight": 0.0}]
        )
        batches.append(collate(picked, pad_token_id, pad_to_multiple_of=pad_to_multiple_of))
    return batches
