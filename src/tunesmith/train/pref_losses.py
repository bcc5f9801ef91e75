"""Preference-tuning losses (DPO, ORPO, SimPO, KTO) as pure tensor functions.

Every function takes per-sequence log-probabilities (from ``sequence_logps``) rather than logits, so
the recipe decides how to batch the forward passes (chosen and rejected concatenated, a frozen
reference model or a disabled adapter, reference log-probs precomputed or not).

Each loss returns *per-example* losses; the batch loss is ``losses.mean()``. Rewards are detached
and exist for logging (``preference_metrics``). The maths follows TRL 1.16 (``DPOTrainer``,
``KTOTrainer``, ``experimental.CPOTrainer``/``ORPOTrainer``); the unit tests compare against it.

Adding an SFT term (LLaMA-Factory's ``pref_ftx``, TRL's ``loss_type=["sigmoid", "sft"]``) is the
caller's job, see ``add_sft_term``:

* per example, LLaMA-Factory style: ``add_sft_term(losses, -chosen_logps_avg, ftx)``, where
  ``chosen_logps_avg`` is ``sequence_logps(chosen_logits, chosen_labels, average=True)[0]``;
* per batch, TRL style: pass the token-mean NLL of the chosen responses (a 0-dim tensor, e.g.
  ``loss_sum / n_tokens`` from ``token_ce_sum``); it broadcasts over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from tunesmith.train.losses import sequence_logps

__all__ = [
    "DPOOutput",
    "KTOOutput",
    "ORPOOutput",
    "SimPOOutput",
    "add_sft_term",
    "dpo_loss",
    "kto_loss",
    "orpo_loss",
    "orpo_total",
    "preference_metrics",
    "sequence_logps",
    "simpo_loss",
]

DPOLossType = Literal["sigmoid", "ipo", "hinge"]
DPO_LOSS_TYPES: tuple[str, ...] = ("sigmoid", "ipo", "hinge")

# ORPO needs log(1 - p); an average log-prob of exactly 0 (p == 1) would make it -inf and the
# gradient NaN. Clamping just below 0 keeps the odds finite; typical values are far below it.
_ORPO_MAX_LOGP = -1e-6


def _acc(x: torch.Tensor) -> torch.Tensor:
    """Compute in at least float32: bf16 log-probs lose the small differences DPO relies on."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _check_beta(beta: float) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")


class DPOOutput(NamedTuple):
    """Per-example DPO losses and (detached) implicit rewards, all ``[batch]``."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


class ORPOOutput(NamedTuple):
    """Per-example ORPO odds-ratio losses, rewards and log odds ratios, all ``[batch]``."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    log_odds_ratio: torch.Tensor


class SimPOOutput(NamedTuple):
    """Per-example SimPO losses and (detached) length-normalised rewards, all ``[batch]``."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


class KTOOutput(NamedTuple):
    """KTO losses ``[n_chosen + n_rejected]`` (chosen first), rewards per set, the KL estimate."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    kl: torch.Tensor


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    loss_type: DPOLossType = "sigmoid",
    chosen_n_tokens: torch.Tensor | None = None,
    rejected_n_tokens: torch.Tensor | None = None,
) -> DPOOutput:
    """Direct Preference Optimization loss, with TRL 1.16 ``DPOTrainer`` semantics per loss type.

    With summed log-probs (``sequence_logps(..., average=False)``) and the log ratios
    ``h_w = log pi(y_w) - log pi_ref(y_w)``, ``h_l = log pi(y_l) - log pi_ref(y_l)``,
    ``delta = h_w - h_l``:

    * ``"sigmoid"`` (DPO; conservative cDPO when ``label_smoothing = eps > 0``)::

          L = -(1 - eps) * log sigmoid(beta * delta) - eps * log sigmoid(-beta * delta)

      With ``eps = 0`` this is exactly TRL 1.16's ``"sigmoid"``. TRL 1.16 dropped the cDPO term
      from ``DPOTrainer`` (its ``label_smoothing`` now feeds ``"robust"``/``"exo_pair"``); the form
      here is the one TRL's ``CPOTrainer`` and earlier ``DPOTrainer`` releases use.
    * ``"hinge"`` (SLiC)::

          L = max(0, 1 - beta * delta)

    * ``"ipo"``: ``beta`` is IPO's regulariser tau, and, as in TRL, each log ratio is divided by
      its response length (``|y|`` = number of trained tokens, at least 1)::

          L = (h_w / |y_w| - h_l / |y_l| - 1 / (2 * beta)) ** 2

      so ``chosen_n_tokens`` and ``rejected_n_tokens`` (the counts ``sequence_logps`` returns)
      are required.

    Rewards for every loss type are ``beta * h_w`` and ``beta * h_l`` (unnormalised), detached.

    Args:
        policy_chosen: ``[batch]`` summed log-probs of the chosen responses under the policy.
        policy_rejected: ``[batch]`` same for the rejected responses.
        ref_chosen: ``[batch]`` chosen log-probs under the reference model (no gradient needed).
        ref_rejected: ``[batch]`` rejected log-probs under the reference model.
        beta: Inverse temperature (> 0); for IPO, the regulariser tau.
        label_smoothing: cDPO's assumed label-flip probability, in ``[0, 0.5)``; sigmoid only.
        loss_type: ``"sigmoid"``, ``"ipo"`` or ``"hinge"``.
        chosen_n_tokens: ``[batch]`` chosen response lengths, required for ``"ipo"``.
        rejected_n_tokens: ``[batch]`` rejected response lengths, required for ``"ipo"``.

    Returns:
        ``DPOOutput(losses, chosen_rewards, rejected_rewards)``, each ``[batch]``.
    """
    _check_beta(beta)
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; expected one of {DPO_LOSS_TYPES}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}")
    if label_smoothing and loss_type != "sigmoid":
        raise ValueError(f"label_smoothing applies to loss_type='sigmoid' only, not {loss_type!r}")

    chosen_logratios = _acc(policy_chosen) - _acc(ref_chosen)
    rejected_logratios = _acc(policy_rejected) - _acc(ref_rejected)
    delta = chosen_logratios - rejected_logratios

    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * delta)
        if label_smoothing:
            losses = (1 - label_smoothing) * losses - label_smoothing * F.logsigmoid(-beta * delta)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * delta)
    else:  # ipo
        if chosen_n_tokens is None or rejected_n_tokens is None:
            raise ValueError("loss_type='ipo' needs chosen_n_tokens and rejected_n_tokens")
        chosen_avg = chosen_logratios / chosen_n_tokens.clamp(min=1).to(delta.dtype)
        rejected_avg = rejected_logratios / rejected_n_tokens.clamp(min=1).to(delta.dtype)
        losses = (chosen_avg - rejected_avg - 1 / (2 * beta)) ** 2

    return DPOOutput(losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach())


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, accurate on both sides of ``-log 2`` (Maechler, 2012)."""
    near_zero = x >= -math.log(2)
    # Feed each branch only inputs where it is finite, so the unused one cannot poison gradients.
    far = torch.log1p(-torch.exp(torch.where(near_zero, torch.full_like(x, -1.0), x)))
    near = torch.log(-torch.expm1(torch.where(near_zero, x, torch.full_like(x, -1.0))))
    return torch.where(near_zero, near, far)


def orpo_loss(
    chosen_logps_avg: torch.Tensor,
    rejected_logps_avg: torch.Tensor,
    *,
    beta: float = 0.1,
) -> ORPOOutput:
    """ORPO's odds-ratio term (TRL 1.16 ``ORPOTrainer.odds_ratio_loss``, sign flipped to a loss).

    With length-averaged log-probs ``a_w``, ``a_l`` (``sequence_logps(..., average=True)``) and
    ``odds(y) = p / (1 - p)`` with ``p = exp(a)``::

        log_odds_ratio = (a_w - a_l) - (log(1 - exp(a_w)) - log(1 - exp(a_l)))
        L_OR           = -beta * log sigmoid(log_odds_ratio)

    The full ORPO objective adds the SFT negative log-likelihood of the chosen responses, which
    this function does **not** include: ``loss = nll_chosen + L_OR.mean()`` (``orpo_total``),
    where ``nll_chosen`` is the token-mean cross-entropy of the chosen responses (TRL's
    ``policy_nll_loss``; e.g. ``token_ce_sum(chosen_logits, chosen_labels)`` divided by its token
    count). TRL stores the term with the opposite sign and computes ``nll - losses.mean()``; the
    total is the same.

    TRL logs ``log_odds_ratio`` as ``F.logsigmoid(out.log_odds_ratio).mean()`` and
    ``log_odds_chosen`` as ``out.log_odds_ratio.mean()``. Rewards are ``beta * a`` (detached).
    Inputs are computed in at least float32 and clamped to ``<= -1e-6`` so that ``p == 1`` keeps a
    finite odds ratio (TRL gives inf/NaN there); otherwise the values equal TRL's.

    Args:
        chosen_logps_avg: ``[batch]`` per-token average log-probs of the chosen responses.
        rejected_logps_avg: ``[batch]`` same for the rejected responses.
        beta: Weight of the odds-ratio term (TRL's/LLaMA-Factory's ``beta``, the paper's lambda).

    Returns:
        ``ORPOOutput(losses, chosen_rewards, rejected_rewards, log_odds_ratio)``, each ``[batch]``.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    chosen = _acc(chosen_logps_avg).clamp(max=_ORPO_MAX_LOGP)
    rejected = _acc(rejected_logps_avg).clamp(max=_ORPO_MAX_LOGP)
    log_odds = (chosen - rejected) - (_log1mexp(chosen) - _log1mexp(rejected))
    losses = -beta * F.logsigmoid(log_odds)
    return ORPOOutput(
        losses,
        beta * _acc(chosen_logps_avg).detach(),
        beta * _acc(rejected_logps_avg).detach(),
        log_odds,
    )


def orpo_total(nll: torch.Tensor, or_losses: torch.Tensor) -> torch.Tensor:
    """Full ORPO loss ``nll + or_losses.mean()``: chosen-response NLL plus the odds-ratio term."""
    return nll + or_losses.mean()


def simpo_loss(
    chosen_logps_avg: torch.Tensor,
    rejected_logps_avg: torch.Tensor,
    *,
    beta: float = 2.0,
    gamma: float = 0.5,
    label_smoothing: float = 0.0,
) -> SimPOOutput:
    """SimPO: reference-free, length-normalised margin loss (TRL 1.16 ``CPOTrainer``, ``"simpo"``).

    With length-averaged log-probs ``a_w``, ``a_l`` and ``z = beta * (a_w - a_l) - gamma``::

        L = -(1 - eps) * log sigmoid(z) - eps * log sigmoid(-z)

    **Convention**: ``gamma`` is the *absolute* target reward margin, as TRL's ``simpo_gamma`` and
    LLaMA-Factory's ``simpo_gamma`` (both compute ``beta * (a_w - a_l - gamma / beta)``). The SimPO
    paper's reference code instead takes ``gamma_beta_ratio``; convert with
    ``gamma = gamma_beta_ratio * beta`` (its recommended ``beta=2.0, ratio=0.5`` is ``gamma=1.0``).

    Rewards are ``beta * a`` (detached). SimPO trains without an SFT term; CPO-SimPO adds one with
    ``add_sft_term``.

    Args:
        chosen_logps_avg: ``[batch]`` per-token average log-probs of the chosen responses.
        rejected_logps_avg: ``[batch]`` same for the rejected responses.
        beta: Reward scale (> 0).
        gamma: Target reward margin (absolute, see above).
        label_smoothing: Assumed label-flip probability ``eps`` in ``[0, 0.5)``.

    Returns:
        ``SimPOOutput(losses, chosen_rewards, rejected_rewards)``, each ``[batch]``.
    """
    _check_beta(beta)
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}")
    chosen = _acc(chosen_logps_avg)
    rejected = _acc(rejected_logps_avg)
    # Same association as TRL (beta * (diff - gamma / beta)) so results agree to the last bit.
    z = beta * ((chosen - rejected) - gamma / beta)
    losses = -F.logsigmoid(z)
    if label_smoothing:
        losses = (1 - label_smoothing) * losses - label_smoothing * F.logsigmoid(-z)
    return SimPOOutput(losses, beta * chosen.detach(), beta * rejected.detach())


def kto_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    policy_kl: torch.Tensor | None,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    ref_kl: torch.Tensor | None,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    kl_gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> KTOOutput:
    """Kahneman-Tversky Optimization loss (TRL 1.16 ``KTOTrainer``, ``loss_type="kto"``).

    Unpaired data: each example is desirable (chosen) or undesirable (rejected). With summed
    log-probs, ``h = log pi(y|x) - log pi_ref(y|x)`` and the reference point ``z0``::

        z0           = max(0, mean_j(log pi(y'_j|x_j) - log pi_ref(y'_j|x_j)))   (detached)
        L_chosen     = desirable_weight   * (1 - sigmoid(beta * (h - z0)))
        L_rejected   = undesirable_weight * (1 - sigmoid(beta * (z0 - h)))
        batch loss   = mean over cat(L_chosen, L_rejected)

    ``z0`` estimates KL(pi || pi_ref) from *mismatched* pairs: each prompt ``x_j`` scored with
    another example's completion ``y'_j`` (TRL rotates the completions in the batch by one). It is
    averaged across processes through ``kl_gather`` when given (e.g. ``accelerator.gather``; the
    gathered values are averaged) before the clamp. ``policy_kl``/``ref_kl`` of ``None`` (or empty)
    mean no KL estimate: ``z0 = 0``.

    An empty chosen or rejected set is fine: its losses and rewards are empty tensors and the
    batch loss averages over the examples present, as in TRL. Rewards are ``beta * h`` (detached).

    Args:
        policy_chosen: ``[n_chosen]`` summed log-probs of the desirable examples under the policy.
        policy_rejected: ``[n_rejected]`` same for the undesirable examples.
        policy_kl: ``[n_kl]`` log-probs of the mismatched (prompt, completion) pairs, or ``None``.
        ref_chosen: ``[n_chosen]`` desirable log-probs under the reference model.
        ref_rejected: ``[n_rejected]`` undesirable log-probs under the reference model.
        ref_kl: ``[n_kl]`` mismatched-pair log-probs under the reference model, or ``None``.
        beta: Inverse temperature (> 0).
        desirable_weight: Weight ``lambda_D`` of the desirable losses.
        undesirable_weight: Weight ``lambda_U`` of the undesirable losses.
        kl_gather: Optional cross-process gather applied to the local KL mean.

    Returns:
        ``KTOOutput(losses, chosen_rewards, rejected_rewards, kl)``: losses ``[n_chosen +
        n_rejected]`` (chosen first), rewards per set, ``kl`` a detached 0-dim tensor ``>= 0``.
    """
    _check_beta(beta)
    if desirable_weight < 0 or undesirable_weight < 0:
        raise ValueError("desirable_weight and undesirable_weight must be >= 0")
    chosen_logratios = _acc(policy_chosen) - _acc(ref_chosen)
    rejected_logratios = _acc(policy_rejected) - _acc(ref_rejected)
    dtype = torch.promote_types(chosen_logratios.dtype, rejected_logratios.dtype)

    if policy_kl is None or ref_kl is None or policy_kl.numel() == 0:
        kl = torch.zeros((), dtype=dtype, device=chosen_logratios.device)
    else:
        kl = (_acc(policy_kl) - _acc(ref_kl)).mean().detach()
    if kl_gather is not None:
        kl = kl_gather(kl).mean()
    kl = kl.clamp(min=0).to(dtype)

    chosen_losses = 1 - torch.sigmoid(beta * (chosen_logratios - kl))
    rejected_losses = 1 - torch.sigmoid(beta * (kl - rejected_logratios))
    losses = torch.cat(
        (desirable_weight * chosen_losses.to(dtype), undesirable_weight * rejected_losses.to(dtype))
    )
    return KTOOutput(
        losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach(), kl
    )


def preference_metrics(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    *,
    paired: bool = True,
) -> dict[str, float]:
    """Reward metrics under TRL's names, for the loss outputs above.

    Paired (DPO/ORPO/SimPO), over the batch::

        rewards/chosen = mean(r_w)       rewards/rejected = mean(r_l)
        rewards/margins = mean(r_w - r_l)   rewards/accuracies = mean(1[r_w > r_l])

    Unpaired (KTO, ``paired=False``): ``rewards/chosen`` and ``rewards/rejected`` are the means of
    the sets that are non-empty, ``rewards/margins`` their difference when both are present, and
    there is no accuracy. An empty paired batch gives ``{}``. For several processes, gather the
    rewards first.
    """
    c = chosen_rewards.detach().double()
    r = rejected_rewards.detach().double()
    out: dict[str, float] = {}
    if paired:
        if c.shape != r.shape:
            raise ValueError(
                f"paired rewards differ in shape: {tuple(c.shape)} vs {tuple(r.shape)}"
            )
        if c.numel() == 0:
            return out
        out["rewards/chosen"] = c.mean().item()
        out["rewards/rejected"] = r.mean().item()
        out["rewards/margins"] = (c - r).mean().item()
        out["rewards/accuracies"] = (c > r).double().mean().item()
        return out
    if c.numel():
        out["rewards/chosen"] = c.mean().item()
    if r.numel():
        out["rewards/rejected"] = r.mean().item()
    if c.numel() and r.numel():
        out["rewards/margins"] = out["rewards/chosen"] - out["rewards/rejected"]
    return out


def add_sft_term(losses: torch.Tensor, chosen_nll: torch.Tensor, weight: float) -> torch.Tensor:
    """Add ``weight * chosen_nll`` to preference losses (``pref_ftx`` / CPO's ``cpo_alpha``).

    ``chosen_nll`` is either per example (``[batch]``, e.g. ``-chosen_logps_avg``, LLaMA-Factory's
    form) or a 0-dim batch NLL (TRL's form), which broadcasts. ``weight == 0`` returns ``losses``
    unchanged, so no graph is built through an unused NLL.
    """
    if weight < 0:
        raise ValueError(f"SFT weight must be >= 0, got {weight}")
    if weight == 0:
        return losses
    return losses + weight * chosen_nll.to(losses.dtype)
