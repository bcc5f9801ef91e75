"""Loss functions without TRL: SFT cross-entropy, sequence log-probs, preference-loss behaviour.

The comparisons against TRL's own implementations live in ``test_pref_losses.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tunesmith.train.losses import IGNORE_INDEX, sequence_logps, shift_labels, token_ce_sum
from tunesmith.train.pref_losses import (
    add_sft_term,
    dpo_loss,
    kto_loss,
    orpo_loss,
    orpo_total,
    preference_metrics,
    simpo_loss,
)


def _batch(seed: int, batch: int = 3, seq: int = 9, vocab: int = 17):
    """Random logits and labels with a prompt prefix and right padding marked -100."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, seq, vocab, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, vocab, (batch, seq), generator=g)
    for b in range(batch):
        prompt = int(torch.randint(1, 4, (1,), generator=g))
        pad = int(torch.randint(0, 3, (1,), generator=g))
        labels[b, :prompt] = IGNORE_INDEX
        if pad:
            labels[b, seq - pad :] = IGNORE_INDEX
    return logits, labels


# --- SFT: token_ce_sum ---


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_token_ce_sum_equals_torch_cross_entropy(seed: int) -> None:
    logits, labels = _batch(seed)
    logits = logits.float()  # token_ce_sum computes in float32
    loss_sum, n = token_ce_sum(logits, labels)
    ref = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]),
        labels[:, 1:].reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )
    assert int(n) == int((labels[:, 1:] != -100).sum())
    assert loss_sum.item() == pytest.approx(ref.item(), rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_token_ce_sum_with_token_weights(seed: int) -> None:
    logits, labels = _batch(seed)
    logits = logits.float()
    weights = torch.rand(labels.shape, generator=torch.Generator().manual_seed(seed + 10))
    loss_sum, n = token_ce_sum(logits, labels, weights)
    per_token = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]),
        labels[:, 1:].reshape(-1),
        ignore_index=-100,
        reduction="none",
    )
    # A weight sits on its label, i.e. on the token predicted from the previous position.
    ref = (per_token * weights[:, 1:].reshape(-1)).sum()
    assert int(n) == int((labels[:, 1:] != -100).sum())
    assert loss_sum.item() == pytest.approx(ref.item(), rel=1e-6)
    ones, _ = token_ce_sum(logits, labels, torch.ones_like(weights))
    plain, _ = token_ce_sum(logits, labels)
    assert ones.item() == pytest.approx(plain.item(), rel=1e-6)


def test_token_ce_sum_all_ignored_is_zero() -> None:
    logits, labels = _batch(0)
    loss_sum, n = token_ce_sum(logits, torch.full_like(labels, IGNORE_INDEX))
    assert loss_sum.item() == 0.0 and int(n) == 0


def test_shift_labels() -> None:
    labels = torch.tensor([[-100, 5, 6, 7]])
    assert shift_labels(labels).tolist() == [[5, 6, 7, -100]]


# --- sequence_logps ---


def _naive_sequence_logps(logits: torch.Tensor, labels: torch.Tensor, average: bool):
    out, counts = [], []
    for b in range(labels.shape[0]):
        total = torch.zeros((), dtype=torch.float64)
        n = 0
        for t in range(labels.shape[1] - 1):
            tok = int(labels[b, t + 1])
            if tok == IGNORE_INDEX:
                continue
            total = total + torch.log_softmax(logits[b, t].double(), dim=-1)[tok]
            n += 1
        out.append(total / max(n, 1) if average else total)
        counts.append(n)
    return torch.stack(out), counts


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("average", [False, True])
def test_sequence_logps_matches_naive_loop(seed: int, average: bool) -> None:
    logits, labels = _batch(seed, batch=4)
    logps, n = sequence_logps(logits, labels, average=average)
    ref, counts = _naive_sequence_logps(logits, labels, average)
    assert n.tolist() == counts
    assert n.dtype == torch.int64
    assert torch.allclose(logps, ref, atol=1e-9, rtol=0)


def test_sequence_logps_gradient_matches_naive_loop() -> None:
    logits, labels = _batch(5, batch=3)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    weights = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    (sequence_logps(a, labels)[0] * weights).sum().backward()
    (_naive_sequence_logps(b, labels, False)[0] * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-10, rtol=0)
    # Positions that predict an ignored label get no gradient at all.
    ignored = shift_labels(labels) == IGNORE_INDEX
    assert a.grad[ignored].abs().max().item() == 0.0


def test_sequence_logps_low_precision_accumulates_in_float32() -> None:
    logits, labels = _batch(7, batch=2, seq=12, vocab=33)
    logps, _ = sequence_logps(logits.to(torch.bfloat16), labels)
    assert logps.dtype == torch.float32
    ref, _ = _naive_sequence_logps(logits.to(torch.bfloat16).double(), labels, False)
    assert torch.allclose(logps.double(), ref, atol=1e-4, rtol=0)


def test_sequence_logps_empty_row_and_shape_check() -> None:
    logits, labels = _batch(1, batch=2)
    labels[1] = IGNORE_INDEX
    logps, n = sequence_logps(logits, labels, average=True)
    assert n[1].item() == 0 and logps[1].item() == 0.0
    with pytest.raises(ValueError, match="differ"):
        sequence_logps(logits, labels[:, :-1])


# --- preference losses: behaviour (TRL comparisons in test_pref_losses.py) ---


def test_dpo_sigmoid_at_zero_margin_is_log2_and_rewards() -> None:
    pc = torch.tensor([-5.0, -3.0])
    pr = torch.tensor([-6.0, -2.0])
    rc = torch.tensor([-5.0, -4.0])
    rr = torch.tensor([-6.0, -2.5])
    out = dpo_loss(pc, pr, rc, rr, beta=0.5)
    assert out.losses[0].item() == pytest.approx(math.log(2), abs=1e-7)
    # Second pair: delta = (1) - (0.5) = 0.5; loss = -log sigmoid(0.25).
    assert out.losses[1].item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.25))), abs=1e-7)
    assert out.chosen_rewards.tolist() == pytest.approx([0.0, 0.5])
    assert out.rejected_rewards.tolist() == pytest.approx([0.0, 0.25])


def test_dpo_ipo_needs_lengths_and_normalises_by_them() -> None:
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-10.0, -12.0, -11.0, -11.0))
    with pytest.raises(ValueError, match="n_tokens"):
        dpo_loss(pc, pr, rc, rr, loss_type="ipo")
    out = dpo_loss(
        pc,
        pr,
        rc,
        rr,
        beta=0.25,
        loss_type="ipo",
        chosen_n_tokens=torch.tensor([4]),
        rejected_n_tokens=torch.tensor([2]),
    )
    # (1/4 - (-1)/2 - 1/(2*0.25))^2 = (0.75 - 2)^2
    assert out.losses.item() == pytest.approx(1.5625, abs=1e-7)


def test_dpo_argument_validation() -> None:
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(x, x, x, x, loss_type="kto_pair")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigmoid"):
        dpo_loss(x, x, x, x, loss_type="hinge", label_smoothing=0.1)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(x, x, x, x, label_smoothing=0.5)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(x, x, x, x, beta=0.0)


def test_dpo_gradients_flow_to_policy_only_in_float32_from_bf16() -> None:
    pc = torch.tensor([-4.0, -6.0], dtype=torch.bfloat16, requires_grad=True)
    pr = torch.tensor([-5.0, -5.0], dtype=torch.bfloat16, requires_grad=True)
    ref = torch.tensor([-5.0, -5.0], dtype=torch.bfloat16)
    out = dpo_loss(pc, pr, ref, ref)
    assert out.losses.dtype == torch.float32
    assert not out.chosen_rewards.requires_grad
    out.losses.mean().backward()
    assert pc.grad is not None and (pc.grad < 0).all() and (pr.grad > 0).all()


def test_orpo_is_finite_when_probability_is_one() -> None:
    chosen = torch.tensor([0.0, -0.5], requires_grad=True)
    rejected = torch.tensor([-1.0, 0.0], requires_grad=True)
    out = orpo_loss(chosen, rejected, beta=0.2)
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all() and torch.isfinite(out.log_odds_ratio).all()
    assert torch.isfinite(chosen.grad).all() and torch.isfinite(rejected.grad).all()
    nll = torch.tensor(1.5)
    assert orpo_total(nll, out.losses).item() == pytest.approx(1.5 + out.losses.mean().item())


def test_orpo_formula_by_hand() -> None:
    a_w, a_l = -0.4, -1.3
    odds = lambda a: math.exp(a) / (1 - math.exp(a))  # noqa: E731
    lor = math.log(odds(a_w) / odds(a_l))
    out = orpo_loss(torch.tensor([a_w], dtype=torch.float64), torch.tensor([a_l]), beta=0.3)
    assert out.log_odds_ratio.item() == pytest.approx(lor, abs=1e-7)
    assert out.losses.item() == pytest.approx(0.3 * math.log1p(math.exp(-lor)), abs=1e-7)


def test_simpo_gamma_is_an_absolute_margin() -> None:
    chosen = torch.tensor([-1.0])
    rejected = torch.tensor([-1.25])
    # beta * (a_w - a_l) = 2 * 0.25 = 0.5 = gamma -> the margin is exactly met: loss = log 2.
    out = simpo_loss(chosen, rejected, beta=2.0, gamma=0.5)
    assert out.losses.item() == pytest.approx(math.log(2), abs=1e-7)
    assert out.chosen_rewards.item() == pytest.approx(-2.0)
    smoothed = simpo_loss(chosen, rejected, beta=2.0, gamma=0.5, label_smoothing=0.2)
    assert smoothed.losses.item() == pytest.approx(math.log(2), abs=1e-7)


def test_kto_kl_is_clamped_detached_and_gathered() -> None:
    pc = torch.tensor([-3.0, -4.0], requires_grad=True)
    pr = torch.tensor([-6.0], requires_grad=True)
    rc, rr = torch.tensor([-3.5, -4.0]), torch.tensor([-5.0])
    pkl = torch.tensor([-9.0, -8.0, -7.0], requires_grad=True)
    rkl = torch.tensor([-8.0, -8.0, -8.0])
    out = kto_loss(pc, pr, pkl, rc, rr, rkl, beta=0.5, undesirable_weight=2.0)
    assert out.kl.item() == 0.0 and not out.kl.requires_grad  # mean -> 0.0, clamp keeps 0
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert out.losses.tolist() == pytest.approx(
        [1 - sig(0.25), 1 - sig(0.0), 2 * (1 - sig(0.5))], abs=1e-7
    )
    neg = kto_loss(pc, pr, pkl - 5, rc, rr, rkl, beta=0.5)
    assert neg.kl.item() == 0.0  # negative estimate is clamped at 0
    pos = kto_loss(pc, pr, pkl + 2, rc, rr, rkl, beta=0.5)
    assert pos.kl.item() == pytest.approx(2.0)
    # A gather that returns other processes' values: they are averaged before the clamp.
    gathered = kto_loss(
        pc, pr, pkl + 2, rc, rr, rkl, kl_gather=lambda k: torch.stack([k, torch.tensor(-1.0)])
    )
    assert gathered.kl.item() == pytest.approx(0.5)
    out.losses.mean().backward()
    assert pkl.grad is None  # the KL term carries no gradient


def test_kto_empty_sets_and_no_kl() -> None:
    empty = torch.zeros(0)
    pr, rr = torch.tensor([-6.0, -2.0]), torch.tensor([-5.0, -3.0])
    out = kto_loss(empty, pr, None, empty, rr, None, beta=1.0)
    assert out.losses.shape == (2,) and out.chosen_rewards.shape == (0,)
    assert out.kl.item() == 0.0
    assert out.rejected_rewards.tolist() == pytest.approx([-1.0, 1.0])
    assert preference_metrics(out.chosen_rewards, out.rejected_rewards, paired=False) == {
        "rewards/rejected": 0.0
    }


def test_preference_metrics_paired() -> None:
    m = preference_metrics(torch.tensor([1.0, -1.0, 0.5]), torch.tensor([0.0, 0.0, 0.5]))
    assert m == pytest.approx(
        {
            "rewards/chosen": 0.5 / 3,
            "rewards/rejected": 0.5 / 3,
            "rewards/margins": 0.0,
            "rewards/accuracies": 1 / 3,
        }
    )
    assert preference_metrics(torch.zeros(0), torch.zeros(0)) == {}
    with pytest.raises(ValueError, match="shape"):
        preference_metrics(torch.zeros(2), torch.zeros(3))
    unpaired = preference_metrics(torch.tensor([1.0, 3.0]), torch.tensor([1.0]), paired=False)
    assert unpaired == {"rewards/chosen": 2.0, "rewards/rejected": 1.0, "rewards/margins": 1.0}


def test_add_sft_term_per_example_and_scalar() -> None:
    losses = torch.tensor([0.5, 0.7])
    assert add_sft_term(losses, torch.tensor([1.0, 2.0]), 0.1).tolist() == pytest.approx([0.6, 0.9])
    assert add_sft_term(losses, torch.tensor(3.0), 0.5).tolist() == pytest.approx([2.0, 2.2])
    assert add_sft_term(losses, torch.tensor(3.0), 0.0) is losses
    with pytest.raises(ValueError):
        add_sft_term(losses, torch.tensor(1.0), -1.0)
