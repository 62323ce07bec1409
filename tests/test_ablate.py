"""ablate/isolate: each method replaces removed units with what it claims, and restores."""

from __future__ import annotations

import pytest
import torch
from conftest import make_torch, needs_tl4, token_input, torch_input
from torch import nn

import sc_interp as sc


def _sub(unit: str, masks: dict[str, torch.Tensor]) -> sc.Subnetwork:
    return sc.Subnetwork(
        {k: torch.where(v, 1.0, -1.0) for k, v in masks.items()}, sc.MaskConfig(unit=unit)
    )


def _fc1_units(kept: list[int]) -> torch.Tensor:
    m = torch.zeros(8, dtype=torch.bool)
    m[kept] = True
    return m


def _restored(model: nn.Module, state: dict[str, torch.Tensor], hooks: int) -> bool:
    now = model.state_dict()
    return (
        list(now) == list(state)
        and all(torch.equal(now[k], v) for k, v in state.items())
        and sum(len(m._forward_hooks) for m in model.modules()) == hooks
    )


@pytest.mark.parametrize("method", ["zero", "mean", "resample", "random"])
@pytest.mark.parametrize("mode", [sc.ablate, sc.isolate])
def test_every_method_restores_the_model(method, mode) -> None:
    model, x = make_torch(), torch_input()
    unit = "weight" if method == "random" else "neuron"
    hard = (
        {"fc1.weight": torch.rand(8, 48, generator=torch.Generator().manual_seed(0)) > 0.5}
        if unit == "weight"
        else {"fc1": _fc1_units([0, 1, 2])}
    )
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plain = model(x)
    with pytest.raises(RuntimeError, match="inside"), mode(model, _sub(unit, hard), method, data=x):
        assert not torch.allclose(model(x), plain)
        raise RuntimeError("inside")
    assert _restored(model, state, 0)
    assert torch.equal(model(x), plain)


def test_zero_ablate_equals_manual() -> None:
    model, x = make_torch(), torch_input()
    sub = _sub("neuron", {"fc1": _fc1_units([0, 1, 2])})
    h = torch.relu(model.conv(x)).flatten(1)
    hidden = model.fc1(h)
    ablated = hidden.clone()
    ablated[:, :3] = 0
    kept = hidden.clone()
    kept[:, 3:] = 0
    with sc.ablate(model, sub):
        torch.testing.assert_close(model(x), model.fc2(torch.relu(ablated)))
    with sc.isolate(model, sub):
        torch.testing.assert_close(model(x), model.fc2(torch.relu(kept)))


def test_mean_ablation_uses_dataset_mean() -> None:
    model, x = make_torch(), torch_input()
    data = torch.randn(40, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    mean = model.fc1(torch.relu(model.conv(data)).flatten(1)).mean(0)
    hidden = model.fc1(torch.relu(model.conv(x)).flatten(1))
    hidden[:, :3] = mean[:3]
    with sc.ablate(model, _sub("neuron", {"fc1": _fc1_units([0, 1, 2])}), "mean", data=data):
        torch.testing.assert_close(model(x), model.fc2(torch.relu(hidden)))


def test_resample_ablation_uses_other_inputs_activations() -> None:
    model = make_torch()
    data = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    x = torch_input()
    source = model.fc1(torch.relu(model.conv(data)).flatten(1))
    order = torch.randperm(5, generator=torch.Generator().manual_seed(3))
    hidden = model.fc1(torch.relu(model.conv(x)).flatten(1))
    hidden[:, :3] = source[order][:, :3]
    with sc.ablate(
        model, _sub("neuron", {"fc1": _fc1_units([0, 1, 2])}), "resample", data=data, seed=3
    ):
        torch.testing.assert_close(model(x), model.fc2(torch.relu(hidden)))


def test_random_reinitialises_removed_weights_only() -> None:
    model, x = make_torch(), torch_input()
    keep = torch.rand(8, 48, generator=torch.Generator().manual_seed(0)) > 0.5
    with sc.ablate(model, _sub("weight", {"fc1.weight": keep}), "random", seed=1):
        w = model.fc1.weight.detach().clone()
        first = model(x)
    original = model.fc1.weight
    assert torch.equal(w[~keep], original[~keep])  # ablate keeps the complement of the mask
    assert not torch.equal(w[keep], original[keep])
    bound = 1 / 48**0.5
    assert w[keep].abs().max() <= bound  # the Linear default init range
    with sc.ablate(model, _sub("weight", {"fc1.weight": keep}), "random", seed=1):
        assert torch.equal(model(x), first)  # seeded


@pytest.mark.parametrize(
    ("unit", "method", "match"),
    [
        ("weight", "mean", "does not apply to weight"),
        ("neuron", "random", "does not apply"),
        ("neuron", "median", "allowed: zero"),
    ],
)
def test_bad_method(unit, method, match) -> None:
    model = make_torch()
    hard = (
        {"fc1.weight": torch.ones(8, 48, dtype=torch.bool)}
        if unit == "weight"
        else {"fc1": _fc1_units([0])}
    )
    with (
        pytest.raises(sc.ConfigError, match=match),
        sc.ablate(model, _sub(unit, hard), method, data=torch_input()),
    ):
        pass


def test_mean_needs_data_and_dict_input_is_accepted() -> None:
    model = make_torch()
    with (
        pytest.raises(sc.ConfigError, match="needs data"),
        sc.ablate(model, {"fc1": _fc1_units([0])}, "mean"),
    ):
        pass
    with sc.isolate(model, {"fc1": _fc1_units([0])}) as masks:
        assert masks.config.unit == "neuron"


@needs_tl4
def test_head_mean_ablation_on_bridge(bridge) -> None:
    x = token_input()
    data = torch.randint(0, 20, (30, 6), generator=torch.Generator().manual_seed(2))
    recorded = {}
    hook = bridge.hook_dict["blocks.0.attn.hook_z"]
    handle = hook.register_forward_hook(lambda m, i, o: recorded.setdefault("z", o.detach()))
    bridge(data)
    handle.remove()
    mean = recorded["z"].mean(dim=(0, 1))  # [n_heads * d_head]

    def manual(act, hook):
        act = act.clone()
        act[:, :, 1, :] = mean.view(4, 4)[1]
        return act

    expected = bridge.run_with_hooks(x, fwd_hooks=[("blocks.0.attn.hook_z", manual)])
    heads = {"blocks.0.attn.hook_z": torch.tensor([True, False, True, True])}
    with sc.isolate(bridge, _sub("head", heads), "mean", data=data):
        torch.testing.assert_close(bridge(x), expected, rtol=1e-5, atol=1e-5)


def test_mean_ablation_accepts_a_subtask_as_data() -> None:
    model, x = make_torch(), torch_input()
    data = torch.randn(40, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    task = sc.Subtask(
        "t",
        (data, torch.zeros(40, dtype=torch.long)),
        (x, torch.zeros(5, dtype=torch.long)),
        batch_size=16,
    )
    sub = _sub("neuron", {"fc1": _fc1_units([0, 1, 2])})
    with sc.ablate(model, sub, "mean", data=data):
        expected = model(x)
    with sc.ablate(model, sub, "mean", data=task):
        torch.testing.assert_close(model(x), expected)
