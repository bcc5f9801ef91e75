"""The GRPO loss against TRL's own ``GRPOTrainer._compute_loss`` (dev-only) on the same inputs."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from tunesmith.train.rl.loss import grpo_loss

trl_grpo = pytest.importorskip("trl.trainer.grpo_trainer", reason="TRL is the dev-only reference")


class _Acc:
    num_processes = 1
    sync_gradients = True

    def reduce(self, x: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return x

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        return x

    gather_for_metrics = gather


def trl_loss(logps, old, ref, adv, mask, *, beta, eps_low, eps_high, loss_type):
    """TRL's loss code run on given log-probs (its model forward replaced by them)."""
    fake = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=beta,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
        loss_type=loss_type,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        use_vllm=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        accelerator=_Acc(),
        _metrics=defaultdict(lambda: defaultdict(list)),
    )
    b, t = mask.shape
    inputs = {
        "prompt_ids": torch.zeros(b, 2, dtype=torch.long),
        "prompt_mask": torch.ones(b, 2, dtype=torch.long),
        "completion_ids": torch.zeros(b, t, dtype=torch.long),
        "completion_mask": mask,
        "advantages": adv,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": mask.sum(),
    }
    loss = trl_grpo.GRPOTrainer._compute_loss(fake, None, inputs)
    return loss, fake._metrics["train"]


def _inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    b, t = 6, 7
    logps = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    old = logps + (torch.rand(b, t, generator=g, dtype=torch.float64) - 0.5) * 0.8  # some clip
    ref = logps + (torch.rand(b, t, generator=g, dtype=torch.float64) - 0.5)
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 5, 1, 6, 4])
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    return logps, old, ref, adv, mask


@pytest.mark.parametrize(
    ("level", "loss_type", "beta", "eps_high"),
    [
        ("sequence", "grpo", 0.04, 0.2),
        ("sequence", "grpo", 0.0, 0.2),  # no KL
        ("token", "bnpo", 0.1, 0.28),  # DAPO's clip-higher
        ("token", "dapo", 0.0, 0.28),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_and_metrics_equal_trl(level, loss_type, beta, eps_high, seed) -> None:
    logps, old, ref, adv, mask = _inputs(seed)
    mine_in = logps.clone().requires_grad_(True)
    trl_in = logps.clone().requires_grad_(True)
    out = grpo_loss(
        mine_in,
        old,
        adv,
        mask,
        ref_logps=ref,
        beta=beta,
        epsilon_low=0.2,
        epsilon_high=eps_high,
        level=level,
    )
    mine = out.loss_sum / out.units
    theirs, metrics = trl_loss(
        trl_in,
        old,
        ref,
        adv,
        mask,
        beta=beta,
        eps_low=0.2,
        eps_high=eps_high,
        loss_type=loss_type,
    )
    assert abs(mine.item() - theirs.item()) <= 1e-6
    mine.backward()
    theirs.backward()
    assert torch.allclose(mine_in.grad, trl_in.grad, atol=1e-6)
    clip = float(out.clipped_sum / out.tokens)
    assert clip == pytest.approx(metrics["clip_ratio/region_mean"][0], abs=1e-6)
    assert clip > 0  # the inputs do clip: the comparison covers that branch
    if beta:
        assert float(out.kl_sum / out.tokens) == pytest.approx(metrics["kl"][0], abs=1e-6)


def test_kl_is_zero_at_the_reference_and_positive_elsewhere() -> None:
    logps, _old, _ref, adv, mask = _inputs(3)
    same = grpo_loss(logps, logps, adv, mask, ref_logps=logps, beta=1.0)
    assert float(same.kl_sum) == 0.0
    other = grpo_loss(logps, logps, adv, mask, ref_logps=logps - 0.5, beta=1.0)
    # k3 per token: exp(-0.5) + 0.5 - 1, over every completion token
    assert float(other.kl_sum) == pytest.approx((torch.exp(torch.tensor(-0.5)) - 0.5).item() * 26)


def test_beta_without_reference_is_refused() -> None:
    logps, old, _ref, adv, mask = _inputs(0)
    with pytest.raises(ValueError, match="reference"):
        grpo_loss(logps, old, adv, mask, beta=0.1)
