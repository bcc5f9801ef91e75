"""The preference step: policy and reference log-probs, the stage's loss, metrics, reference cache.

``recipes/preference.py`` wires these into the shared ``Loop``. Every loss comes from
``train/pref_losses.py``; this module decides which rows are scored by what:

* reference log-probs come from the policy with its LoRA adapters disabled (``adapter``), a
  frozen copy (``copy``), or the batch itself when precomputed (``precompute_reference``);
  reference passes run in eval mode (no dropout), so all three agree;
* chosen and rejected rows go through the model in one padded forward pass;
* the step loss is ``sum of per-example losses / examples in the step`` over every micro-batch
  and process (ORPO adds ``chosen NLL / chosen tokens in the step``), so batch 8 x 1,
  batch 2 x accum 4 and two processes with batch 4 give the same gradients;
* KTO's reference point ``z0`` (the KL estimate from mismatched pairs) is measured over the whole
  step, without gradient, before the step's backward passes.

Metrics use TRL's names: ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
``rewards/accuracies``, ``logps/chosen``, ``logps/rejected`` (ORPO also ``nll_loss``,
``log_odds_ratio``, ``log_odds_chosen``; KTO ``kl``). KTO has no pairs: its margin is the mean
desirable reward minus the mean undesirable one, and its accuracy is the share of desirable
examples with a positive reward and undesirable ones with a negative reward.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunesmith.config.schema import RunConfig
from tunesmith.train.loop import StepStats, optimizer_step


# ---- scoring ------------------------------------------------------------------------------
def _logps(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, accelerator: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs of the labelled tokens of each row, and their counts."""
    from tunesmith.train.losses import sequence_logps

    with accelerator.autocast():
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    return sequence_logps(logits, labels)


@dataclass
class Scorer:
    """Policy and reference log-probs and the stage's loss for one batch."""

    cfg: RunConfig
    accelerator: Any
    model: Any  # the prepared (possibly wrapped) policy
    ref_mode: str
    frozen: Any = None  # the reference copy for ref_mode "copy"

    def reference(self, batch: dict[str, Any], prefix: str = "") -> torch.Tensor:
        """Reference log-probs of the batch's rows (``prefix="kl_"``: its KL rows)."""
        ids, mask = batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"]
        labels = batch[f"{prefix}labels"]
        acc = self.accelerator
        if self.ref_mode == "copy":
            with torch.no_grad():
                return _logps(self.frozen, ids, mask, labels, acc)[0]
        policy = acc.unwrap_model(self.model)
        was_training = policy.training
        policy.eval()
        try:
            with torch.no_grad(), policy.disable_adapter():
                return _logps(policy, ids, mask, labels, acc)[0]
        finally:
            policy.train(was_training)

    def _ref(self, batch: dict[str, Any], keys: tuple[str, ...], prefix: str = "") -> torch.Tensor:
        if self.ref_mode == "precomputed":
            if not all(k in batch for k in keys):
                raise RuntimeError(f"batch lacks the precomputed reference log-probs {keys}")
            return torch.cat([batch[k] for k in keys]).to(self.accelerator.device)
        return self.reference(batch, prefix)

    def kl_point(self, micro: list[dict[str, Any]]) -> torch.Tensor:
        """KTO's reference point ``z0``: mean policy-reference log-ratio of the mismatched pairs
        over the whole step and every process, clamped at 0."""
        dev = self.accelerator.device
        total = torch.zeros(2, dtype=torch.float64, device=dev)
        for batch in micro:
            batch = _to_device(batch, dev)
            with torch.no_grad():
                pol = _logps(
                    self.model,
                    batch["kl_input_ids"],
                    batch["kl_attention_mask"],
                    batch["kl_labels"],
                    self.accelerator,
                )[0]
            ref = self._ref(batch, ("ref_kl",), "kl_")
            w = batch["example_weight"].to(pol.dtype)
            total += torch.stack([((pol - ref) * w).sum().double(), w.sum().double()])
        total = self.accelerator.reduce(total, reduction="sum")
        return (total[0] / total[1].clamp(min=1)).clamp(min=0).float()

    def score(self, batch: dict[str, Any], z0: torch.Tensor | None = None) -> dict[str, Any]:
        """Per-example losses ``losses`` (with grad), ``weights``, ORPO's ``nll_sum``, and the
        metric sums ``sums`` (name -> (sum, count)) for logging."""
        from tunesmith.train import pref_losses as pl

        stage, p = self.cfg.method.stage, self.cfg.method.pref
        w = batch["example_weight"]
        logps, n = _logps(
            self.model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["labels"],
            self.accelerator,
        )
        w = w.to(logps.dtype)
        avg = logps / n.clamp(min=1).to(logps.dtype)
        out: dict[str, Any] = {"nll_sum": None, "sums": {}}
        if stage == "kto":
            d = batch["desirable"]
            ref = self._ref(batch, ("ref",))
            assert z0 is not None
            o = pl.kto_loss(
                policy_chosen=logps[d],
                policy_rejected=logps[~d],
                policy_kl=z0.view(1),  # z0 is already the step's KL estimate
                ref_chosen=ref[d],
                ref_rejected=ref[~d],
                ref_kl=torch.zeros_like(z0.view(1)),
                beta=p.beta,
                desirable_weight=p.desirable_weight,
                undesirable_weight=p.undesirable_weight,
            )
            ftx = torch.cat([-avg[d], torch.zeros_like(avg[~d])])
            out["losses"] = pl.add_sft_term(o.losses, ftx, p.pref_ftx)
            out["weights"] = torch.cat([w[d], w[~d]])
            wc, wr = w[d], w[~d]
            right = torch.cat([(o.chosen_rewards > 0), (o.rejected_rewards < 0)]).to(w.dtype)
            out["sums"] = {
                "rewards/chosen": ((o.chosen_rewards * wc).sum(), wc.sum()),
                "rewards/rejected": ((o.rejected_rewards * wr).sum(), wr.sum()),
                "rewards/accuracies": ((right * out["weights"]).sum(), w.sum()),
                "logps/chosen": ((logps[d].detach() * wc).sum(), wc.sum()),
                "logps/rejected": ((logps[~d].detach() * wr).sum(), wr.sum()),
            }
            return out
        b = w.shape[0]
        pc, pr, nc, nr, ac, ar = logps[:b], logps[b:], n[:b], n[b:], avg[:b], avg[b:]
        extra: dict[str, Any] = {}
        if stage == "dpo":
            ref = self._ref(batch, ("ref_chosen", "ref_rejected"))
            o = pl.dpo_loss(
                pc,
                pr,
                ref[:b],
                ref[b:],
                beta=p.beta,
                label_smoothing=p.label_smoothing,
                loss_type=p.loss_type,
                chosen_n_tokens=nc,
                rejected_n_tokens=nr,
            )
            losses = pl.add_sft_term(o.losses, -ac, p.pref_ftx)
        elif stage == "simpo":
            o = pl.simpo_loss(ac, ar, beta=p.beta, gamma=p.gamma, label_smoothing=p.label_smoothing)
            losses = pl.add_sft_term(o.losses, -ac, p.pref_ftx)
        else:  # orpo: odds-ratio term per pair + the chosen replies' NLL per token
            o = pl.orpo_loss(ac, ar, beta=p.beta)
            losses = o.losses
            out["nll_sum"] = -(pc * w).sum()
            lor = o.log_odds_ratio.detach()
            extra = {
                "nll_loss": (-(pc.detach() * w).sum(), (nc * w).sum()),
                "log_odds_ratio": ((torch.nn.functional.logsigmoid(lor) * w).sum(), w.sum()),
                "log_odds_chosen": ((lor * w).sum(), w.sum()),
            }
        cr, rr = o.chosen_rewards, o.rejected_rewards
        out["losses"], out["weights"] = losses, w
        out["sums"] = {
            "rewards/chosen": ((cr * w).sum(), w.sum()),
            "rewards/rejected": ((rr * w).sum(), w.sum()),
            "rewards/margins": (((cr - rr) * w).sum(), w.sum()),
            "rewards/accuracies": (((cr > rr).to(w.dtype) * w).sum(), w.sum()),
            "logps/chosen": ((pc.detach() * w).sum(), w.sum()),
            "logps/rejected": ((pr.detach() * w).sum(), w.sum()),
            **extra,
        }
        return out


def _to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _chosen_tokens(batch: dict[str, Any]) -> torch.Tensor:
    b = batch["example_weight"].shape[0]
    per_row = (batch["labels"][:b, 1:] != -100).sum(-1).to(torch.float64)
    return (per_row * batch["example_weight"].to(torch.float64)).sum()


def _finish_metrics(sums: dict[str, list[torch.Tensor]], accelerator: Any) -> dict[str, float]:
    """Reduce (sum, count) pairs over processes into means; KTO's margin from its two means."""
    if not sums:
        return {}
    names = sorted(sums)
    flat = torch.stack([torch.stack([s.double() for s in sums[k]]) for k in names])
    flat = accelerator.reduce(flat.to(accelerator.device), reduction="sum").cpu()
    out = {k: float(v[0] / v[1]) for k, v in zip(names, flat) if v[1] > 0}
    if "rewards/margins" not in out and {"rewards/chosen", "rewards/rejected"} <= out.keys():
        out["rewards/margins"] = out["rewards/chosen"] - out["rewards/rejected"]
    return out


def _add(sums: dict[str, list[torch.Tensor]], new: dict[str, tuple[Any, Any]]) -> None:
    for k, (s, c) in new.items():
        pair = [torch.as_tensor(s).detach().double().cpu(), torch.as_tensor(c).double().cpu()]
        sums[k] = [a + b for a, b in zip(sums[k], pair)] if k in sums else pair


def preference_step(
    scorer: Scorer,
    optimizer: Any,
    scheduler: Any,
    micro: list[dict[str, Any]],
    max_grad_norm: float | None,
) -> StepStats:
    """One optimiser step over the step's micro-batches (normalised as in the module docstring)."""
    acc, model = scorer.accelerator, scorer.model
    dev = acc.device
    micro = [_to_device(b, dev) for b in micro]
    counts = torch.stack(
        [
            sum(b["example_weight"].double().sum() for b in micro),
            sum(_chosen_tokens(b) for b in micro),
            sum((b["labels"][:, 1:] != -100).sum().double() for b in micro),
        ]
    )
    n_ex, n_tok, trained = acc.reduce(counts, reduction="sum").tolist()
    z0 = scorer.kl_point(micro) if scorer.cfg.method.stage == "kto" else None
    # DDP averages gradients over processes: scaling by the process count gives the global mean.
    ex_scale = acc.num_processes / max(n_ex, 1.0)
    tok_scale = acc.num_processes / max(n_tok, 1.0)
    loss_parts = torch.zeros(2, dtype=torch.float64, device=dev)
    sums: dict[str, list[torch.Tensor]] = {}
    seq_tokens = 0
    for k, batch in enumerate(micro):
        ctx = contextlib.nullcontext() if k == len(micro) - 1 else acc.no_sync(model)
        with ctx:
            s = scorer.score(batch, z0)
            pair_sum = (s["losses"] * s["weights"]).sum()
            part = pair_sum * ex_scale
            if s["nll_sum"] is not None:
                part = part + s["nll_sum"] * tok_scale
                loss_parts[1] += s["nll_sum"].detach().double()
            acc.backward(part)
        loss_parts[0] += pair_sum.detach().double()
        _add(sums, s["sums"])
        seq_tokens += int(batch["attention_mask"].sum())
    grad_norm = optimizer_step(model, optimizer, scheduler, acc, max_grad_norm)
    total = acc.reduce(loss_parts, reduction="sum")
    loss = float(total[0]) / max(n_ex, 1.0) + float(total[1]) / max(n_tok, 1.0)
    metrics = _finish_metrics(sums, acc)
    if z0 is not None:
        metrics["kl"] = float(z0)
    return StepStats(loss, int(trained), seq_tokens, grad_norm, metrics)


@torch.no_grad()
def evaluate_preference(scorer: Scorer, batches: list[dict[str, Any]]) -> dict[str, float]:
    """Validation loss and reward metrics over ``batches`` (``val_`` names)."""
    model = scorer.model
    model.eval()
    dev = scorer.accelerator.device
    sums: dict[str, list[torch.Tensor]] = {}
    for batch in batches:
        batch = _to_device(batch, dev)
        z0 = scorer.kl_point([batch]) if scorer.cfg.method.stage == "kto" else None
        s = scorer.score(batch, z0)
        loss = (s["losses"] * s["weights"]).sum()
        n = s["weights"].sum()
        _add(sums, {"loss": (loss, n), **s["sums"]})
        if s["nll_sum"] is not None:
            _add(sums, {"nll": (s["nll_sum"], _chosen_tokens(batch))})
    model.train()
    out = _finish_metrics(sums, scorer.accelerator)
    out["loss"] = out.get("loss", 0.0) + out.pop("nll", 0.0)
    return {f"val_{k}": v for k, v in out.items()}


# ---- reference log-probs, precomputed ---------------------------------------------------------
REF_KEYS = {"pairs": ("ref_chosen", "ref_rejected"), "kto": ("ref", "ref_kl")}


@torch.no_grad()
def precompute_reference(
    model: Any,
    accelerator: Any,
    samples: list[dict[str, Any]],
    *,
    pad_token_id: int,
    batch_size: int,
    cache_key: str | None = None,
) -> str:
    """Store reference log-probs in each sample (``ref_chosen``/``ref_rejected``, or ``ref``/
    ``ref_kl`` for KTO), scored by ``model`` as it is now (call it before training), or read
    from the on-disk cache entry of ``cache_key``. Returns ``"hit"``, ``"miss"`` or ``"off"``.
    """
    import numpy as np

    from tunesmith.data.pairs import collate_kto, collate_pairs
    from tunesmith.train.batches import static_pad_multiple

    multiple = static_pad_multiple(accelerator)  # as pair_batcher pads
    kto = bool(samples) and "completion" in samples[0]
    keys = REF_KEYS["kto" if kto else "pairs"]
    path = _ref_cache_dir() / f"{cache_key}.npz" if cache_key else None
    values: dict[str, list[float]] = {}
    if path is not None and path.is_file():
        with np.load(path) as z:
            if all(k in z and len(z[k]) == len(samples) for k in keys):
                values = {k: z[k].tolist() for k in keys}
    status = "hit" if values else ("miss" if path is not None else "off")
    if not values:
        values = {k: [] for k in keys}
        policy = accelerator.unwrap_model(model)
        was_training = policy.training
        policy.eval()
        for i in range(0, len(samples), batch_size):
            chunk = samples[i : i + batch_size]
            collate = collate_kto if kto else collate_pairs
            batch = collate(chunk, pad_token_id, pad_to_multiple_of=multiple)
            batch = _to_device(batch, accelerator.device)
            for prefix, key in (("", keys[0]), ("kl_" if kto else "", keys[1])):
                ids, mask = batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"]
                lp = _logps(policy, ids, mask, batch[f"{prefix}labels"], accelerator)[0].cpu()
                values[key] += (
                    lp if kto else lp[: len(chunk)] if key == keys[0] else lp[len(chunk) :]
                ).tolist()
        policy.train(was_training)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.tmp.npz")
            np.savez(tmp, **{k: np.asarray(v, dtype=np.float64) for k, v in values.items()})
            tmp.replace(path)
    for k in keys:
        for sample, v in zip(samples, values[k]):
            sample[k] = v
    return status


def _ref_cache_dir() -> Path:
    from tunesmith.model.tiny import cache_root

    return cache_root() / "ref"


def reference_cache_key(cfg: RunConfig, samples: list[dict[str, Any]]) -> str | None:
    """Fingerprint of the samples' tokens, the model's files and the method (None: hub model)."""
    import hashlib

    from tunesmith.data.cache import fingerprint
    from tunesmith.model.loader import resolve_model_path

    model_dir = Path(resolve_model_path(cfg.model.name))
    if not model_dir.is_dir():
        return None
    files = sorted(
        (f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in model_dir.iterdir() if f.is_file()
    )
    h = hashlib.sha256()
    for s in samples:
        h.update(json.dumps([s[k] for k in sorted(s) if not k.startswith("ref")]).encode())
    parts = {
        "samples": h.hexdigest(),
        "model": files,
        "model_cfg": cfg.model.model_dump(),
        "method": cfg.method.model_dump(exclude={"pref"}),
        "seed": cfg.train.seed,  # adapter initialisation (PiSSA, gaussian) draws from it
    }
    return fingerprint(parts)


# ---- evaluation helpers -----------------------------------------------------------------------
@torch.no_grad()
def preference_accuracy(
    model: Any,
    samples: list[dict[str, Any]],
    *,
    pad_token_id: int,
    batch_size: int = 16,
    average: bool = False,
) -> float:
    """Share of pairs whose chosen reply the model finds likelier than the rejected one
    (summed log-probs, or per-token means with ``average``); ties count as wrong."""
    from tunesmith.data.pairs import collate_pairs
    from tunesmith.train.losses import sequence_logps

    was_training = model.training
    model.eval()
    right = 0
    for i in range(0, len(samples), batch_size):
        chunk = samples[i : i + batch_size]
        batch = collate_pairs(chunk, pad_token_id)
        dev = next(model.parameters()).device
        logits = model(
            input_ids=batch["input_ids"].to(dev),
            attention_mask=batch["attention_mask"].to(dev),
            use_cache=False,
        ).logits
        lp, _ = sequence_logps(logits, batch["labels"].to(dev), average=average)
        right += int((lp[: len(chunk)] > lp[len(chunk) :]).sum())
    model.train(was_training)
    return right / max(len(samples), 1)
