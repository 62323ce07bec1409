"""train_masks across two processes (gloo on CPU) equals one process on the global batch."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import sc_interp as sc

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo"
)


def _setup(unit: str, relaxation: str) -> tuple[nn.Module, sc.Subtask, sc.MaskConfig]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(30, 5, generator=gen)
    y = torch.randint(0, 3, (30,), generator=gen)
    # 30 examples, global batch 8: the last batch (6) is split 3 + 3, the others 4 + 4
    task = sc.Subtask("t", train=(x, y), test=(x[:10], y[:10]), chance=1 / 3, batch_size=8)
    return net, task, sc.MaskConfig(unit=unit, relaxation=relaxation)


TRAIN = sc.TrainConfig(epochs=3, lr=0.05, seed=4, progress=False, eval_every=1)


CASES = [("weight", "continuous"), ("neuron", "hard_concrete"), ("weight", "straight_through")]


def _worker(rank: int, world: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        for unit, relaxation in CASES:
            net, task, cfg = _setup(unit, relaxation)
            sub = sc.train_masks(net, cfg, task, TRAIN)
            result = {"logits": sub.logits, "records": sub.records}
            torch.save(result, f"{out}.{unit}.{relaxation}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory) -> str:
    """One spawn of two gloo processes trains every case (spawning costs seconds)."""
    folder = tmp_path_factory.mktemp("distributed")
    out = str(folder / "result")
    mp.spawn(_worker, args=(2, f"file://{folder / 'rendezvous'}", out), nprocs=2, join=True)
    return out


@pytest.mark.parametrize(("unit", "relaxation"), CASES)
def test_two_processes_match_one(two_process_results: str, unit: str, relaxation: str) -> None:
    out = f"{two_process_results}.{unit}.{relaxation}"
    ranks = [torch.load(f"{out}.{r}") for r in range(2)]
    net, task, cfg = _setup(unit, relaxation)
    single = sc.train_masks(net, cfg, task, TRAIN)
    for rank in ranks:
        assert rank["logits"].keys() == single.logits.keys()
        for name, logits in single.logits.items():
            torch.testing.assert_close(rank["logits"][name], logits, atol=1e-5, rtol=1e-5)
        for got, want in zip(rank["records"], single.records, strict=True):
            for key in ("loss", "train_accuracy", "test_accuracy", "density"):
                if key in want and want[key] == want[key]:  # skip NaN (epoch 0)
                    assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6)
    # the two ranks end bit-identical: they took the same summed gradients
    for name in single.logits:
        assert torch.equal(ranks[0]["logits"][name], ranks[1]["logits"][name])


def test_distributed_true_without_a_group_is_a_config_error() -> None:
    net, task, cfg = _setup("neuron", "continuous")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(sc.ConfigError, match="process group"):
        sc.train_masks(net, cfg, task, sc.TrainConfig(epochs=1, progress=False, distributed=True))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_distributed_flag_is_validated() -> None:
    with pytest.raises(sc.ConfigError):
        sc.TrainConfig(distributed="yes")  # type: ignore[arg-type]
