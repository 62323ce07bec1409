"""Overhead benchmark: mask training steps against plain floors, as ratios in one run.

Floors (DESIGN.md §5): the *frozen floor* is the frozen model's forward+backward with
gradient flowing only to activations (from the embedding output on); the *fine-tune
floor* is a plain training step (Adam) with gradients for every weight. Steps of all
variants are interleaved so machine noise hits them alike; medians are reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from sc_interp._demo import tiny_bridge
from sc_interp.bench._common import embed_requires_grad as _embed_requires_grad
from sc_interp.bench._common import tl_loss as _loss
from sc_interp.masks import MaskConfig, MaskSet, attach_masks
from sc_interp.train import mask_optimizer


def overhead_ratios(
    steps: int = 20, batch: int = 32, seq: int = 32, seed: int = 0
) -> dict[str, float]:
    """Median step time of every variant divided by its floor."""
    torch.manual_seed(seed)
    model = tiny_bridge(
        seed, d_model=128, d_head=32, n_heads=4, n_layers=4, n_ctx=seq, d_vocab=500, d_mlp=512
    )
    tokens = torch.randint(0, 500, (batch, seq), generator=torch.Generator().manual_seed(seed))
    params = list(model.parameters())
    finetune_opt = torch.optim.Adam(params, lr=1e-4)

    def finetune() -> None:
        for p in params:
            p.requires_grad_(True)
        finetune_opt.zero_grad(set_to_none=True)
        _loss(model, tokens).backward()
        finetune_opt.step()
        for p in params:
            p.requires_grad_(False)

    def frozen() -> None:
        handle = _embed_requires_grad(model)
        try:
            _loss(model, tokens).backward()
        finally:
            handle.remove()  # type: ignore[attr-defined]

    def plain_forward() -> None:
        with torch.no_grad():
            model(tokens)

    # Each variant runs with nothing else attached: masks are attached before the timer
    # starts and detached after it stops, so floors carry no trace of sc-interp.
    current: dict[str, MaskSet] = {}

    def masked_step() -> None:
        masks = current["masks"]
        masks.train()
        optimizer = current["optimizer"]
        optimizer.zero_grad(set_to_none=True)  # type: ignore[attr-defined]
        with masks.step() as step:
            loss = _loss(model, tokens) + 1e-8 * step.l0()
        loss.backward()
        optimizer.step()  # type: ignore[attr-defined]

    def hard_forward() -> None:
        with torch.no_grad():
            model(tokens)

    for p in params:
        p.requires_grad_(False)
    variants: dict[str, tuple[Callable[[], None], str | None]] = {
        "finetune floor": (finetune, None),
        "frozen floor": (frozen, None),
        "plain forward": (plain_forward, None),
        "neuron mask step": (masked_step, "neuron"),
        "head mask step": (masked_step, "head"),
        "weight mask step": (masked_step, "weight"),
        "hard-mask forward (weight)": (hard_forward, "weight"),
    }
    times: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[[], None], unit: str | None) -> None:
        masks = None
        if unit is not None:
            masks = attach_masks(model, MaskConfig(unit=unit, init=0.05))
            current["masks"] = masks
            current["optimizer"] = mask_optimizer(masks.parameters(), lr=1e-2)  # type: ignore[assignment]
            if fn is hard_forward:
                masks.eval()
                fn()  # evaluation caches the masked weights: time the steady state
        try:
            start = time.perf_counter()
            fn()
            times.setdefault(name, []).append(time.perf_counter() - start)
        finally:
            if masks is not None:
                masks.detach()

    for name, (fn, unit) in variants.items():  # warm-up
        timed(name, fn, unit)
    times.clear()
    for _ in range(steps):
        for name, (fn, unit) in variants.items():
            timed(name, fn, unit)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    return {
        "neuron mask step / frozen floor": med["neuron mask step"] / med["frozen floor"],
        "head mask step / frozen floor": med["head mask step"] / med["frozen floor"],
        "weight mask step / fine-tune floor": med["weight mask step"] / med["finetune floor"],
        "hard-mask forward / plain forward": med["hard-mask forward (weight)"]
        / med["plain forward"],
        **{f"median ms: {k}": 1000 * v for k, v in med.items()},
    }


TARGETS = {
    "neuron mask step / frozen floor": 1.15,
    "head mask step / frozen floor": 1.15,
    "weight mask step / fine-tune floor": 1.15,
    "hard-mask forward / plain forward": 1.05,
}


def overhead_table(steps: int = 20, batch: int = 32, memory: bool = False) -> str:
    """The benchmark as a printable table (with peak-memory ratios when ``memory``)."""
    ratios = overhead_ratios(steps=steps, batch=batch)
    targets = dict(TARGETS)
    if memory:
        from sc_interp.bench.memory import memory_ratios

        for key, value in memory_ratios(batch=batch).items():
            ratios[key] = value
            if key.startswith("peak memory"):
                targets[key] = 1.3
    lines = [f"{'measure':45s} {'value':>9s} {'target':>8s}"]
    for key, value in ratios.items():
        target = targets.get(key)
        bound = f"<= {target:.2f}" if target else ""
        lines.append(f"{key:45s} {value:9.3f} {bound:>8s}")
    return "\n".join(lines)
