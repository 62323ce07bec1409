"""Shared pieces of the benchmarks: interleaved timing and the TL floors' helpers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def tl_loss(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The benchmarks' loss on a TransformerLens model: mean squared logits."""
    return model(tokens).float().pow(2).mean()


def embed_requires_grad(model: nn.Module) -> object:
    """Gradient flows to activations from the embedding output on, as in mask training."""
    hook: nn.Module = getattr(model, "hook_dict")["hook_embed"]  # noqa: B009
    return hook.register_forward_hook(lambda m, i, o: o.detach().requires_grad_(True))


def interleaved_medians(
    variants: dict[str, Callable[[], object]], steps: int, warmup: int = 2
) -> dict[str, float]:
    """Median seconds per call of every variant, calls interleaved with a rotating order."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for step in range(warmup + steps):
        shift = step % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            variants[name]()
            if step >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}
