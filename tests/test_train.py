"""Mask training: known-answer recovery of planted circuits, determinism, history, errors."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import needs_tl4
from torch import nn

import sc_interp as sc
from sc_interp.toy import A_UNITS, planted_bridge, planted_mlp, planted_tasks

FAST = sc.TrainConfig(epochs=20, lr=0.05, l0=1e-2, l0_mean=False, progress=False)


def iou(learned: torch.Tensor, planted: torch.Tensor) -> float:
    learned, planted = learned.bool(), planted.bool()
    return float((learned & planted).sum()) / max(float((learned | planted).sum()), 1.0)


@pytest.fixture(scope="module")
def mlp_and_tasks():
    return planted_mlp(), *planted_tasks()


@pytest.fixture(scope="module")
def neuron_sub(mlp_and_tasks) -> sc.Subnetwork:
    net, task_a, _ = mlp_and_tasks
    return sc.train_masks(net, sc.MaskConfig(unit="neuron", targets=["0"]), task_a, FAST)


def test_neuron_mask_recovers_planted_units(mlp_and_tasks, neuron_sub) -> None:
    net, task_a, task_b = mlp_and_tasks
    planted = torch.zeros(16, dtype=torch.bool)
    planted[list(A_UNITS)] = True
    assert iou(neuron_sub.masks["0"], planted) >= 0.9
    with sc.ablate(net, neuron_sub):
        assert sc.evaluate(net, task_a).accuracy < 0.6  # A breaks (chance 0.5)
        assert sc.evaluate(net, task_b).accuracy > 0.95  # B survives
    with sc.isolate(net, neuron_sub):
        assert sc.evaluate(net, task_a).accuracy > 0.95
        assert sc.evaluate(net, task_b).accuracy < 0.6


def test_weight_mask_recovers_planted_weights(mlp_and_tasks) -> None:
    net, task_a, _ = mlp_and_tasks
    sub = sc.train_masks(net, sc.MaskConfig(unit="weight"), task_a, FAST)
    planted_first = torch.zeros(16, 8, dtype=torch.bool)
    planted_first[list(A_UNITS)] = net[0].weight[list(A_UNITS)] != 0
    planted_second = torch.zeros(4, 16, dtype=torch.bool)
    planted_second[:2, list(A_UNITS)] = True
    assert iou(sub.masks["0.weight"], planted_first) >= 0.9
    assert iou(sub.masks["2.weight"], planted_second) >= 0.9


def test_history_density_falls_and_accuracy_holds(neuron_sub) -> None:
    history = neuron_sub.history
    assert list(history.columns[:4]) == ["epoch", "loss", "task_loss", "train_accuracy"]
    assert history["density"].iloc[0] == 1.0 > history["density"].iloc[-1]
    assert history["soft_density"].iloc[-1] < history["soft_density"].iloc[0]
    full = history["test_accuracy"].iloc[0]  # epoch 0: every unit kept = the full model
    assert history["test_accuracy"].iloc[-1] >= full - 0.05
    assert history["beta"].iloc[-1] == pytest.approx(200.0)
    assert history["beta"].is_monotonic_increasing


def test_same_seed_same_masks_and_model_untouched(mlp_and_tasks) -> None:
    net, task_a, _ = mlp_and_tasks
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = sc.MaskConfig(unit="weight", relaxation="hard_concrete")
    train = sc.TrainConfig(epochs=3, lr=0.05, l0=1e-2, l0_mean=False, progress=False, seed=7)
    one = sc.train_masks(net, cfg, task_a, train)
    two = sc.train_masks(net, cfg, task_a, train)
    for name in one.logits:
        assert torch.equal(one.logits[name], two.logits[name])
    other = sc.train_masks(
        net,
        cfg,
        task_a,
        sc.TrainConfig(epochs=3, lr=0.05, l0=1e-2, l0_mean=False, progress=False, seed=8),
    )
    assert any(not torch.equal(one.logits[k], other.logits[k]) for k in one.logits)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())
    assert not net.training or all(m.training for m in net.modules())


@pytest.mark.parametrize(
    ("relaxation", "lr"),
    # straight-through needs logits well above 0 at the start and a smaller step: its forward
    # mask is already hard, so a unit gives no gradient signal until it has been switched off
    [("hard_concrete", 0.05), ("straight_through", 0.01)],
)
def test_other_relaxations_also_find_the_circuit(mlp_and_tasks, relaxation: str, lr: float) -> None:
    net, task_a, _ = mlp_and_tasks
    cfg = sc.MaskConfig(unit="neuron", targets=["0"], relaxation=relaxation, init=1.0)
    sub = sc.train_masks(
        net,
        cfg,
        task_a,
        sc.TrainConfig(
            epochs=30,
            lr=lr,
            l0=2e-2 if relaxation == "hard_concrete" else 1e-2,
            l0_mean=False,
            progress=False,
        ),
    )
    planted = torch.zeros(16, dtype=torch.bool)
    planted[list(A_UNITS)] = True
    assert iou(sub.masks["0"], planted) >= 0.75
    with sc.isolate(net, sub):
        assert sc.evaluate(net, task_a).accuracy > 0.9


def test_batchnorm_statistics_stay_frozen() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    net.train()
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    stats = net[1].running_mean.clone()
    sc.train_masks(
        net,
        sc.MaskConfig(unit="neuron"),
        sc.Subtask("t", (x, y), (x, y), chance=0.5),
        sc.TrainConfig(epochs=2, progress=False),
    )
    assert torch.equal(net[1].running_mean, stats)
    assert net.training and net[1].training  # flags restored


def test_nan_inputs_are_refused_when_the_subtask_is_made() -> None:
    x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
    x[3, 0] = float("nan")
    with pytest.raises(sc.DataError, match="1 of 16 inputs contain NaN"):
        sc.Subtask("nan", (x, y), (x, y), chance=0.5)


def test_nan_loss_is_a_clear_error_and_model_restored() -> None:
    net = planted_mlp()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grads = [p.requires_grad for p in net.parameters()]
    x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))

    def nan_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return logits.sum() * float("nan")

    task = sc.Subtask("nan", (x, y), (x, y), chance=0.5, readout=lambda o: o[:, :2], loss=nan_loss)
    with pytest.raises(sc.TrainingError, match="lower lr"):
        sc.train_masks(
            net, sc.MaskConfig(unit="neuron"), task, sc.TrainConfig(epochs=1, progress=False)
        )
    assert not any(m._forward_hooks for m in net.modules())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert [p.requires_grad for p in net.parameters()] == grads and net.training


def test_subnetwork_save_load(tmp_path, neuron_sub) -> None:
    path = neuron_sub.save(tmp_path / "sub.safetensors")
    loaded = sc.Subnetwork.load(path)
    assert torch.equal(loaded.masks["0"], neuron_sub.masks["0"])
    assert loaded.config == neuron_sub.config and loaded.task == "A"
    assert loaded.history.equals(neuron_sub.history)  # NaN-aware
    assert "Subnetwork(task='A', unit='neuron'" in repr(loaded) and "kept 8/16" in repr(loaded)
    with pytest.raises(sc.MaskFileError):
        sc.Subnetwork.load(tmp_path / "nope.safetensors")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train": (torch.zeros(0, 8), torch.zeros(0, dtype=torch.long))}, "empty"),
        ({"train": (torch.zeros(4, 8), torch.zeros(3, dtype=torch.long))}, "4 inputs but 3 labels"),
        ({"train": (torch.zeros(4, 8), torch.zeros(4))}, "integer"),
        ({"chance": 1.5}, r"chance=1.5: must be a finite number > 0 and < 1"),
        ({"train": "data.csv"}, "unsupported data"),
    ],
)
def test_subtask_validation(kwargs, match) -> None:
    x, y = torch.zeros(4, 8), torch.zeros(4, dtype=torch.long)
    args = {"name": "t", "train": (x, y), "test": (x, y), "chance": 0.5, **kwargs}
    with pytest.raises(sc.DataError, match=match):
        sc.Subtask(**args)


def test_labels_out_of_range() -> None:
    net = planted_mlp()
    x, y = torch.zeros(4, 8), torch.full((4,), 7)
    task = sc.Subtask("t", (x, y), (x, y), chance=0.5)
    with pytest.raises(sc.DataError, match=r"labels must lie in \[0, 4\)"):
        sc.evaluate(net, task)


def test_evaluate_floors_at_chance() -> None:
    net = planted_mlp()
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    wrong = 1 - (x[:, :4].sum(1) > 0).long()
    ev = sc.evaluate(
        net, sc.Subtask("t", (x, wrong), (x, wrong), chance=0.5, readout=lambda o: o[:, :2])
    )
    assert ev.accuracy == 0.0 and ev.floored == 0.5 and ev.n == 64


def test_data_forms_dataset_and_callable(mlp_and_tasks) -> None:
    net, task_a, _ = mlp_and_tasks
    x, y = task_a.test
    ds = torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(ds, batch_size=100)
    for data in (ds, loader, lambda: [(x[:200], y[:200]), (x[200:], y[200:])]):
        task = sc.Subtask("A", data, data, chance=0.5, readout=task_a.readout)
        assert sc.evaluate(net, task).accuracy == pytest.approx(sc.evaluate(net, task_a).accuracy)


@needs_tl4
@pytest.mark.parametrize(("unit", "planted"), [("head", [0]), ("neuron", list(A_UNITS))])
def test_bridge_mask_recovers_planted_heads_and_neurons(unit: str, planted: list[int]) -> None:
    model, task_a, task_b = planted_bridge()
    assert sc.evaluate(model, task_a).accuracy == 1.0 and sc.evaluate(model, task_b).accuracy == 1.0
    sub = sc.train_masks(
        model,
        sc.MaskConfig(unit=unit),
        task_a,
        sc.TrainConfig(epochs=12, lr=0.05, l0=1e-2, l0_mean=False, progress=False),
    )
    (mask,) = sub.masks.values()
    expected = torch.zeros_like(mask)
    expected[planted] = True
    assert iou(mask, expected) >= 0.9
    with sc.ablate(model, sub):
        assert sc.evaluate(model, task_a).accuracy < 0.6
        assert sc.evaluate(model, task_b).accuracy > 0.95


def test_train_and_evaluate_through_nnsight(mlp_and_tasks) -> None:
    nnsight = pytest.importorskip("nnsight")
    net, task_a, task_b = mlp_and_tasks
    wrapped = nnsight.NNsight(net)
    assert sc.evaluate(wrapped, task_a) == sc.evaluate(net, task_a)
    sub = sc.train_masks(wrapped, sc.MaskConfig(unit="neuron", targets=["0"]), task_a, FAST)
    assert sub.masks["0"][:8].all() and not sub.masks["0"][8:].any()
    with sc.ablate(wrapped, sub):
        assert sc.evaluate(wrapped, task_b).accuracy > 0.95


def test_default_l0_is_the_mean_and_prunes_the_planted_task() -> None:
    default = sc.TrainConfig()
    assert (default.l0, default.l0_mean) == (0.1, True)
    net, (task_a, _) = planted_mlp(), planted_tasks()
    sub = sc.train_masks(
        net, sc.MaskConfig(unit="neuron", targets=["0"]), task_a, sc.TrainConfig(progress=False)
    )
    planted = torch.zeros(16, dtype=torch.bool)
    planted[list(A_UNITS)] = True
    assert torch.equal(sub.masks["0"], planted)  # exactly A's 8 units, out of 16
    weights = sc.train_masks(
        net, sc.MaskConfig(unit="weight"), task_a, sc.TrainConfig(progress=False)
    )
    assert weights.density() < 0.2  # A's circuit is 8 + 8 of 128 + 64 weights
    with sc.isolate(net, weights):
        assert sc.evaluate(net, task_a).accuracy > 0.95


@pytest.mark.parametrize("mean", [True, False])
def test_l0_penalises_the_mean_or_the_paper_sum(mean: bool) -> None:
    net, (task_a, _) = planted_mlp(), planted_tasks()
    cfg = sc.MaskConfig(unit="neuron", init=0.5)  # 16 + 4 units, soft mask sigmoid(0.5)
    train = sc.TrainConfig(epochs=1, lr=1e-12, l0=0.3, l0_mean=mean, progress=False)
    row = sc.train_masks(net, cfg, task_a, train).records[1]
    per_unit = 0.3 / (1 + math.exp(-0.5))  # l0 * sigmoid(beta * init), beta = 1 in epoch 1
    expected = per_unit if mean else per_unit * 20
    assert row["loss"] - row["task_loss"] == pytest.approx(expected, rel=1e-4)
