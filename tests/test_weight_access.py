"""Reading a masked weight: the shortcut past parametrize gives what torch's path gives.

While our weight mask is the only parametrization on a tensor, ``module.weight`` skips
parametrize's two module calls (sc_interp._hooks._fast_property). Expected values here are
computed by hand from the weight and the logits, never through sc-interp; the shortcut must
step aside for anything it does not know: another parametrization stacked before or after
ours, ``parametrize.cached()``, a deep copy of the model, a swapped-in original tensor.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import sc_interp as sc
from sc_interp import _hooks


class Double(nn.Module):
    """Someone else's parametrization: ``w -> 2 w``."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return 2 * w


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _planted(masks: sc.MaskSet) -> dict[str, torch.Tensor]:
    """Set each logit's sign by a fixed pattern; return the 0/1 masks it implies."""
    hard = {}
    for name, p in masks.logits.items():
        keep = (torch.arange(p.numel()).reshape(p.shape) % 3) != 0
        with torch.no_grad():
            p.copy_(torch.where(keep, 1.0, -1.0))
        hard[name] = keep.float()
    return hard


def _count_slow_calls(monkeypatch) -> list[int]:
    calls = [0]
    forward = _hooks.WeightMask.forward

    def counting(self, weight):
        calls[0] += 1
        return forward(self, weight)

    monkeypatch.setattr(_hooks.WeightMask, "forward", counting)
    return calls


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_weight_reads_take_the_shortcut_and_equal_the_hand_masked_weight(
    mode: str, monkeypatch
) -> None:
    net = _net()
    plain = [net[0].weight.detach().clone(), net[2].weight.detach().clone()]
    calls = _count_slow_calls(monkeypatch)
    with sc.attach_masks(
        net, sc.MaskConfig(unit="weight", targets=["0.weight", "2.weight"])
    ) as masks:
        hard = _planted(masks)
        getattr(masks, mode)()
        masks.beta = 1.0
        for (name, keep), w in zip(hard.items(), plain, strict=True):
            module = net[int(name.split(".")[0])]
            expected = w * keep if mode == "eval" else w * torch.sigmoid(masks.logits[name])
            torch.testing.assert_close(module.weight.detach(), expected)
        x = torch.randn(4, 6)
        h = torch.relu(x @ (plain[0] * hard["0.weight"]).T + net[0].bias)
        if mode == "eval":
            with torch.no_grad():
                torch.testing.assert_close(
                    net(x), h @ (plain[1] * hard["2.weight"]).T + net[2].bias
                )
    assert calls[0] == 0  # torch's path (and with it WeightMask.forward) was never taken
    assert type(net[0]) is nn.Linear and net[0].weight is not None


@pytest.mark.parametrize("theirs_first", [False, True])
def test_another_parametrization_on_the_same_weight(theirs_first: bool) -> None:
    net = _net()
    w = net[0].weight.detach().clone()
    if theirs_first:
        parametrize.register_parametrization(net[0], "weight", Double())
    masks = sc.attach_masks(net, sc.MaskConfig(unit="weight", targets=["0.weight"]))
    keep = _planted(masks)["0.weight"]
    masks.eval()
    if not theirs_first:
        parametrize.register_parametrization(net[0], "weight", Double())
    # either order gives 2 * w * keep: the mask and the doubling commute
    torch.testing.assert_close(net[0].weight.detach(), 2 * w * keep)
    masks.detach()
    torch.testing.assert_close(net[0].weight.detach(), 2 * w)  # theirs stays, ours is gone
    parametrize.remove_parametrizations(net[0], "weight", leave_parametrized=False)
    assert type(net[0]) is nn.Linear
    torch.testing.assert_close(net[0].weight.detach(), w)


def test_stacked_after_ours_then_ours_removed_uses_torch_property() -> None:
    net = _net()
    masks = sc.attach_masks(net, sc.MaskConfig(unit="weight", targets=["0.weight"]))
    parametrize.register_parametrization(net[0], "weight", Double())
    prop_before = type(net[0]).__dict__["weight"]
    masks.detach()
    prop_after = type(net[0]).__dict__["weight"]
    assert prop_after is not prop_before  # parametrize's own property is back
    torch.testing.assert_close(
        net[0].weight.detach(), 2 * net[0].parametrizations.weight.original.detach()
    )


def test_cached_parametrizations_and_logit_edits() -> None:
    net = _net()
    w = net[0].weight.detach().clone()
    with sc.attach_masks(net, sc.MaskConfig(unit="weight", targets=["0.weight"])) as masks:
        keep = _planted(masks)["0.weight"]
        masks.train()  # soft masks: every read outside the cache builds a new tensor
        assert net[0].weight is not net[0].weight
        with parametrize.cached():
            first = net[0].weight
            assert net[0].weight is first  # parametrize's cache answered
            torch.testing.assert_close(first.detach(), w * torch.sigmoid(masks.logits["0.weight"]))
        masks.eval()
        torch.testing.assert_close(net[0].weight.detach(), w * keep)
        with torch.no_grad():
            masks.logits["0.weight"].neg_()  # flip every unit: the cache must not serve old masks
        torch.testing.assert_close(net[0].weight.detach(), w * (1 - keep))


def test_deep_copy_and_swapped_original() -> None:
    net = _net()
    w = net[0].weight.detach().clone()
    masks = sc.attach_masks(net, sc.MaskConfig(unit="weight", targets=["0.weight"]))
    keep = _planted(masks)["0.weight"]
    masks.eval()
    clone = copy.deepcopy(net)
    torch.testing.assert_close(clone[0].weight.detach(), w * keep)
    # the original tensor swapped for another (as torch.func.functional_call does)
    other = torch.randn_like(w)
    plist = net[0].parametrizations.weight
    saved = plist._parameters["original"]
    plist._parameters["original"] = nn.Parameter(other, requires_grad=False)
    try:
        torch.testing.assert_close(net[0].weight.detach(), other * keep)
    finally:
        plist._parameters["original"] = saved
    torch.testing.assert_close(net[0].weight.detach(), w * keep)
    masks.detach()
    assert type(net[0]) is nn.Linear
    torch.testing.assert_close(net[0].weight.detach(), w)
