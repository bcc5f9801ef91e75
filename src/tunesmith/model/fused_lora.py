"""A faster forward/backward for plain LoRA linears (training only; weights stay peft's).

peft computes ``y = base(x) + lora_B(lora_A(dropout(x))) * scaling``: besides the two small
matmuls, that is a multiply and an add over the full ``[tokens, out_features]`` output in the
forward pass and again in the backward pass. At small hidden sizes (and on CPU) those
memory-bound passes cost as much as the matmuls. ``lora_linear`` folds them into the GEMMs::

    forward   h  = x A^T                      [tokens, r]
              y  = addmm(x W^T + b, h, B^T, alpha=s)
    backward  gh = s * g B                    [tokens, r]   (the scale lands on the small side)
              dB = s * (h^T g)^T,  dA = gh^T x
              dx = addmm(g W, gh, A)          (one pass over [tokens, in_features])

``fuse_lora(model)`` switches every plain LoRA linear of a peft model to it: one active adapter,
no dropout, no DoRA or other variant, a plain ``nn.Linear`` base. Anything else takes peft's own
forward, so behaviour never changes, only speed; parameter names and the saved adapter are peft's.
Under autocast the fused matmuls run in autocast's dtype, as autocast runs a linear's: input and
weights cast once, gradients cast back to the parameters' dtype (peft's forward casts the input
to the fp32 adapter's dtype and autocast back again, a full ``[tokens, in]`` copy each way).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _LoraLinear(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        scaling: float,
    ) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        h = flat @ lora_a.T
        y = torch.addmm(bias, flat, weight.T) if bias is not None else flat @ weight.T
        y.addmm_(h, lora_b.T, alpha=scaling)
        ctx.save_for_backward(flat, h, weight, lora_a, lora_b)
        ctx.scaling = scaling
        ctx.needs = (weight.requires_grad, bias is not None and bias.requires_grad)
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        flat, h, weight, lora_a, lora_b = ctx.saved_tensors
        s = ctx.scaling
        need_w, need_b = ctx.needs
        g = grad.reshape(-1, grad.shape[-1])
        # Rank-r results of a long [tokens, out] operand, written so that the GEMM streams the
        # long operand along its rows: ``g @ B`` with B stored [out, r], and ``g^T h``, ran 2-4x
        # slower (2 AVX2 EPYC cores, out 768, r 8, 2048 tokens: 0.98 vs 0.45 ms, 1.87 vs 0.47 ms).
        gh = (g @ lora_b.T.contiguous().T).mul_(s)
        d_b = (h.T @ g).T.mul_(s) if ctx.needs_input_grad[4] else None
        d_a = gh.T @ flat if ctx.needs_input_grad[3] else None
        d_x = None
        if ctx.needs_input_grad[0]:
            d_x = (g @ weight).addmm_(gh, lora_a).view(*grad.shape[:-1], flat.shape[-1])
        d_w = g.T @ flat if need_w else None
        d_bias = g.sum(0) if need_b else None
        return d_x, d_w, d_bias, d_a, d_b, None


def lora_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scaling: float,
) -> torch.Tensor:
    """``x W^T + b + scaling * (x A^T) B^T`` with the fused backward above."""
    return _LoraLinear.apply(x, weight, bias, lora_a, lora_b, scaling)


def _peft_linear() -> type:
    from peft.tuners.lora.layer import Linear

    return Linear


class FusedLoraLinear(_peft_linear()):  # type: ignore[misc]
    """peft's LoRA ``Linear`` whose plain case runs through ``lora_linear``."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        plan = self._fused_plan(x, args, kwargs)
        if plan is None:
            return super().forward(x, *args, **kwargs)
        a, b, scaling, low = plan
        base = self.base_layer
        if low is None:
            return lora_linear(x, base.weight, base.bias, a.weight, b.weight, scaling)
        tensors = [t if t is None else t.to(low) for t in (x, base.weight, base.bias)]
        with torch.autocast(x.device.type, enabled=False):  # the casts are done, in autograd
            return lora_linear(*tensors, a.weight.to(low), b.weight.to(low), scaling)

    def _fused_plan(self, x: torch.Tensor, args: tuple, kwargs: dict) -> Any:
        if args or kwargs or self.disable_adapters or self.merged:
            return None
        active = self.active_adapters
        if len(active) != 1 or active[0] not in self.lora_A or active[0] in self.lora_variant:
            return None
        name = active[0]
        base = self.base_layer
        a, b = self.lora_A[name], self.lora_B[name]
        if type(base) is not nn.Linear or not isinstance(self.lora_dropout[name], nn.Identity):
            return None
        if torch.is_autocast_enabled(x.device.type):
            return a, b, self.scaling[name], torch.get_autocast_dtype(x.device.type)
        if not (x.dtype == base.weight.dtype == a.weight.dtype == b.weight.dtype):
            return None
        return a, b, self.scaling[name], None


def fuse_lora(model: nn.Module) -> int:
    """Switch the LoRA linears of a peft ``model`` to ``FusedLoraLinear``; how many were."""
    plain = _peft_linear()
    count = 0
    for module in model.modules():
        if type(module) is plain:
            module.__class__ = FusedLoraLinear  # same state, another forward
            count += 1
    return count
