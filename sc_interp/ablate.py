"""Run a model with a subnetwork removed (``ablate``) or kept alone (``isolate``).

Both are context managers that attach hard masks for the duration and detach them on
exit, also after exceptions, so the model is restored exactly.

Methods (what a removed unit becomes):

=============  ==================================================  ===============
method         replacement                                          units
=============  ==================================================  ===============
``zero``       0                                                    all
``random``     a fresh draw of the architecture's own               weight
               initialisation (see :mod:`sc_interp.reinit`)
``mean``       the unit's mean activation over ``data`` (mean over  neuron, head
               batch and positions; prompts: real tokens only)
``resample``   the unit's activation on another input from          neuron, head
               ``data``: donors drawn afresh for every batch
               (seeded), never the example itself
=============  ==================================================  ===============

Edge subnetworks (``unit="edge"``) take ``zero``, ``mean`` and ``resample``: a removed edge
``src->dst`` feeds ``dst`` zero, the mean of ``src``'s output, or ``src``'s output on
another input (a path patch, as ACDC and EAP ablate edges), see
:mod:`sc_interp._edge_ablate`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Literal, overload

import torch
from torch import Tensor, nn

from sc_interp import _hooks, _trace_path, _validate
from sc_interp._prompt_batch import PromptBatch
from sc_interp._run import forward
from sc_interp._state import preserved
from sc_interp.adapters import find_sites, resolve
from sc_interp.data import Subtask, cat_inputs
from sc_interp.errors import AttachError, ConfigError
from sc_interp.masks import MaskConfig, MaskSet, attach_masks
from sc_interp.reinit import reinitialize
from sc_interp.sites import Site
from sc_interp.subnetwork import Subnetwork

METHODS = ("zero", "random", "mean", "resample")
_UNITS_OF = {"zero": ("weight", "neuron", "head", "edge"), "random": ("weight",),
             "mean": ("neuron", "head", "edge"), "resample": ("neuron", "head", "edge")}  # fmt: skip

SubnetworkLike = Subnetwork | MaskSet | dict[str, Tensor]


@overload
def ablate(
    model: object,
    sub: SubnetworkLike,
    method: str = ...,
    *,
    data: Subtask | Tensor | None = ...,
    seed: int = ...,
    remote: Literal[False] = ...,
) -> AbstractContextManager[MaskSet]: ...


@overload
def ablate(
    model: object,
    sub: SubnetworkLike,
    method: str = ...,
    *,
    data: Subtask | Tensor | None = ...,
    seed: int = ...,
    remote: Literal[True] | str,
) -> AbstractContextManager[_trace_path.TracePlan]: ...


@contextlib.contextmanager
def ablate(
    model: object,
    sub: SubnetworkLike,
    method: str = "zero",
    *,
    data: Subtask | Tensor | None = None,
    seed: int = 0,
    remote: bool | str = False,
) -> Iterator[Any]:
    """Run ``model`` with the subnetwork removed (its complement kept).

    Args:
        model: the model the subnetwork was learned on.
        sub: a :class:`Subnetwork`, a :class:`MaskSet` or ``{site: bool mask}``.
        method: ``zero``, ``random``, ``mean`` or ``resample`` (see module docs).
        data: inputs for ``mean``/``resample`` (a Subtask's train inputs, a tensor, or
            prompts as a PromptBatch). Resampling prompts needs ``data`` padded to the
            same length as the inputs run (a prompt Subtask pads all its splits alike).
        seed: seeds ``random`` and ``resample``.
        remote: for an nnsight ``LanguageModel`` / ``TransformersModel`` and a neuron or
            head subnetwork: ``True`` (NDIF), ``"local"`` (nnsight's serverless dry run of
            the remote path) or a host URL runs the ablation as interventions inside
            ``model.trace(..., remote=remote)`` instead of hooks: every run sc-interp makes
            in the block (:func:`~sc_interp.evaluate`, recording ``mean``/``resample``
            activations) is such a trace, and the block yields a :class:`TracePlan`.
            No hook is attached and no sc-interp code travels with the request.

    Yields:
        The attached hard :class:`MaskSet` (with ``remote``, the :class:`TracePlan`).

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> sub = Subnetwork({"0": torch.tensor([1.0, -1.0, -1.0])}, MaskConfig(unit="neuron"))
        >>> with ablate(net, sub):
        ...     out = net(torch.ones(1, 2))
    """
    with _masked(model, sub, method, data, seed, remote, keep_subnetwork=False) as masks:
        yield masks


@overload
def isolate(
    model: object,
    sub: SubnetworkLike,
    method: str = ...,
    *,
    data: Subtask | Tensor | None = ...,
    seed: int = ...,
    remote: Literal[False] = ...,
) -> AbstractContextManager[MaskSet]: ...


@overload
def isolate(
    model: object,
    sub: SubnetworkLike,
    method: str = ...,
    *,
    data: Subtask | Tensor | None = ...,
    seed: int = ...,
    remote: Literal[True] | str,
) -> AbstractContextManager[_trace_path.TracePlan]: ...


@contextlib.contextmanager
def isolate(
    model: object,
    sub: SubnetworkLike,
    method: str = "zero",
    *,
    data: Subtask | Tensor | None = None,
    seed: int = 0,
    remote: bool | str = False,
) -> Iterator[Any]:
    """Run ``model`` with only the subnetwork kept (within the masked sites).

    Arguments as for :func:`ablate` (``remote`` included); ``method`` says what replaces
    the units outside the subnetwork.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> sub = Subnetwork({"0": torch.tensor([1.0, -1.0, -1.0])}, MaskConfig(unit="neuron"))
        >>> with isolate(net, sub):  # hidden units 1 and 2 are zeroed
        ...     out = net(torch.ones(1, 2))
    """
    with _masked(model, sub, method, data, seed, remote, keep_subnetwork=True) as masks:
        yield masks


@contextlib.contextmanager
def _masked(
    model: object, sub: SubnetworkLike, method: str, data: Any, seed: int,
    remote: bool | str, keep_subnetwork: bool,
) -> Iterator[Any]:  # fmt: skip
    if not isinstance(method, str) or method not in METHODS:
        raise ConfigError(f"unknown ablation method {method!r}; allowed: {', '.join(METHODS)}")
    seed = _validate.integer("seed", seed, minimum=0, maximum=2**63 - 1)
    remote = _trace_path.check_remote(remote)
    root = resolve(model)
    if remote is not False:
        with _traced(model, root, sub, method, data, seed, remote, keep_subnetwork) as plan:
            yield plan
        return
    with preserved(root, train_flags=False):
        with _applied(model, root, sub, method, data, seed, keep_subnetwork) as masks:
            yield masks


@contextlib.contextmanager
def _applied(
    model: object, root: nn.Module, sub: SubnetworkLike, method: str, data: Any, seed: int,
    keep_subnetwork: bool,
) -> Iterator[MaskSet]:  # fmt: skip
    hard, unit, targets = _as_masks(root, sub)
    if unit not in _UNITS_OF[method]:
        allowed = [m for m in METHODS if unit in _UNITS_OF[m]]
        raise ConfigError(f"method {method!r} does not apply to {unit} units; use one of {allowed}")
    if method in ("mean", "resample") and data is None:
        raise ConfigError(f"method {method!r} needs data= (a Subtask or a tensor of inputs)")
    fresh = _fresh_weights(root, hard, seed) if method == "random" else {}
    # an attached MaskSet being ablated is switched off while ours act on the same sites
    stacked = isinstance(sub, MaskSet) and sub.attached
    with sub.disabled() if stacked else contextlib.nullcontext():  # type: ignore[union-attr]
        masks = attach_masks(root, MaskConfig(unit=unit, targets=targets, init=1.0), stack=stacked)
        handles: list[Any] = []
        try:
            with torch.no_grad():
                for name, param in masks.logits.items():
                    keep = hard[name] if keep_subnetwork else ~hard[name]
                    param.copy_(torch.where(keep.to(param.device), 1.0, -1.0))
            masks.eval()
            for name, value in fresh.items():
                masks.set_replacement(name, value)
            if method in ("mean", "resample"):
                handles = _set_activation_replacements(model, masks, method, data, seed)
            yield masks
        finally:
            for handle in handles:
                handle.remove()
            masks.detach()


@contextlib.contextmanager
def _traced(
    model: object, root: nn.Module, sub: SubnetworkLike, method: str, data: Any, seed: int,
    remote: bool | str, keep_subnetwork: bool,
) -> Iterator[_trace_path.TracePlan]:  # fmt: skip
    """The remote path: no hooks, every run of ``model`` is a trace with interventions."""
    if isinstance(sub, MaskSet) and sub.attached:
        raise ConfigError(
            "remote= takes a detached MaskSet or a Subnetwork: an attached MaskSet's hooks "
            "would not run remotely"
        )
    hard, unit, _ = _as_masks(root, sub)
    if unit not in _UNITS_OF[method] or method == "random":
        raise ConfigError(
            f"method {method!r} does not run through a trace for {unit} units; with remote= "
            "use zero, mean or resample on neuron or head subnetworks"
        )
    if method in ("mean", "resample") and data is None:
        raise ConfigError(f"method {method!r} needs data= (a Subtask or a tensor of inputs)")
    inputs = _inputs(data) if data is not None else None
    sites = {s.name: s for s in find_sites(root, unit) if s.name in hard}
    with _trace_path.planned(
        model, hard, sites, keep_subnetwork=keep_subnetwork, method=method, inputs=inputs,
        seed=seed, remote=remote,
    ) as plan:  # fmt: skip
        yield plan


def _inputs(data: Any) -> Tensor | PromptBatch:
    """The inputs ``mean``/``resample`` record: a Subtask's training inputs, or ``data``."""
    inputs = (
        cat_inputs([x for x, _ in data.batches("train")]) if isinstance(data, Subtask) else data
    )
    if not isinstance(inputs, Tensor | PromptBatch) or len(inputs) == 0:
        raise ConfigError(
            "mean/resample need data as a non-empty input tensor, a PromptBatch or a Subtask"
        )
    return inputs


def _exact(hard: dict[str, Tensor]) -> list[str]:
    """Glob patterns that match exactly these site names (``[`` and ``*`` escaped)."""
    import glob

    return [glob.escape(name) for name in hard]


def _as_masks(root: nn.Module, sub: SubnetworkLike) -> tuple[dict[str, Tensor], str, list[str]]:
    """Hard masks keyed by site, their unit and targets that select exactly their sites.

    Edge sites learned with edge-name targets hold only the selected edges: their config's
    targets select the same edges again.
    """
    if isinstance(sub, Subnetwork):
        sub.check(root)
        return sub.masks, sub.config.unit, _targets(sub.masks, sub.config)
    if isinstance(sub, MaskSet):
        if sub.model is not root:
            raise AttachError(
                "this MaskSet is attached to another model; use masks.hard() or save it and "
                "load it onto this model"
            )
        hard = sub.hard()
        return hard, sub.config.unit, _targets(hard, sub.config)
    if isinstance(sub, dict):
        made = Subnetwork.from_masks(root, sub)
        return made.masks, made.config.unit, _exact(made.masks)
    raise ConfigError(
        f"expected a Subnetwork, MaskSet or non-empty {{site: bool mask}} dict, got {type(sub).__name__}"
    )


def _targets(hard: dict[str, Tensor], config: MaskConfig) -> list[str]:
    if config.unit == "edge" and config.targets is not None:
        return list(config.targets)
    return _exact(hard)


def _fresh_weights(root: nn.Module, hard: dict[str, Tensor], seed: int) -> dict[str, Tensor]:
    """New draws of the masked weights from the architecture's own initialisation."""
    sites = {s.name: s for s in find_sites(root, "weight")}
    clone, _ = reinitialize(root, seed)
    out = {}
    for name in hard:
        site = sites[name]
        module = clone.get_submodule(site.module) if site.module else clone
        out[name] = getattr(module, site.attr or "weight").detach()
    return out


def _set_activation_replacements(
    model: object, masks: MaskSet, method: str, data: Any, seed: int
) -> list[Any]:
    inputs = _inputs(data)
    if masks.config.unit == "edge":
        from sc_interp import _edge_ablate

        donors = None if method == "mean" else Donors(inputs, torch.Generator().manual_seed(seed))
        _edge_ablate.set_replacements(model, masks, method, inputs, donors)
        return [] if donors is None else [_hooks.add_input_hook(masks.model, donors.draw)]
    recorded = record_activations(model, masks, inputs)
    if method == "mean":
        real = inputs.attention_mask if isinstance(inputs, PromptBatch) else None
        for name, site in masks.sites.items():
            masks.set_replacement(name, unit_mean(recorded[name], site, real))
        return []
    donors = Donors(inputs, torch.Generator().manual_seed(seed))
    for name in masks.sites:
        masks.set_replacement(name, _Resampler(recorded[name], donors))
    return [_hooks.add_input_hook(masks.model, donors.draw)]


def record_activations(
    model: object, masks: MaskSet, inputs: Tensor | PromptBatch
) -> dict[str, Tensor]:
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


def unit_mean(acts: Tensor, site: Site, real: Tensor | None = None) -> Tensor:
    """Mean activation per feature over every axis left of the unit axis (batch, positions).

    With ``real`` (a ``[batch, pos]`` attention mask of padded prompts), padded positions
    are left out of the mean.
    """
    axis = site.axis % acts.ndim
    if real is not None and axis == 2 and acts.shape[:2] == real.shape:
        weight = real.to(acts.device, acts.dtype).reshape(*real.shape, *[1] * (acts.ndim - 2))
        return (acts * weight).sum(dim=(0, 1)) / weight.sum().clamp(min=1.0)
    return acts.mean(dim=tuple(range(axis)))


def _row_keys(x: Tensor | PromptBatch) -> list[int]:
    if isinstance(x, PromptBatch):
        x = x.tokens
    return [hash(row.tobytes()) for row in x.detach().cpu().reshape(len(x), -1).numpy()]


class Donors:
    """Which recorded input each example of the current batch takes its activations from.

    Drawn afresh for every forward pass (seeded), once for all masked sites, and never the
    example itself: an input hook on the model compares each example with the recorded
    inputs by content.
    """

    def __init__(self, inputs: Tensor | PromptBatch, generator: torch.Generator):
        self.n = len(inputs)
        self.keys = torch.tensor(_row_keys(inputs), dtype=torch.int64)
        if len(set(self.keys.tolist())) < 2:
            raise ConfigError("resample needs data with at least two distinct inputs")
        self.generator = generator
        self.current: Tensor | None = None

    def draw(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        x = next((a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)), None)
        if x is None or x.ndim == 0:
            self.current = None
            return
        own = torch.tensor(_row_keys(x), dtype=torch.int64)
        donors = torch.randint(0, self.n, (len(own),), generator=self.generator)
        for _ in range(100):  # redraw the donors that are the example itself
            clash = self.keys[donors] == own
            if not clash.any():
                break
            donors[clash] = torch.randint(0, self.n, (int(clash.sum()),), generator=self.generator)
        self.current = donors

    def rows(self, n_rows: int, per_input: int) -> Tensor:
        """Recorded rows to use for a site output with ``n_rows`` rows."""
        donors = self.current
        if donors is None or n_rows % len(donors):
            # the site's rows do not line up with the model's inputs: any recorded input
            return torch.randint(0, self.n, (n_rows,), generator=self.generator) * per_input
        k = n_rows // len(donors)  # e.g. the 4 candidates of an odd-one-out problem
        slot = torch.arange(n_rows) % k % per_input
        return donors.repeat_interleave(k) * per_input + slot


class _Resampler:
    """Replacement = the recorded activations of the donor inputs (see :class:`Donors`)."""

    def __init__(self, acts: Tensor, donors: Donors):
        self.acts = acts
        self.donors = donors
        self.per_input = max(1, len(acts) // donors.n)

    def __call__(self, output: Tensor) -> Tensor:
        if output.shape[1:] != self.acts.shape[1:]:
            raise ConfigError(
                f"resample: recorded activations have shape {tuple(self.acts.shape[1:])} per "
                f"example but this input gives {tuple(output.shape[1:])}; use inputs of the same shape"
            )
        return self.acts[self.donors.rows(len(output), self.per_input).to(self.acts.device)]
