"""Preference losses compared with TRL 1.16's own code on the same random log-probs (<= 1e-6).

How TRL 1.16 exposes each loss, and how it is called here:

* DPO and KTO have no standalone loss function: the maths sits inside
  ``DPOTrainer._compute_loss`` / ``KTOTrainer._compute_loss``. We call those unbound methods with
  a ``SimpleNamespace`` as ``self`` (the attributes they read), a stand-in model whose output
  carries the per-token log-probs, precomputed reference log-probs, and an identity
  ``accelerator.gather``. They return the batch-mean loss and log the reward metrics, which we
  compare too.
* cDPO (``label_smoothing`` with the sigmoid loss) is gone from ``DPOTrainer`` in 1.16; the same
  conservative form survives in ``experimental.cpo.CPOTrainer.cpo_loss`` (``loss_type="sigmoid"``),
  which we feed the DPO log-ratio difference.
* ORPO: ``experimental.orpo.ORPOTrainer.odds_ratio_loss``; SimPO:
  ``experimental.cpo.CPOTrainer.cpo_loss`` with ``loss_type="simpo"`` (unbound, namespace ``self``).
* ``sequence_logps`` against the static ``CPOTrainer.get_batch_logps``.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("trl")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from trl.experimental.cpo.cpo_trainer import CPOTrainer
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer
    from trl.trainer.dpo_trainer import DPOTrainer
    from trl.trainer.kto_trainer import KTOTrainer

from tunesmith.train.losses import IGNORE_INDEX, sequence_logps
from tunesmith.train.pref_losses import (
    dpo_loss,
    kto_loss,
    orpo_loss,
    preference_metrics,
    simpo_loss,
)

TOL = 1e-6
SEEDS = [0, 1, 2]
CPU = torch.device("cpu")


def _accelerator() -> SimpleNamespace:
    return SimpleNamespace(device=CPU, gather=lambda t: t, gather_for_metrics=lambda t: t)


def _token_logps(g: torch.Generator, n: int, seq: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs ``[n, seq-1]`` (0 off the completion), completion mask ``[n, seq]``."""
    mask = torch.zeros(n, seq, dtype=torch.long)
    for i in range(n):
        # The prompt comes first, so position 0 is never trained (TRL counts it unshifted for IPO).
        start = int(torch.randint(1, seq // 2, (1,), generator=g))
        end = int(torch.randint(start + 1, seq + 1, (1,), generator=g))
        mask[i, start:end] = 1
    per_token = -torch.rand(n, seq - 1, generator=g, dtype=torch.float64) * 4
    return per_token * mask[:, 1:], mask


def _fake_model(per_token_logps: torch.Tensor):
    """Stand-in for TRL's fused-LM-head model output: only what ``_compute_loss`` reads."""
    out = SimpleNamespace(
        log_probs=per_token_logps,
        entropy=torch.zeros_like(per_token_logps),
        mean_logits=torch.zeros_like(per_token_logps),
        is_top1=torch.zeros_like(per_token_logps, dtype=torch.bool),
    )
    return lambda **kwargs: out


# --- DPO ---


def _trl_dpo(loss_type, beta, per_token, mask, ref_chosen, ref_rejected):
    metrics = defaultdict(lambda: defaultdict(list))
    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=_accelerator(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=0.0,
        use_weighting=False,
        _metrics=metrics,
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {
        "input_ids": torch.zeros_like(mask),
        "attention_mask": torch.ones_like(mask),
        "completion_mask": mask,
        "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }
    loss = DPOTrainer._compute_loss(trainer, _fake_model(per_token), inputs, return_outputs=False)
    return loss, {k: v[-1] for k, v in metrics["train"].items()}


def _dpo_case(seed: int, batch: int = 6, seq: int = 14):
    g = torch.Generator().manual_seed(seed)
    per_token, mask = _token_logps(g, 2 * batch, seq)
    ref = per_token.sum(1) + torch.randn(2 * batch, generator=g, dtype=torch.float64) * 2
    return per_token, mask, ref[:batch], ref[batch:]


def _ours_dpo(per_token, mask, ref_chosen, ref_rejected, **kwargs):
    policy_chosen, policy_rejected = per_token.sum(1).chunk(2)
    n_chosen, n_rejected = mask.sum(1).chunk(2)
    return dpo_loss(
        policy_chosen,
        policy_rejected,
        ref_chosen,
        ref_rejected,
        chosen_n_tokens=n_chosen,
        rejected_n_tokens=n_rejected,
        **kwargs,
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_dpo_matches_trl(seed: int, loss_type: str, beta: float) -> None:
    per_token, mask, ref_c, ref_r = _dpo_case(seed)
    trl_loss, trl_metrics = _trl_dpo(loss_type, beta, per_token, mask, ref_c, ref_r)
    ours = _ours_dpo(per_token, mask, ref_c, ref_r, beta=beta, loss_type=loss_type)
    assert abs(ours.losses.mean().item() - trl_loss.item()) <= TOL
    metrics = preference_metrics(ours.chosen_rewards, ours.rejected_rewards)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert abs(metrics[key] - trl_metrics[key]) <= TOL, key

    # Per example: TRL only returns the batch mean, so run it on each pair alone.
    batch = ref_c.shape[0]
    for i in range(batch):
        rows = [i, batch + i]
        one, _ = _trl_dpo(
            loss_type, beta, per_token[rows], mask[rows], ref_c[i : i + 1], ref_r[i : i + 1]
        )
        assert abs(ours.losses[i].item() - one.item()) <= TOL


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_cdpo_label_smoothing_matches_trl_conservative_sigmoid(
    seed: int, label_smoothing: float, beta: float
) -> None:
    per_token, mask, ref_c, ref_r = _dpo_case(seed)
    ours = _ours_dpo(per_token, mask, ref_c, ref_r, beta=beta, label_smoothing=label_smoothing)
    policy_c, policy_r = per_token.sum(1).chunk(2)
    trainer = SimpleNamespace(
        alpha=0.0,
        beta=beta,
        label_smoothing=label_smoothing,
        loss_type="sigmoid",
        simpo_gamma=0.5,
        accelerator=_accelerator(),
    )
    # CPO's logits are chosen - rejected; passing log ratios makes them the DPO delta.
    trl_losses, _, _ = CPOTrainer.cpo_loss(trainer, policy_c - ref_c, policy_r - ref_r)
    assert torch.allclose(ours.losses, trl_losses, atol=TOL, rtol=0)


# --- ORPO ---


def _avg_logps(seed: int, n: int = 16, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    chosen = -torch.rand(n, generator=g, dtype=torch.float64) * 3 - 1e-3
    rejected = -torch.rand(n, generator=g, dtype=torch.float64) * 3 - 1e-3
    return chosen.to(dtype), rejected.to(dtype)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("beta", [0.05, 0.1, 1.0])
def test_orpo_matches_trl(seed: int, beta: float) -> None:
    chosen, rejected = _avg_logps(seed)
    trainer = SimpleNamespace(beta=beta, accelerator=_accelerator())
    trl_losses, trl_cr, trl_rr, trl_ratio, trl_log_odds = ORPOTrainer.odds_ratio_loss(
        trainer, chosen, rejected
    )
    ours = orpo_loss(chosen, rejected, beta=beta)
    # TRL stores the term as a gain (loss = nll - losses.mean()); ours is the loss itself.
    assert torch.allclose(ours.losses, -trl_losses, atol=TOL, rtol=0)
    assert torch.allclose(ours.chosen_rewards, trl_cr, atol=TOL, rtol=0)
    assert torch.allclose(ours.rejected_rewards, trl_rr, atol=TOL, rtol=0)
    assert abs(ours.log_odds_ratio.mean().item() - trl_log_odds.item()) <= TOL
    logsig = torch.nn.functional.logsigmoid(ours.log_odds_ratio).mean()
    assert abs(logsig.item() - trl_ratio.item()) <= TOL


# --- SimPO ---


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("beta", "gamma", "label_smoothing"),
    [(2.0, 0.5, 0.0), (2.5, 1.375, 0.0), (10.0, 3.0, 0.0), (2.0, 0.5, 0.1), (0.1, 0.0, 0.2)],
)
def test_simpo_matches_trl(seed: int, beta: float, gamma: float, label_smoothing: float) -> None:
    chosen, rejected = _avg_logps(seed, dtype=torch.float64)
    trainer = SimpleNamespace(
        alpha=0.0,
        beta=beta,
        simpo_gamma=gamma,
        label_smoothing=label_smoothing,
        loss_type="simpo",
        accelerator=_accelerator(),
    )
    trl_losses, trl_cr, trl_rr = CPOTrainer.cpo_loss(trainer, chosen, rejected)
    ours = simpo_loss(chosen, rejected, beta=beta, gamma=gamma, label_smoothing=label_smoothing)
    assert torch.allclose(ours.losses, trl_losses, atol=TOL, rtol=0)
    assert torch.allclose(ours.chosen_rewards, trl_cr, atol=TOL, rtol=0)
    assert torch.allclose(ours.rejected_rewards, trl_rr, atol=TOL, rtol=0)


# --- KTO ---


def _trl_kto(beta, dw, uw, per_token, mask, labels, ref_logps, kl_logps, ref_kl_logps):
    metrics = defaultdict(lambda: defaultdict(list))
    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=_accelerator(),
        aux_loss_enabled=False,
        precompute_ref_logps=True,
        calculate_KL=True,
        loss_type="kto",
        beta=beta,
        desirable_weight=dw,
        undesirable_weight=uw,
        _compute_kl_logps=lambda model, batch: kl_logps,
        _metrics=metrics,
        _total_train_tokens=0,
        _tp_size=1,
    )
    batch = {
        "input_ids": torch.zeros_like(mask),
        "attention_mask": torch.ones_like(mask),
        "completion_mask": mask,
        "label": labels,
        "ref_logps": ref_logps,
        "ref_KL_logps": ref_kl_logps,
    }
    loss = KTOTrainer._compute_loss(trainer, _fake_model(per_token), batch, return_outputs=False)
    return loss, {k: v[-1] for k, v in metrics["train"].items()}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("beta", "dw", "uw"), [(0.1, 1.0, 1.0), (0.5, 1.0, 1.33), (2.0, 0.7, 1.0)])
@pytest.mark.parametrize("kl_shift", [-3.0, 0.0, 3.0])
@pytest.mark.parametrize("split", ["mixed", "no_chosen", "no_rejected"])
def test_kto_matches_trl(
    seed: int, beta: float, dw: float, uw: float, kl_shift: float, split: str
) -> None:
    n, seq = 8, 12
    g = torch.Generator().manual_seed(seed)
    per_token, mask = _token_logps(g, n, seq)
    logps = per_token.sum(1)
    ref_logps = logps + torch.randn(n, generator=g, dtype=torch.float64) * 2
    # Mismatched pairs: a positive kl_shift gives a positive KL estimate, a negative one is clamped.
    ref_kl = -torch.rand(n, generator=g, dtype=torch.float64) * 20
    policy_kl = ref_kl + torch.randn(n, generator=g, dtype=torch.float64) + kl_shift
    labels = {
        "mixed": torch.rand(n, generator=g) < 0.5,
        "no_chosen": torch.zeros(n, dtype=torch.bool),
        "no_rejected": torch.ones(n, dtype=torch.bool),
    }[split]
    if split == "mixed":
        labels[0], labels[1] = True, False

    trl_loss, trl_metrics = _trl_kto(
        beta, dw, uw, per_token, mask, labels, ref_logps, policy_kl, ref_kl
    )
    ours = kto_loss(
        logps[labels],
        logps[~labels],
        policy_kl,
        ref_logps[labels],
        ref_logps[~labels],
        ref_kl,
        beta=beta,
        desirable_weight=dw,
        undesirable_weight=uw,
    )
    assert ours.losses.shape == (n,)
    assert abs(ours.losses.mean().item() - trl_loss.item()) <= TOL
    assert abs(ours.kl.item() - trl_metrics["kl"]) <= TOL
    metrics = preference_metrics(ours.chosen_rewards, ours.rejected_rewards, paired=False)
    expected_keys = {k for k in trl_metrics if k.startswith("rewards/")}
    assert set(metrics) == expected_keys
    for key in expected_keys:
        assert abs(metrics[key] - trl_metrics[key]) <= TOL, key


# --- sequence_logps ---


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("average", [False, True])
def test_sequence_logps_matches_trl_get_batch_logps(seed: int, average: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    batch, seq, vocab = 4, 10, 23
    logits = torch.randn(batch, seq, vocab, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, vocab, (batch, seq), generator=g)
    labels[:, :3] = IGNORE_INDEX
    labels[1, 7:] = IGNORE_INDEX
    ours, _ = sequence_logps(logits, labels, average=average)
    trl = CPOTrainer.get_batch_logps(logits, labels.clone(), average_log_prob=average)
    assert torch.allclose(ours, trl, atol=TOL, rtol=0)
