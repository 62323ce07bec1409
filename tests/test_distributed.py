"""train_masks across two processes (gloo on CPU) equals one process on the global batch.

Also through accelerate (its Accelerator initialises the group; a model it ``prepare``s is
wrapped in DDP) and on a model sharded with FSDP2's ``fully_shard``.
"""

from __future__ import annotations

import os
import socket

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


def _assert_matches_one_process(got: dict, unit: str, relaxation: str) -> None:
    net, task, cfg = _setup(unit, relaxation)
    single = sc.train_masks(net, cfg, task, TRAIN)
    assert got.keys() == single.logits.keys()  # plain names: no "module." prefix
    for name, logits in single.logits.items():
        torch.testing.assert_close(got[name], logits, atol=1e-5, rtol=1e-5)


ACCELERATE_CASES = [
    (prepare, unit, relaxation)
    for prepare in (False, True)
    for unit, relaxation in [("weight", "continuous"), ("neuron", "hard_concrete")]
]


def _accelerate_worker(rank: int, world: int, port: int, out: str) -> None:
    # what `accelerate launch` (torchrun) sets; Accelerator(cpu=True) then starts gloo itself
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
        LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), OMP_NUM_THREADS="1",
    )  # fmt: skip
    torch.set_num_threads(1)
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    try:
        assert dist.is_initialized() and dist.get_world_size() == world
        for prepare, unit, relaxation in ACCELERATE_CASES:
            net, task, cfg = _setup(unit, relaxation)
            model = accelerator.prepare(net) if prepare else net
            assert isinstance(model, nn.parallel.DistributedDataParallel) == prepare
            sub = sc.train_masks(model, cfg, task, TRAIN)
            torch.save(sub.logits, f"{out}.{prepare}.{unit}.{relaxation}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def accelerate_results(tmp_path_factory) -> str:
    pytest.importorskip("accelerate")
    out = str(tmp_path_factory.mktemp("accelerate") / "result")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_accelerate_worker, args=(2, port, out), nprocs=2, join=True)
    return out


@pytest.mark.parametrize(("prepare", "unit", "relaxation"), ACCELERATE_CASES)
def test_accelerate_two_processes_match_one(
    accelerate_results: str, prepare: bool, unit: str, relaxation: str
) -> None:
    for rank in range(2):
        got = torch.load(f"{accelerate_results}.{prepare}.{unit}.{relaxation}.{rank}")
        _assert_matches_one_process(got, unit, relaxation)


FSDP_CASES = [("weight", "continuous"), ("neuron", "hard_concrete")]


def _fully_shard(net: nn.Module, world: int) -> nn.Module:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))
    for layer in (net[0], net[2]):
        fully_shard(layer, mesh=mesh)
    return fully_shard(net, mesh=mesh)


def _fsdp_worker(rank: int, world: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.set_num_threads(1)
    results: dict[str, object] = {}
    try:
        for unit, relaxation in FSDP_CASES:
            net, task, cfg = _setup(unit, relaxation)
            net = _fully_shard(net, world)
            keys = list(net.state_dict())
            sub = sc.train_masks(net, cfg, task, TRAIN)
            results[f"{unit}.{relaxation}"] = sub.logits
            results[f"{unit}.{relaxation}.restored"] = list(net.state_dict()) == keys
        # a last batch of 1 example cannot be split over 2 ranks of a sharded model
        net, task, cfg = _setup("weight", "continuous")
        net = _fully_shard(net, world)
        small = sc.Subtask("s", train=(task.train[0][:9], task.train[1][:9]),
                           test=task.test, chance=1 / 3, batch_size=8)  # fmt: skip
        try:
            sc.train_masks(net, cfg, small, TRAIN)
        except sc.ConfigError as err:
            results["small_batch"] = str(err)
        from torch.distributed.fsdp import FullyShardedDataParallel

        fsdp1 = FullyShardedDataParallel(
            _setup("weight", "continuous")[0], use_orig_params=True, device_id=torch.device("cpu")
        )
        try:
            sc.attach_masks(fsdp1, cfg)
        except sc.UnsupportedModelError as err:
            results["fsdp1"] = str(err)
        torch.save(results, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def fsdp_results(tmp_path_factory) -> list[dict]:
    pytest.importorskip("torch.distributed.fsdp")
    folder = tmp_path_factory.mktemp("fsdp")
    out = str(folder / "result")
    mp.spawn(_fsdp_worker, args=(2, f"file://{folder / 'rendezvous'}", out), nprocs=2, join=True)
    return [torch.load(f"{out}.{r}") for r in range(2)]


@pytest.mark.parametrize(("unit", "relaxation"), FSDP_CASES)
def test_fsdp2_two_processes_match_one(fsdp_results: list, unit: str, relaxation: str) -> None:
    for rank in fsdp_results:
        _assert_matches_one_process(rank[f"{unit}.{relaxation}"], unit, relaxation)
        assert rank[f"{unit}.{relaxation}.restored"]  # masks detached, keys as before


def test_fsdp2_batch_smaller_than_world_is_a_config_error(fsdp_results: list) -> None:
    for rank in fsdp_results:
        assert "cannot be split over 2 ranks" in rank["small_batch"]


def test_fsdp1_is_refused(fsdp_results: list) -> None:
    for rank in fsdp_results:
        assert "FullyShardedDataParallel (FSDP1)" in rank["fsdp1"]


def test_distributed_true_without_a_group_is_a_config_error() -> None:
    net, task, cfg = _setup("neuron", "continuous")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(sc.ConfigError, match="process group"):
        sc.train_masks(net, cfg, task, sc.TrainConfig(epochs=1, progress=False, distributed=True))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_distributed_flag_is_validated() -> None:
    with pytest.raises(sc.ConfigError):
        sc.TrainConfig(distributed="yes")  # type: ignore[arg-type]
