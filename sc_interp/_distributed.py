"""Mask training across processes with ``torch.distributed`` (what ``train_masks`` uses).

Every process holds the whole frozen model and the same mask logits. Each global batch (the
same on every rank: same data, same seed, same shuffle) is cut into one contiguous shard per
rank; a rank's loss is weighted by its share of the global batch and the mask-logit
gradients are summed across ranks with one ``all_reduce`` per step, so every rank takes the
same Adam step as one process on the whole global batch would (up to float summation
order). Loss and accuracy statistics are summed the same way; a non-finite loss on any
rank stops every rank.

Sharded models: FSDP2 (``torch.distributed.fsdp.fully_shard``) keeps each parameter as a
sharded ``DTensor`` outside its forward; weight masks gather it (see ``_hooks.WeightMask``).
FSDP1 (``FullyShardedDataParallel``) flattens parameters into shards, so their shapes cannot
be read and it is refused.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sc_interp.errors import ConfigError, UnsupportedModelError


@dataclass(frozen=True)
class Sync:
    """How this process takes part in training: ``world`` processes, this one ``rank``.

    ``sharded``: the model's forward is itself collective (FSDP2), so every rank must run
    every forward.
    """

    world: int = 1
    rank: int = 0
    sharded: bool = False

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, x: Any, y: Tensor) -> tuple[Any, Tensor, float]:
        """This rank's contiguous slice of a global batch and its share of the batch."""
        if not self.active:
            return x, y, 1.0
        n = len(y)
        if self.sharded and n < self.world:
            # the same on every rank (same global batch), so every rank raises
            raise ConfigError(
                f"a global batch of {n} example(s) cannot be split over {self.world} ranks "
                "of a sharded (FSDP2) model: each rank must run every forward; use a "
                "batch_size and a number of training examples that leave every batch, the "
                f"last one included, at least {self.world} examples"
            )
        start, stop = n * self.rank // self.world, n * (self.rank + 1) // self.world
        index = torch.arange(start, stop)
        return x[index], y[index.to(y.device)], (stop - start) / n

    def all_true(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` holds on every rank."""
        if not self.active:
            return flag
        value = torch.tensor([0.0 if flag else 1.0], device=device)
        torch.distributed.all_reduce(value)
        return bool(value.item() == 0)

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sums of ``values`` over ranks."""
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def sum_grads(self, params: Iterable[Tensor]) -> None:
        """Sum every parameter's gradient over ranks (one collective).

        A parameter without a gradient on every rank keeps ``grad=None``, as in one process.
        """
        if not self.active:
            return
        params = list(params)
        if not params:
            return
        device = params[0].device
        flat = [p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1)
                for p in params]  # fmt: skip
        flags = torch.tensor([p.grad is not None for p in params], dtype=flat[0].dtype)
        buffer = torch.cat([*flat, flags.to(device)])
        torch.distributed.all_reduce(buffer)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = buffer[offset : offset + n].view_as(p)
            offset += n
        for p, flag in zip(params, buffer[offset:].tolist(), strict=True):
            if flag == 0:
                p.grad = None


def current(setting: bool | None, sharded: bool = False) -> Sync:
    """The process group to train in: ``None`` uses it when one with 2+ processes exists."""
    dist = torch.distributed
    ready = dist.is_available() and dist.is_initialized()
    if setting is False or (setting is None and not ready):
        return Sync()
    if not ready:
        raise ConfigError(
            "TrainConfig(distributed=True) needs an initialised torch.distributed process "
            "group (torch.distributed.init_process_group, torchrun or accelerate launch)"
        )
    return Sync(world=dist.get_world_size(), rank=dist.get_rank(), sharded=sharded)


def is_sharded(tensor: object) -> bool:
    """Whether ``tensor`` is a ``DTensor`` (as FSDP2's ``fully_shard`` keeps parameters)."""
    # sys.modules: a model can only hold DTensors once torch.distributed.tensor is imported,
    # so the check never imports it
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(tensor, module.DTensor)


def has_sharded_parameters(root: torch.nn.Module) -> bool:
    """Whether any parameter of ``root`` is a ``DTensor`` (FSDP2 or tensor parallelism)."""
    return any(is_sharded(p) for p in root.parameters())


def initialise_fsdp2(root: torch.nn.Module) -> None:
    """Run FSDP2's lazy initialisation now, before weight masks parametrize its parameters.

    On its first forward FSDP2 reads each parameter back with ``getattr`` and expects its
    sharded ``DTensor``; under a weight mask that ``getattr`` returns the masked full weight.
    ``FSDPModule.unshard()`` runs the same initialisation first (an all-gather: collective,
    so every rank must attach the same masks, as ``train_masks`` does).
    """
    module = sys.modules.get("torch.distributed.fsdp")
    if module is None:
        return
    for m in root.modules():
        if isinstance(m, module.FSDPModule):
            fsdp_module: Any = m  # pyright sees the Module, not the FSDPModule mixin
            fsdp_module.unshard()
            fsdp_module.reshard()


def refuse_fsdp1(root: torch.nn.Module) -> None:
    """Raise if ``root`` is or contains an FSDP1 ``FullyShardedDataParallel`` wrapper.

    Raises:
        UnsupportedModelError: FSDP1 replaces the parameters by flat 1-D shards outside its
            forward, so neither site shapes nor weight parametrizations can work.
    """
    module = sys.modules.get("torch.distributed.fsdp")
    if module is None:  # FSDP was never imported, so nothing can be wrapped in it
        return
    if any(isinstance(m, module.FullyShardedDataParallel) for m in root.modules()):
        raise UnsupportedModelError(
            "cannot mask a model wrapped in FullyShardedDataParallel (FSDP1): it replaces "
            "the parameters by flat 1-D shards outside its forward, so their shapes (the "
            "mask sites) cannot be read and weight parametrizations break its unsharding; "
            "shard with FSDP2 (torch.distributed.fsdp.fully_shard) instead, or attach masks "
            "to the unwrapped model"
        )
