"""No failure leaves a trace (DESIGN §6): Ctrl-C at a random step, parametrized weights,
several MaskSets on one model, exact mask-dict semantics, bake that refuses what it cannot
reproduce, saved names matched exactly.

The model snapshot (values, identities, requires_grad, train flags, hooks, parametrizations)
comes from tests/fuzz_harness.py; a case passes only if it is bit-identical afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from fuzz_harness import Tiny, snapshot
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrizations

import sc_interp as sc


class Interrupt:
    """Counts calls and raises KeyboardInterrupt on call number ``at`` (1-based)."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def tick(self) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt


def data(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=gen), torch.randint(0, 4, (n,), generator=gen)


def interrupting_loss(stop: Interrupt) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        stop.tick()
        return nn.functional.cross_entropy(logits, labels)

    return loss


def interrupting_data(stop: Interrupt, n: int = 32) -> Callable[[], Iterator[Any]]:
    x, y = data(n)

    def batches() -> Iterator[Any]:
        for i in range(0, n, 8):
            stop.tick()
            yield x[i : i + 8], y[i : i + 8]

    return batches


def assert_untouched(model: Any, before: Any) -> None:
    diff = before.diff(snapshot(model))
    assert diff is None, diff
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


CTRL_C = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)


@CTRL_C
@given(at=st.integers(1, 40), unit=st.sampled_from(["neuron", "weight"]), where=st.booleans())
def test_ctrl_c_during_train_masks_leaves_the_model_bit_identical(at, unit, where) -> None:
    model = Tiny()
    model.fc1.weight.requires_grad_(False)  # a user's own mix of frozen and trainable weights
    before = snapshot(model)
    stop = Interrupt(at)
    x, y = data()
    if where:  # in the user's loss
        task = sc.Subtask("t", (x, y), (x, y), batch_size=8, loss=interrupting_loss(stop))
    else:  # in the user's data iterator
        task = sc.Subtask("t", interrupting_data(stop), (x, y), batch_size=8)
    with pytest.raises(KeyboardInterrupt):
        sc.train_masks(
            model, sc.MaskConfig(unit=unit), task, sc.TrainConfig(epochs=20, progress=False)
        )
    assert stop.calls == at
    assert_untouched(model, before)


@CTRL_C
@given(
    at=st.integers(1, 4),
    method=st.sampled_from(["zero", "mean", "resample"]),
    keep=st.booleans(),
    in_data=st.booleans(),
)
def test_ctrl_c_during_ablate_and_isolate_leaves_the_model_bit_identical(
    at, method, keep, in_data
) -> None:
    model = Tiny()
    before = snapshot(model)
    sub = sc.Subnetwork({"fc1": torch.linspace(-1, 1, 8)}, sc.MaskConfig(unit="neuron"))
    stop = Interrupt(at)
    x, y = data()
    context = sc.isolate if keep else sc.ablate
    with pytest.raises(KeyboardInterrupt):
        if in_data and method != "zero":  # while reading the data for the replacements
            task = sc.Subtask("t", interrupting_data(stop), (x, y), batch_size=8)
            with context(model, sub, method, data=task):
                pass
        else:  # while the user evaluates inside the block
            task = sc.Subtask("t", (x, y), interrupting_data(stop), batch_size=8)
            with context(model, sub, method, data=x):
                sc.evaluate(model, task)
    assert_untouched(model, before)


@settings(max_examples=4, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate])
@given(at=st.sampled_from([1, 7, 30, 90]))
def test_ctrl_c_during_test_compositionality_leaves_the_model_bit_identical(at) -> None:
    model = Tiny()
    before = snapshot(model)
    stop = Interrupt(at)
    x, y = data()
    a = sc.Subtask("a", (x, y), (x, y), batch_size=16, loss=interrupting_loss(stop))
    b = sc.Subtask("b", (x, y), (x, y), batch_size=16)
    with pytest.raises(KeyboardInterrupt):
        sc.test_compositionality(
            model, a, b, mask=sc.MaskConfig(unit="neuron"), seeds=[0],
            train=sc.TrainConfig(epochs=40, progress=False), n_random=10, n_boot=20,
        )  # fmt: skip
    assert stop.calls == at
    assert_untouched(model, before)


# --------------------------------------------------------------- parametrized weights
def weight_normed() -> nn.Module:
    torch.manual_seed(0)
    model = Tiny()
    parametrizations.weight_norm(model.fc1)
    return model


def test_weight_norm_model_can_be_masked_exactly_and_restored() -> None:
    model, (x, _) = weight_normed().eval(), data()
    before, out = snapshot(model), model(x)
    names = {s.name for s in sc.list_sites(model, "weight")}
    assert "fc1.weight" in names and not any("original" in n for n in names)
    with sc.attach_masks(model, sc.MaskConfig(unit="weight", init=5.0)) as masks:
        masks.eval()
        assert torch.allclose(model(x), out, atol=1e-6)  # all on: the same model
        hard = {n: torch.ones(s.shape, dtype=torch.bool) for n, s in masks.sites.items()}
    assert_untouched(model, before)
    w = model.fc1.weight.detach().clone()
    hard["fc1.weight"][0, 0] = False
    # one weight off equals the weight-normed weight with that entry zeroed, by hand
    sub = sc.Subnetwork.from_masks(model, hard)
    with sc.isolate(model, sub):
        got = model(x)
    by_hand = Tiny().eval()
    by_hand.load_state_dict(
        {k: v for k, v in model.state_dict().items() if "fc1" not in k}, strict=False
    )
    w[0, 0] = 0
    by_hand.fc1.weight.data.copy_(w)
    by_hand.fc1.bias.data.copy_(model.fc1.bias)
    assert torch.allclose(got, by_hand(x), atol=1e-6)


def test_several_masksets_coexist_on_one_model() -> None:
    model, (x, y) = weight_normed().eval(), data()
    out = model(x)
    with sc.attach_masks(
        model, sc.MaskConfig(unit="weight", targets=["fc2.weight"], init=5.0)
    ) as w:
        w.eval()
        # sites are still found with our own parametrization in place
        assert {s.name for s in sc.list_sites(model, "neuron")} >= {"fc1", "fc2"}
        with sc.attach_masks(model, sc.MaskConfig(unit="neuron", init=5.0)) as n:
            n.eval()
            assert torch.allclose(model(x), out, atol=1e-6)
            with pytest.raises(sc.AttachError, match="already carry"):
                sc.attach_masks(model, sc.MaskConfig(unit="neuron", targets=["fc1"]))
        sc.evaluate(model, sc.Subtask("t", (x, y), (x, y)))
        keep = torch.ones(8, dtype=torch.bool)
        keep[:4] = False
        with sc.isolate(model, {"fc1": keep}):  # an ablation on top of attached weight masks
            assert not torch.allclose(model(x), out)
        assert torch.allclose(model(x), out, atol=1e-6)
    assert torch.equal(model(x), out)


# -------------------------------------------------------------- mask-dict semantics
def test_mask_dicts_must_be_boolean_and_match_the_site() -> None:
    model = Tiny()
    with pytest.raises(sc.AttachError, match=r"shape \(1,\).*\(8,\)"):  # not broadcast
        with sc.ablate(model, {"fc1": torch.tensor([False])}):
            pass
    with pytest.raises(sc.ConfigError, match="bool"):  # logits go through a Subnetwork
        with sc.ablate(model, {"fc1": torch.randn(8)}):
            pass
    keep = torch.zeros(8, dtype=torch.bool)
    keep[:3] = True
    x = data()[0]
    with sc.isolate(model, {"fc1": keep}):
        got = model.eval()(x)
    by_hand = model.fc1(x) * keep
    assert torch.allclose(got, model.fc2(torch.relu(model.norm(by_hand))))


def test_bake_reproduces_or_refuses_replacements() -> None:
    model, x = Tiny().eval(), data()[0]
    sub = sc.Subnetwork({"fc1": torch.linspace(-1, 1, 8)}, sc.MaskConfig(unit="neuron"))
    for method in ("mean", "resample"):
        with sc.ablate(model, sub, method, data=x) as masks:
            with pytest.raises(sc.ConfigError, match="mean/resample"):
                sc.bake(model, masks)
    # random weight ablation is a weight edit: the baked copy equals the ablated model
    logits = {"fc1.weight": torch.randn(8, 6), "fc2.weight": torch.randn(4, 8)}
    wsub = sc.Subnetwork(logits, sc.MaskConfig(unit="weight"))
    with sc.ablate(model, wsub, "random", seed=3) as masks:
        ablated = model(x)
        baked = sc.bake(model, masks)
    assert torch.allclose(baked(x), ablated, atol=1e-6)
    assert not torch.allclose(baked(x), model(x))


def test_saved_names_are_matched_exactly_not_as_globs(tmp_path) -> None:
    class Glob(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleDict({"layer[0]": nn.Linear(4, 4), "layer0": nn.Linear(4, 4)})

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layers["layer0"](self.layers["layer[0]"](x))

    model = Glob()
    sub = sc.Subnetwork(
        {"layers.layer[0]": torch.tensor([1.0, -1.0, 1.0, -1.0])}, sc.MaskConfig(unit="neuron")
    )
    path = sub.save(tmp_path / "glob.safetensors")
    loaded = sc.Subnetwork.load(path)
    with loaded.attach(model) as masks:
        assert set(masks.sites) == {"layers.layer[0]"}
