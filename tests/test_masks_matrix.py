"""The attach/detach contract over {torch, TL4 bridge, TL3 HookedTransformer, nnsight} x units.

Each case masks real models built from config and checks behaviour against an independent
reference: the unmasked model, a manual ablation (zeroed weights, or TransformerLens'
own ``run_with_hooks``), and the model's exact state before attaching.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from conftest import (
    make_bridge,
    make_hooked,
    make_torch,
    needs_nnsight,
    needs_tl3,
    needs_tl4,
    token_input,
    torch_input,
)
from torch import nn
from torch.nn.utils import parametrize

import sc_interp as sc


@dataclass
class Case:
    family: str
    unit: str
    build: Callable[[], object]  # the user's model (maybe an nnsight wrapper)
    x: Callable[[], torch.Tensor]
    target: str  # the site masked in the "one unit off" check
    index: tuple[int, ...]  # the unit switched off

    def module(self, model: object) -> nn.Module:
        return getattr(model, "_module", model)  # type: ignore[return-value]

    def run(self, model: object, x: torch.Tensor) -> torch.Tensor:
        if self.family.startswith("nnsight"):
            with model.trace(x):  # type: ignore[attr-defined]
                out = model.output.save()  # type: ignore[attr-defined]
            return out.detach()
        return model(x).detach()  # type: ignore[operator]

    def manual(self, model: object, x: torch.Tensor) -> torch.Tensor:
        """The output with ``index`` at ``target`` switched off, computed without sc-interp."""
        module = self.module(model)
        if self.unit == "weight":
            clone = copy.deepcopy(module)
            site = next(s for s in sc.list_sites(clone, "weight") if s.name == self.target)
            with torch.no_grad():
                getattr(clone.get_submodule(site.module), site.attr)[self.index] = 0.0
            return clone(x).detach()
        if self.family.endswith("torch"):  # plain torch neuron: zero the producing row + bias
            clone = copy.deepcopy(module)
            layer = clone.get_submodule(self.target)
            with torch.no_grad():
                layer.weight[self.index[0]] = 0.0
                layer.bias[self.index[0]] = 0.0
            return clone(x).detach()

        def zero(act: torch.Tensor, hook: object) -> torch.Tensor:
            act = act.clone()
            if self.unit == "neuron":
                act[..., self.index[0]] = 0.0
            else:  # TransformerLens shows hook_z as [batch, pos, head, d_head] in both versions
                act[:, :, self.index[0], :] = 0.0
            return act

        out = module.run_with_hooks(x, fwd_hooks=[(self.target, zero)])  # type: ignore[operator]
        return out.detach()


def _nnsight(build: Callable[[], nn.Module]) -> Callable[[], object]:
    def make() -> object:
        from nnsight import NNsight

        return NNsight(build())

    return make


CASES = [
    pytest.param(Case("torch", "weight", make_torch, torch_input, "fc1.weight", (4, 17)), id="torch-weight"),
    pytest.param(Case("torch", "neuron", make_torch, torch_input, "fc1", (3,)), id="torch-neuron"),
    pytest.param(Case("tl4", "weight", make_bridge, token_input, "blocks.1.mlp.in.weight", (4, 2)), id="tl4-weight", marks=needs_tl4),
    pytest.param(Case("tl4", "neuron", make_bridge, token_input, "blocks.1.mlp.hook_post", (5,)), id="tl4-neuron", marks=needs_tl4),
    pytest.param(Case("tl4", "head", make_bridge, token_input, "blocks.1.attn.hook_z", (2,)), id="tl4-head", marks=needs_tl4),
    pytest.param(Case("tl3", "weight", make_hooked, token_input, "blocks.1.attn.W_V", (1, 3, 2)), id="tl3-weight", marks=[needs_tl3, pytest.mark.tl3]),
    pytest.param(Case("tl3", "neuron", make_hooked, token_input, "blocks.1.mlp.hook_post", (5,)), id="tl3-neuron", marks=[needs_tl3, pytest.mark.tl3]),
    pytest.param(Case("tl3", "head", make_hooked, token_input, "blocks.0.attn.hook_z", (3,)), id="tl3-head", marks=[needs_tl3, pytest.mark.tl3]),
    pytest.param(Case("nnsight-torch", "weight", _nnsight(make_torch), torch_input, "fc2.weight", (1, 4)), id="nnsight-torch-weight", marks=needs_nnsight),
    pytest.param(Case("nnsight-torch", "neuron", _nnsight(make_torch), torch_input, "fc1", (6,)), id="nnsight-torch-neuron", marks=needs_nnsight),
    pytest.param(Case("nnsight-tl4", "neuron", _nnsight(make_bridge), token_input, "blocks.0.mlp.hook_post", (7,)), id="nnsight-tl4-neuron", marks=[needs_nnsight, needs_tl4]),
    pytest.param(Case("nnsight-tl4", "head", _nnsight(make_bridge), token_input, "blocks.0.attn.hook_z", (1,)), id="nnsight-tl4-head", marks=[needs_nnsight, needs_tl4]),
]  # fmt: skip


def _snapshot(module: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "keys": list(module.state_dict().keys()),
        "params": {n: p for n, p in module.named_parameters()},
        "grad": {n: p.requires_grad for n, p in module.named_parameters()},
        "training": {n: m.training for n, m in module.named_modules()},
        "hooks": _hook_count(module),
        "classes": {n: type(m) for n, m in module.named_modules()},
    }


def _hook_count(module: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in module.modules()
    )


def _assert_restored(module: nn.Module, before: dict[str, object]) -> None:
    after = _snapshot(module)
    assert after["keys"] == before["keys"], "state_dict keys or their order changed"
    for k, v in before["state"].items():  # type: ignore[union-attr]
        assert torch.equal(after["state"][k], v), f"{k} changed"  # type: ignore[index]
    assert after["params"].keys() == before["params"].keys()  # type: ignore[union-attr]
    for n, p in before["params"].items():  # type: ignore[union-attr]
        assert after["params"][n] is p, f"parameter object {n} was replaced"  # type: ignore[index]
    assert after["grad"] == before["grad"], "requires_grad flags not restored"
    assert after["training"] == before["training"], "train/eval flags changed"
    assert after["hooks"] == before["hooks"], "hooks left behind"
    assert after["classes"] == before["classes"], "module classes changed"
    assert not any(parametrize.is_parametrized(m) for m in module.modules())


def _cfg(case: Case, init: float = 0.5, targets: list[str] | None = None) -> sc.MaskConfig:
    return sc.MaskConfig(unit=case.unit, init=init, targets=targets)


@pytest.mark.parametrize("case", CASES)
def test_all_on_equals_unmasked(case: Case) -> None:
    model, x = case.build(), case.x()
    reference = case.run(model, x)
    with sc.attach_masks(model, _cfg(case)) as masks:
        masks.eval()
        assert torch.equal(case.run(model, x), reference)


@pytest.mark.parametrize("case", CASES)
def test_one_unit_off_equals_manual_ablation(case: Case) -> None:
    model, x = case.build(), case.x()
    expected = case.manual(model, x)
    unmasked = case.run(model, x)
    assert not torch.allclose(expected, unmasked), "test unit has no effect; pick another"
    with sc.attach_masks(model, _cfg(case, targets=[case.target])) as masks:
        masks.eval()
        with torch.no_grad():
            masks.logits[case.target][case.index] = -1.0  # in-place edit, eval mode
        torch.testing.assert_close(case.run(model, x), expected, rtol=1e-5, atol=1e-6)
        with masks.disabled():
            assert torch.equal(case.run(model, x), unmasked)


@pytest.mark.parametrize("case", CASES)
def test_detach_and_exception_restore_everything(case: Case) -> None:
    model, x = case.build(), case.x()
    module = case.module(model)
    first = next(iter(module.parameters()))
    first.requires_grad_(False)  # a user flag that must survive
    module.train()
    case.run(model, x)  # the TL4 bridge wires its own capture hooks on its first forward
    before = _snapshot(module)
    masks = sc.attach_masks(model, _cfg(case))
    assert all(not p.requires_grad for p in module.parameters())
    case.run(model, x)
    masks.detach()
    masks.detach()  # a second detach is a no-op
    _assert_restored(module, before)
    with pytest.raises(RuntimeError, match="boom"), sc.attach_masks(model, _cfg(case)):
        case.run(model, x)
        raise RuntimeError("boom")
    _assert_restored(module, before)


@pytest.mark.parametrize("case", CASES)
def test_only_mask_logits_get_nonzero_gradients(case: Case) -> None:
    model, x = case.build(), case.x()
    module = case.module(model)
    with sc.attach_masks(model, _cfg(case, init=0.1)) as masks:
        masks.train()
        module.eval()  # the model's mode must not flip the masks' mode
        assert masks.training
        out = module(x)
        out.float().pow(2).mean().backward()
        assert all(p.grad is None for p in module.parameters())
        grads = [p.grad for p in masks.logits.values()]
        assert all(g is not None for g in grads)
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


@pytest.mark.parametrize("case", CASES)
def test_bake_equals_hard_masked_model(case: Case) -> None:
    model, x = case.build(), case.x()
    module = case.module(model)
    case.run(model, x)  # the TL4 bridge wires its own capture hooks on its first forward
    hooks_before = _hook_count(module)
    with sc.attach_masks(model, _cfg(case)) as masks:
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for p in masks.logits.values():
                p.copy_(torch.randn(p.shape, generator=gen))
        masks.eval()
        expected = case.run(model, x)
        baked = sc.bake(model, masks)
    assert _hook_count(baked) == hooks_before
    assert not any(parametrize.is_parametrized(m) for m in baked.modules())
    assert list(baked.state_dict()) == list(module.state_dict())
    torch.testing.assert_close(baked(x).detach(), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(module(x).detach(), expected)  # the original is unmasked again


@pytest.mark.parametrize(
    "case", [c for c in CASES if "tl" in c.values[0].family and "nnsight" not in c.values[0].family]
)
def test_masks_survive_reset_hooks(case: Case) -> None:
    model, x = case.build(), case.x()
    with sc.attach_masks(model, _cfg(case, init=-1.0)) as masks:
        masks.eval()
        off = case.run(model, x)
        model.reset_hooks()  # type: ignore[attr-defined]
        assert torch.equal(case.run(model, x), off)
        with masks.disabled():
            assert not torch.allclose(case.run(model, x), off)
