"""The fused masked-weight path computes what plain autograd computes.

``Relaxation.masked_weight`` (fused for continuous and straight-through) must give the
same masked weight, mask and gradients as ``weight * relaxation.train_mask(logits)``
through autograd, with and without an L0 term on the mask, for frozen and trainable
weights and for mixed precision (bf16 weight, float32 logits).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sc_interp as sc
from sc_interp.relax import RELAXATIONS, Relaxation, get_relaxation

# logits are float32 whatever the weight dtype
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-6, torch.bfloat16: 1e-2}


def _reference(r: Relaxation, weight, logits, beta, generator):
    mask = r.train_mask(logits, beta, generator)
    return weight * mask.to(weight.dtype), mask


@pytest.mark.parametrize("relaxation", sorted(RELAXATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("l0", ["none", "sum", "mean", "weighted"])
@pytest.mark.parametrize("weight_grad", [False, True])
@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_fused_equals_autograd(
    relaxation: str, dtype, l0: str, weight_grad: bool, beta: float
) -> None:
    r = get_relaxation(relaxation)
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(7, 5, generator=gen).to(dtype).requires_grad_(weight_grad)
    logits = torch.randn(7, 5, generator=gen).requires_grad_(True)
    upstream = torch.randn(7, 5, generator=gen).to(dtype)
    per_unit = torch.rand(7, 5, generator=gen)
    results = []
    for fn in (r.masked_weight, lambda *a: _reference(r, *a)):
        out, mask = fn(weight, logits, beta, torch.Generator().manual_seed(1))
        loss = (out * upstream).sum().float()
        if l0 == "sum":
            loss = loss + 0.3 * mask.sum()
        elif l0 == "mean":
            loss = loss + 0.3 * mask.mean()
        elif l0 == "weighted":  # a non-constant gradient on the mask
            loss = loss + (per_unit * mask).sum()
        inputs = [logits, weight] if weight_grad else [logits]
        grads = torch.autograd.grad(loss, inputs)
        results.append((out.detach(), mask.detach(), *grads))
    tol = TOLERANCE[dtype]
    for fused, reference in zip(*results, strict=True):
        assert fused.dtype == reference.dtype
        torch.testing.assert_close(fused.float(), reference.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("relaxation", ["continuous", "straight_through"])
def test_mask_only_gradient(relaxation: str) -> None:
    """A loss on the mask alone (no masked-weight gradient) still reaches the logits."""
    r = get_relaxation(relaxation)
    logits = torch.randn(4, 3, requires_grad=True)
    _, mask = r.masked_weight(torch.randn(4, 3), logits, 3.0)
    (grad,) = torch.autograd.grad(mask.sum(), logits)
    soft = torch.sigmoid(3.0 * logits.detach())
    torch.testing.assert_close(grad, 3.0 * soft * (1 - soft))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("uses", ["all", "sum", "weight+sum", "weight+mask", "mask+sum"])
@pytest.mark.parametrize("weight_grad", [False, True])
def test_fused_sum_equals_autograd(dtype, uses: str, weight_grad: bool) -> None:
    """The fused L0 sum (continuous) and its gradient are autograd's, alone or combined."""
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(7, 5, generator=gen).to(dtype).requires_grad_(weight_grad)
    logits = torch.randn(7, 5, generator=gen).requires_grad_(True)
    upstream = torch.randn(7, 5, generator=gen).to(dtype)
    per_unit = torch.rand(7, 5, generator=gen)
    r = get_relaxation("continuous")
    results = []
    for fused in (True, False):
        if fused:
            out, mask, total = r.masked_weight_and_density(weight, logits, 2.5)
            assert total is not None
        else:
            out, mask = _reference(r, weight, logits, 2.5, None)
            total = r.density(logits, 2.5).sum()
        loss = torch.zeros(())
        if uses in ("all", "weight+sum", "weight+mask"):
            loss = loss + (out * upstream).sum().float()
        if uses in ("all", "weight+mask", "mask+sum"):
            loss = loss + (per_unit * mask).sum()
        if uses in ("all", "sum", "weight+sum", "mask+sum"):
            loss = loss + 0.3 * total
        inputs = [logits, weight] if weight_grad else [logits]
        grads = torch.autograd.grad(loss, inputs, allow_unused=True)
        results.append((out.detach(), mask.detach(), total.detach(), *grads))
    tol = TOLERANCE[dtype]
    for fused, reference in zip(*results, strict=True):
        if reference is None:  # the weight's gradient when only the mask is used
            assert fused is None
            continue
        torch.testing.assert_close(fused.float(), reference.float(), atol=tol, rtol=tol)


def _unfused(r: Relaxation):
    return lambda *args, **kwargs: Relaxation.masked_weight(r, *args, **kwargs)


@pytest.mark.parametrize("relaxation", sorted(RELAXATIONS))
def test_training_step_matches_reference(relaxation: str, monkeypatch) -> None:
    """Through attach_masks and MaskSet.step: the fused step's logit gradients are autograd's."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(6, 8), nn.ReLU(), nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(12, 3)
    )
    x = torch.randn(5, 6)
    y = torch.randint(0, 3, (5,))

    def forward(model, inp):
        h = model[1](model[0](inp)).unsqueeze(1)
        return model[4](model[3](model[2](h)))

    grads = []
    for fused in (True, False):
        with sc.attach_masks(net, sc.MaskConfig(unit="weight", relaxation=relaxation), seed=3) as m:
            if not fused:
                monkeypatch.setattr(m.relaxation, "masked_weight", _unfused(m.relaxation))
                monkeypatch.setattr(
                    m.relaxation,
                    "masked_weight_and_density",
                    lambda *a, r=m.relaxation, **k: Relaxation.masked_weight_and_density(
                        r, *a, **k
                    ),
                )
            m.train()
            m.beta = 4.0
            with m.step() as step:
                loss = nn.functional.cross_entropy(forward(net, x), y) + 0.1 * step.l0(True)
            loss.backward()
            grads.append({k: v.grad.clone() for k, v in m.logits.items()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-7, rtol=1e-5)
