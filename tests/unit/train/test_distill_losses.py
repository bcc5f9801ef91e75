"""The distillation losses against hand-computed values and direct torch formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tunesmith.train.losses import distill_sum, distill_token_losses, token_distill_sum

# Student p_s = [1/2, 1/2], teacher p_t = [3/4, 1/4]: every value below is worked out by hand.
STUDENT = torch.tensor([[0.0, 0.0]])
TEACHER = torch.tensor([[math.log(3.0), 0.0]])
FORWARD = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL(t || s) = 0.130812
REVERSE = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL(s || t) = 0.143841
# beta 0.5: m = [0.625, 0.375]
JSD = 0.5 * (0.75 * math.log(0.75 / 0.625) + 0.25 * math.log(0.25 / 0.375)) + 0.5 * (
    0.5 * math.log(0.5 / 0.625) + 0.5 * math.log(0.5 / 0.375)
)  # 0.033822


@pytest.mark.parametrize(
    ("kind", "expected"), [("forward_kl", FORWARD), ("reverse_kl", REVERSE), ("jsd", JSD)]
)
def test_hand_computed_divergences(kind: str, expected: float) -> None:
    got = distill_token_losses(STUDENT, TEACHER, kind=kind, beta=0.5)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_jsd_beta_weights_the_teacher() -> None:
    # beta 0.25: m = 0.25 p_t + 0.75 p_s = [0.5625, 0.4375]
    m = (0.5625, 0.4375)
    kl_t = 0.75 * math.log(0.75 / m[0]) + 0.25 * math.log(0.25 / m[1])
    kl_s = 0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])
    got = distill_token_losses(STUDENT, TEACHER, kind="jsd", beta=0.25)
    assert got.item() == pytest.approx(0.25 * kl_t + 0.75 * kl_s, abs=1e-6)


def test_temperature_softens_both_and_scales_by_t_squared() -> None:
    # At T = 2 the teacher [2 ln 3, 0] softens to p_t = [3/4, 1/4]; the student stays uniform.
    got = distill_token_losses(STUDENT, 2 * TEACHER, kind="forward_kl", temperature=2.0)
    assert got.item() == pytest.approx(4 * FORWARD, abs=1e-6)


def test_identical_distributions_give_zero() -> None:
    logits = torch.randn(4, 9, generator=torch.Generator().manual_seed(0))
    for kind in ("forward_kl", "reverse_kl", "jsd"):
        assert distill_token_losses(logits, logits.clone(), kind=kind).abs().max() < 1e-6


def test_against_torch_kl_div() -> None:
    g = torch.Generator().manual_seed(1)
    s_logits, t_logits = torch.randn(5, 11, generator=g), torch.randn(5, 11, generator=g)
    temp = 1.7
    s = F.log_softmax(s_logits / temp, -1)
    t = F.log_softmax(t_logits / temp, -1)
    forward = F.kl_div(s, t, log_target=True, reduction="none").sum(-1) * temp**2
    reverse = F.kl_div(t, s, log_target=True, reduction="none").sum(-1) * temp**2
    beta = 0.3
    m = (beta * t.exp() + (1 - beta) * s.exp()).log()
    jsd = beta * F.kl_div(m, t, log_target=True, reduction="none").sum(-1) + (1 - beta) * F.kl_div(
        m, s, log_target=True, reduction="none"
    ).sum(-1)
    for kind, want in (("forward_kl", forward), ("reverse_kl", reverse), ("jsd", jsd * temp**2)):
        got = distill_token_losses(s_logits, t_logits, kind=kind, beta=beta, temperature=temp)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_forward_kl_gradient_is_p_student_minus_p_teacher() -> None:
    student = STUDENT.clone().requires_grad_(True)
    distill_token_losses(student, TEACHER, kind="forward_kl").sum().backward()
    torch.testing.assert_close(student.grad, torch.tensor([[0.5 - 0.75, 0.5 - 0.25]]))


def test_teacher_gets_no_gradient_through_a_detached_input() -> None:
    student = torch.zeros(1, 2, requires_grad=True)
    teacher = TEACHER.clone().requires_grad_(True)
    distill_token_losses(student, teacher.detach(), kind="reverse_kl").sum().backward()
    assert teacher.grad is None and student.grad is not None


def test_distill_sum_adds_weighted_ce_and_token_weights() -> None:
    student = torch.cat([STUDENT, STUDENT])
    teacher = torch.cat([TEACHER, torch.zeros(1, 2)])  # row 2: identical (divergence 0)
    target = torch.tensor([0, 1])
    objective, div, ce = distill_sum(student, teacher, target, ce_weight=0.5)
    assert div.item() == pytest.approx(FORWARD, abs=1e-6)
    assert ce.item() == pytest.approx(2 * math.log(2.0), abs=1e-6)  # uniform over 2 tokens
    assert objective.item() == pytest.approx(FORWARD + 0.5 * 2 * math.log(2.0), abs=1e-6)
    # Weights 0 and 3: only the second row counts, three times.
    weights = torch.tensor([0.0, 3.0])
    objective, div, ce = distill_sum(student, teacher, target, weights, ce_weight=1.0)
    assert div.item() == pytest.approx(0.0, abs=1e-6)
    assert objective.item() == pytest.approx(3 * math.log(2.0), abs=1e-6)


def test_token_distill_sum_counts_only_trained_positions() -> None:
    # labels [-100, 0, -100]: position 0 predicts the trained label at 1; positions 1 and 2 do
    # not count, however far apart their logits are.
    student = torch.tensor([[[0.0, 0.0], [9.0, -9.0], [5.0, 0.0]]])
    teacher = torch.tensor([[[math.log(3.0), 0.0], [-9.0, 9.0], [0.0, 5.0]]])
    labels = torch.tensor([[-100, 0, -100]])
    objective, n = token_distill_sum(student, teacher, labels, kind="forward_kl")
    assert n.item() == 1
    assert objective.item() == pytest.approx(FORWARD, abs=1e-6)
    weights = torch.tensor([[1.0, 2.0, 1.0]])  # the weight of label 1 applies to position 0
    objective, _ = token_distill_sum(student, teacher, labels, weights, kind="forward_kl")
    assert objective.item() == pytest.approx(2 * FORWARD, abs=1e-6)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="share one vocabulary"):
        distill_token_losses(torch.zeros(1, 3), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="choose one of"):
        distill_token_losses(STUDENT, TEACHER, kind="kl")
    with pytest.raises(ValueError, match="beta"):
        distill_token_losses(STUDENT, TEACHER, kind="jsd", beta=1.0)
    with pytest.raises(ValueError, match="temperature"):
        distill_token_losses(STUDENT, TEACHER, temperature=0.0)
