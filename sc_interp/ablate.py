"""Run a model with a subnetwork removed (``ablate``) or kept alone (``isolate``).

Both are context managers that attach hard masks for the duration and detach them on
exit, also after exceptions, so the model is restored exactly.

Methods (what a removed unit becomes):

=============  ==================================================  ===============
method         replacement                                          units
=============  ==================================================  ===============
``zero``       0                                                    all
``random``     a fresh draw of the layer's own initialisation       weight
``mean``       the unit's mean activation over ``data`` (mean over  neuron, head
               batch and positions)
``resample``   the unit's activation on another input from          neuron, head
               ``data`` (a seeded permutation of recorded inputs)
=============  ==================================================  ===============
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from sc_interp import _hooks
from sc_interp._run import forward
from sc_interp.adapters import find_sites, resolve
from sc_interp.data import Subtask
from sc_interp.errors import ConfigError
from sc_interp.masks import MaskConfig, MaskSet, attach_masks
from sc_interp.sites import Site
from sc_interp.subnetwork import Subnetwork

METHODS = ("zero", "random", "mean", "resample")
_UNITS_OF = {"zero": ("weight", "neuron", "head"), "random": ("weight",),
             "mean": ("neuron", "head"), "resample": ("neuron", "head")}  # fmt: skip

SubnetworkLike = Subnetwork | MaskSet | dict[str, Tensor]


@contextlib.contextmanager
def ablate(
    model: object,
    sub: SubnetworkLike,
    method: str = "zero",
    *,
    data: Subtask | Tensor | None = None,
    seed: int = 0,
) -> Iterator[MaskSet]:
    """Run ``model`` with the subnetwork removed (its complement kept).

    Args:
        model: the model the subnetwork was learned on.
        sub: a :class:`Subnetwork`, a :class:`MaskSet` or ``{site: bool mask}``.
        method: ``zero``, ``random``, ``mean`` or ``resample`` (see module docs).
        data: inputs for ``mean``/``resample`` (a Subtask's train inputs, or a tensor).
        seed: seeds ``random`` and ``resample``.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> sub = Subnetwork({"0": torch.tensor([1.0, -1.0, -1.0])}, MaskConfig(unit="neuron"))
        >>> with ablate(net, sub):
        ...     out = net(torch.ones(1, 2))
    """
    with _masked(model, sub, method, data, seed, keep_subnetwork=False) as masks:
        yield masks


@contextlib.contextmanager
def isolate(
    model: object,
    sub: SubnetworkLike,
    method: str = "zero",
    *,
    data: Subtask | Tensor | None = None,
    seed: int = 0,
) -> Iterator[MaskSet]:
    """Run ``model`` with only the subnetwork kept (within the masked sites).

    Arguments as for :func:`ablate`.
    """
    with _masked(model, sub, method, data, seed, keep_subnetwork=True) as masks:
        yield masks


@contextlib.contextmanager
def _masked(
    model: object, sub: SubnetworkLike, method: str, data: Any, seed: int, keep_subnetwork: bool
) -> Iterator[MaskSet]:
    hard, unit = _as_masks(model, sub)
    if method not in METHODS:
        raise ConfigError(f"unknown ablation method {method!r}; allowed: {', '.join(METHODS)}")
    if unit not in _UNITS_OF[method]:
        allowed = [m for m in METHODS if unit in _UNITS_OF[m]]
        raise ConfigError(f"method {method!r} does not apply to {unit} units; use one of {allowed}")
    if method in ("mean", "resample") and data is None:
        raise ConfigError(f"method {method!r} needs data= (a Subtask or a tensor of inputs)")
    root = resolve(model)
    masks = attach_masks(root, MaskConfig(unit=unit, targets=list(hard), init=1.0))
    try:
        with torch.no_grad():
            for name, param in masks.logits.items():
                keep = hard[name] if keep_subnetwork else ~hard[name]
                param.copy_(torch.where(keep.to(param.device), 1.0, -1.0))
        masks.eval()
        if method != "zero":
            _set_replacements(model, masks, method, data, seed)
        yield masks
    finally:
        masks.detach()


def _as_masks(model: object, sub: SubnetworkLike) -> tuple[dict[str, Tensor], str]:
    if isinstance(sub, Subnetwork):
        return sub.masks, sub.config.unit
    if isinstance(sub, MaskSet):
        return sub.hard(), sub.config.unit
    if isinstance(sub, dict) and sub:
        for unit in ("weight", "neuron", "head"):
            names = {s.name for s in find_sites(model, unit)}
            if set(sub) <= names:
                return {k: torch.as_tensor(v).bool() for k, v in sub.items()}, unit
        raise ConfigError(
            f"mask keys {sorted(sub)[:5]} are not sites of one unit kind of this model"
        )
    raise ConfigError(
        f"expected a Subnetwork, MaskSet or non-empty {{site: mask}} dict, got {type(sub).__name__}"
    )


def _set_replacements(model: object, masks: MaskSet, method: str, data: Any, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    if method == "random":
        for name, site in masks.sites.items():
            masks.set_replacement(name, _fresh_init(masks.model, site, generator))
        return
    # a Subtask contributes its training inputs, whatever form its data takes
    inputs = torch.cat([x for x, _ in data.batches("train")]) if isinstance(data, Subtask) else data
    if not isinstance(inputs, Tensor) or len(inputs) == 0:
        raise ConfigError("mean/resample need data as a non-empty input tensor or a Subtask")
    recorded = record_activations(model, masks, inputs)
    for name, site in masks.sites.items():
        acts = recorded[name]
        if method == "mean":
            masks.set_replacement(name, unit_mean(acts, site))
        else:
            masks.set_replacement(name, _Resampler(acts, generator))


def record_activations(model: object, masks: MaskSet, inputs: Tensor) -> dict[str, Tensor]:
    """Unmasked activations at every site of ``masks`` for ``inputs`` (batched run)."""
    store: dict[str, list[Tensor]] = {name: [] for name in masks.sites}
    handles = []
    root = masks.model
    for name, site in masks.sites.items():
        module = root.get_submodule(site.module) if site.module else root

        # the site's own activation: a module's output, or its input for io="input" sites
        handles.append(_hooks.observe(module, site, lambda t, n=name: store[n].append(t.detach())))
    try:
        with masks.disabled(), torch.no_grad():
            for start in range(0, len(inputs), 256):
                forward(model, inputs[start : start + 256])
    finally:
        for h in handles:
            h.remove()
    return {name: torch.cat(chunks) for name, chunks in store.items()}


def unit_mean(acts: Tensor, site: Site) -> Tensor:
    """Mean activation per feature over every axis left of the unit axis (batch, positions)."""
    axis = site.axis % acts.ndim
    return acts.mean(dim=tuple(range(axis)))


class _Resampler:
    """Replacement = recorded activations of other inputs, drawn by a seeded permutation."""

    def __init__(self, acts: Tensor, generator: torch.Generator):
        self.acts = acts
        self.order = torch.randperm(len(acts), generator=generator)

    def __call__(self, output: Tensor) -> Tensor:
        if output.shape[1:] != self.acts.shape[1:]:
            raise ConfigError(
                f"resample: recorded activations have shape {tuple(self.acts.shape[1:])} per "
                f"example but this input gives {tuple(output.shape[1:])}; use inputs of the same shape"
            )
        reps = math.ceil(len(output) / len(self.order))
        return self.acts[self.order.repeat(reps)[: len(output)]]


def _fresh_init(root: nn.Module, site: Site, generator: torch.Generator) -> Tensor:
    """A new draw of the weight at ``site`` from its layer's own initialisation.

    torch Linear/Conv layers: their default (Kaiming-uniform, ``a=sqrt(5)``). Other
    weights (TransformerLens): a normal with the weight's own standard deviation.
    """
    module = root.get_submodule(site.module) if site.module else root
    assert site.attr is not None
    original = module.parametrizations[site.attr].original  # type: ignore[index]
    fresh = torch.empty(original.shape, dtype=torch.float32)
    if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
        bound = 1.0 / math.sqrt(fresh[0].numel()) if fresh.ndim > 1 else 1.0
        fresh.uniform_(-bound, bound, generator=generator)  # == kaiming_uniform_(a=sqrt(5))
    else:
        std = float(original.detach().float().std()) if original.numel() > 1 else 0.02
        fresh.normal_(0.0, std, generator=generator)
    return fresh.to(original.device, original.dtype)
