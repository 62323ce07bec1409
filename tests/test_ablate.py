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


def _donor_of_each_row(
    model: nn.Module, x: torch.Tensor, data: torch.Tensor, fc1_out: torch.Tensor
) -> list[int]:
    """For every row of the masked fc1 output, the one data row that supplied units 0-2."""
    source = model.fc1(torch.relu(model.conv(data)).flatten(1)).detach()
    hidden = model.fc1(torch.relu(model.conv(x)).flatten(1)).detach()
    torch.testing.assert_close(fc1_out[:, 3:], hidden[:, 3:])  # kept units are the input's own
    donors = []
    for i in range(len(x)):
        fits = [j for j in range(len(data)) if torch.equal(fc1_out[i, :3], source[j, :3])]
        assert len(fits) == 1, f"row {i}: {len(fits)} donors fit"
        donors.append(fits[0])
    return donors


def test_resample_takes_each_rows_units_from_one_other_input() -> None:
    model = make_torch()
    data = torch.randn(12, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    x = data[:6]  # the evaluated inputs are among the donors: none may be its own donor
    sub = _sub("neuron", {"fc1": _fc1_units([0, 1, 2])})  # ablated: units 0-2 resampled
    seen: list[torch.Tensor] = []
    with sc.ablate(model, sub, "resample", data=data, seed=3):
        handle = model.fc1.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
        first = model(x).detach()
        model(x)
        handle.remove()
    donors_first = _donor_of_each_row(model, x, data, seen[0])
    donors_second = _donor_of_each_row(model, x, data, seen[1])
    assert all(d != i for i, d in enumerate(donors_first))
    assert all(d != i for i, d in enumerate(donors_second))
    assert donors_first != donors_second  # fresh donors for every batch
    with sc.ablate(model, sub, "resample", data=data, seed=3):
        assert torch.equal(model(x), first)  # seeded: the same first draw again


def test_resample_shares_one_donor_per_example_across_sites() -> None:
    """Two masked sites of one example take their activations from the same donor input."""
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    with torch.no_grad():  # identity layers: the second site's input is the first's output
        for layer in model:
            layer.weight.copy_(torch.eye(4))
            layer.bias.zero_()
    data = torch.arange(40.0).view(10, 4)
    x = data[:5]
    hard = {
        "0": torch.tensor([True, True, False, False]),
        "1": torch.tensor([True, False, True, True]),
    }
    with sc.ablate(model, hard, "resample", data=data, seed=0):
        out = model(x)
    # units 0-1 of layer 0 and unit 0 of layer 1 are resampled: from the same donor row
    for row in out:
        donor = int(row[0].item()) // 4
        assert row[0] == data[donor, 0] and row[1] == data[donor, 1]


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


def test_masks_from_another_model_are_refused_with_both_fingerprints() -> None:
    small, other = make_torch(), nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    task_x = torch.randn(16, 4)
    task = sc.Subtask(
        "t",
        (task_x, torch.zeros(16, dtype=torch.long)),
        (task_x, torch.zeros(16, dtype=torch.long)),
        chance=0.5,
    )
    sub = sc.train_masks(
        other,
        sc.MaskConfig(unit="neuron", targets=["0"]),
        task,
        sc.TrainConfig(epochs=1, progress=False),
    )
    state = {k: v.clone() for k, v in small.state_dict().items()}
    flags = [p.requires_grad for p in small.parameters()]
    for use in (lambda: sc.ablate(small, sub).__enter__(), lambda: sub.attach(small)):
        with pytest.raises(sc.AttachError, match="fingerprint") as info:
            use()
        assert sub.fingerprint in str(info.value)
        assert _restored(small, state, hooks=0)
        assert [p.requires_grad for p in small.parameters()] == flags


def test_wrong_shapes_and_non_bool_dicts_are_refused() -> None:
    model = make_torch()
    with pytest.raises(sc.AttachError, match=r"shape \(3,\), the model's site has shape \(8,\)"):
        with sc.ablate(model, {"fc1": torch.ones(3, dtype=torch.bool)}):
            pass
    with pytest.raises(sc.ConfigError, match="boolean masks"):
        with sc.ablate(model, {"fc1": torch.ones(8)}):
            pass
    unlearned = sc.Subnetwork({"fc1": torch.ones(5)}, sc.MaskConfig(unit="neuron"))
    with pytest.raises(sc.AttachError, match=r"shape \(5,\)"):
        unlearned.attach(model)
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("unit", ["neuron", "weight"])
def test_ablating_an_attached_maskset(unit) -> None:
    model, x = make_torch(), torch_input()
    target = "fc1" if unit == "neuron" else "fc1.weight"
    with sc.attach_masks(model, sc.MaskConfig(unit=unit, targets=[target])) as masks:
        masks.eval()
        with torch.no_grad():
            masks.logits[target].view(-1)[::2] = -1.0  # drop every other unit / weight
        hard = masks.hard()[target]
        masked = model(x)
        with sc.ablate(model, masks):
            ablated = model(x)
        assert torch.equal(model(x), masked)  # the user's masks act again afterwards
    with sc.ablate(model, {target: hard}):
        expected = model(x)
    torch.testing.assert_close(ablated, expected)


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


@needs_tl4
def test_ablating_an_attached_weight_maskset_on_a_bridge(bridge) -> None:
    x = token_input()
    target = "blocks.0.attn.q.weight"
    with sc.attach_masks(bridge, sc.MaskConfig(unit="weight", targets=[target])) as masks:
        masks.eval()
        with torch.no_grad():
            masks.logits[target].view(-1)[::3] = -1.0
        assert next(s.name for s in sc.list_sites(bridge, "weight")) == target  # seen through
        hard = masks.hard()[target]
        with sc.ablate(bridge, masks):
            ablated = bridge(x)
    with sc.ablate(bridge, {target: hard}):
        torch.testing.assert_close(ablated, bridge(x))
