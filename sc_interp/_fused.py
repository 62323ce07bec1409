"""Fused masked-weight computations for weight masks in training.

A weight mask's training step multiplies every masked weight by ``sigmoid(beta * s)``.
Written with plain torch ops, autograd runs about nine elementwise passes over each weight
per step (scale, sigmoid, multiply and the L0 sum forward; multiply, accumulate the L0
gradient, sigmoid backward and the scale backward). These functions do the same maths in
six: forward ``t = s * beta; t.sigmoid_(); out = w * t``, backward one ``addcmul`` (the
masked-weight gradient and the L0 gradient together, already scaled by ``beta``) and one
in-place ``sigmoid_backward``. The base weight is frozen, so no gradient is computed for
it unless it asks for one.

Each function returns ``(masked_weight, mask)``; the mask is differentiable, so an L0
penalty that sums it shares the same backward pass. In a training step
(:meth:`sc_interp.MaskSet.step`) :func:`continuous_masked_weight_and_sum` also returns the
mask's sum, so the L0 penalty needs no autograd node of its own and no backward pass over
the mask.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor


def _scalar_gradient(grad: Tensor | None) -> Tensor | None:
    """``grad`` as a 0-d tensor when it is one value broadcast everywhere (an L0 sum's)."""
    if grad is not None and all(st == 0 for st in grad.stride()):
        return grad[(0,) * grad.dim()]  # a view: no pass over the broadcast
    return None


def _soft(logits: Tensor, beta: float) -> Tensor:
    """``sigmoid(beta * logits)`` in one pass when ``beta == 1``, else two."""
    if beta == 1.0:
        return torch.sigmoid(logits)
    return torch.mul(logits, beta).sigmoid_()


def _logit_gradient(
    weight: Tensor, logits: Tensor, soft: Tensor, beta: float, grad_out: Tensor | None,
    grad_mask: Tensor | None, grad_total: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """``beta * soft * (1 - soft) * (grad_out * weight + grad_mask + grad_total)``, two passes.

    ``grad_total`` is the gradient of the mask's sum (a 0-d tensor), as the fused L0 sum of
    :func:`continuous_masked_weight_and_sum` gets it.
    """
    scalar = _scalar_gradient(grad_mask)
    if scalar is not None:  # the L0 sum's constant gradient, reached through the mask
        grad_total = scalar if grad_total is None else grad_total + scalar
        grad_mask = None
    if grad_out is None and grad_mask is None:
        assert grad_total is not None
        acc = torch.zeros_like(soft).add_(grad_total * beta)
    elif grad_out is None:
        assert grad_mask is not None
        acc = grad_mask.to(logits.dtype) * beta
        if grad_total is not None:
            acc = acc.add_(grad_total * beta)
    elif weight.dtype == logits.dtype and grad_mask is None:
        # one pass: beta * (grad_out * weight) + beta * (the L0 sum's constant gradient)
        if grad_total is not None:
            base = (grad_total * beta).to(dtype=logits.dtype, device=logits.device)
        else:
            base = torch.zeros((), dtype=logits.dtype, device=logits.device)
        acc = torch.addcmul(base, grad_out, weight, value=beta)
    else:
        # mixed precision or an unusual mask gradient: as autograd would do it
        acc = torch.mul(grad_out, weight).to(logits.dtype)
        if grad_mask is not None:
            acc = acc.add_(grad_mask)
        if grad_total is not None:
            acc = acc.add_(grad_total)
        acc = acc.mul_(beta)
    return torch.ops.aten.sigmoid_backward.grad_input(acc, soft, grad_input=acc)


def _continuous_forward(
    ctx: Any, weight: Tensor, logits: Tensor, beta: float
) -> tuple[Tensor, Tensor]:
    """The forward both continuous functions share: ``(w * soft, soft)``, inputs saved."""
    soft = _soft(logits, beta)
    out = weight * (soft if soft.dtype == weight.dtype else soft.to(weight.dtype))
    ctx.beta = beta
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(weight, logits, soft)
    return out, soft


def _continuous_backward(
    ctx: Any, grad_out: Tensor | None, grad_mask: Tensor | None, grad_total: Tensor | None
) -> tuple[Tensor | None, Tensor | None, None]:
    """Gradients for ``(weight, logits, beta)`` from those of ``(out, mask[, sum])``."""
    weight, logits, soft = ctx.saved_tensors
    grad_weight = grad_logits = None
    if ctx.needs_input_grad[0] and grad_out is not None:
        grad_weight = grad_out * soft.to(weight.dtype)
    if ctx.needs_input_grad[1] and any(g is not None for g in (grad_out, grad_mask, grad_total)):
        grad_logits = _logit_gradient(
            weight, logits, soft, ctx.beta, grad_out, grad_mask, grad_total
        )
    return grad_weight, grad_logits, None


class _ContinuousMaskedWeight(torch.autograd.Function):
    """``(w * sigmoid(beta * s), sigmoid(beta * s))`` with a fused backward."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, logits: Tensor, beta: float) -> tuple[Tensor, Tensor]:
        return _continuous_forward(ctx, weight, logits, beta)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor | None, grad_mask: Tensor | None) -> Any:
        return _continuous_backward(ctx, grad_out, grad_mask, None)


class _ContinuousMaskedWeightAndSum(torch.autograd.Function):
    """``(w * sigmoid(beta * s), sigmoid(beta * s), sum(sigmoid(beta * s)))``, fused.

    The sum's gradient joins the logits' gradient pass: an L0 penalty costs no backward
    pass of its own.
    """

    @staticmethod
    def forward(
        ctx: Any, weight: Tensor, logits: Tensor, beta: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        out, soft = _continuous_forward(ctx, weight, logits, beta)
        return out, soft, soft.sum()

    @staticmethod
    def backward(
        ctx: Any, grad_out: Tensor | None, grad_mask: Tensor | None, grad_total: Tensor | None
    ) -> Any:
        return _continuous_backward(ctx, grad_out, grad_mask, grad_total)


class _StraightThroughMaskedWeight(torch.autograd.Function):
    """``(w * (s > 0), s > 0)`` forward; the gradient of ``sigmoid(beta * s)`` backward."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, logits: Tensor, beta: float) -> tuple[Tensor, Tensor]:
        hard = (logits > 0).to(logits.dtype)
        out = weight * (hard if hard.dtype == weight.dtype else hard.to(weight.dtype))
        ctx.beta = beta
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(weight, logits, hard)
        return out, hard

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor | None, grad_mask: Tensor | None) -> Any:
        weight, logits, hard = ctx.saved_tensors
        grad_weight = grad_logits = None
        if ctx.needs_input_grad[0] and grad_out is not None:
            grad_weight = grad_out * hard.to(weight.dtype)
        if ctx.needs_input_grad[1] and (grad_out is not None or grad_mask is not None):
            soft = _soft(logits, ctx.beta)  # recomputed here: saves memory in the forward
            grad_logits = _logit_gradient(weight, logits, soft, ctx.beta, grad_out, grad_mask)
        return grad_weight, grad_logits, None


def continuous_masked_weight(
    weight: Float[Tensor, "*w"], logits: Float[Tensor, "*w"], beta: float
) -> tuple[Float[Tensor, "*w"], Float[Tensor, "*w"]]:
    """``(weight * sigmoid(beta * logits), sigmoid(beta * logits))``, fused."""
    out, mask = _ContinuousMaskedWeight.apply(weight, logits, float(beta))  # type: ignore[misc]
    return out, mask


def continuous_masked_weight_and_sum(
    weight: Float[Tensor, "*w"], logits: Float[Tensor, "*w"], beta: float
) -> tuple[Float[Tensor, "*w"], Float[Tensor, "*w"], Float[Tensor, ""]]:
    """:func:`continuous_masked_weight` plus the mask's sum (the L0 penalty), fused."""
    out, mask, total = _ContinuousMaskedWeightAndSum.apply(weight, logits, float(beta))  # type: ignore[misc]
    return out, mask, total


def straight_through_masked_weight(
    weight: Float[Tensor, "*w"], logits: Float[Tensor, "*w"], beta: float
) -> tuple[Float[Tensor, "*w"], Float[Tensor, "*w"]]:
    """``(weight * (logits > 0), logits > 0)`` with the sigmoid's gradient, fused."""
    out, mask = _StraightThroughMaskedWeight.apply(weight, logits, float(beta))  # type: ignore[misc]
    return out, mask
