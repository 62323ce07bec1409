"""Mask sites: the places in a model where a mask can act.

A :class:`Site` pairs the toolkit's own name for a place (``blocks.0.mlp.hook_post``,
``blocks.0.attn.W_Q``, ``fc1.weight``) with how a mask is applied there: either as a
parametrization of a weight tensor (``unit="weight"``) or as a forward hook that scales
an activation (``unit="neuron"`` / ``"head"``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from sc_interp.errors import AttachError, ConfigError, TargetError

Unit = Literal["weight", "neuron", "head"]
UNITS: tuple[str, ...] = get_args(Unit)


@dataclass(frozen=True)
class Site:
    """One maskable place in a model.

    Attributes:
        name: the toolkit's own name (TransformerLens hook/parameter name, torch path).
        unit: ``"weight"`` (elementwise over a weight), ``"neuron"`` or ``"head"``.
        shape: shape of the mask (the weight's shape, or ``(n_units,)``).
        module: path (as in ``model.named_modules()``) of the module that is
            parametrized (weights) or hooked (neurons/heads).
        attr: the parametrized attribute for weight sites (``"weight"``, ``"W_Q"``).
        axis: for activation sites, the axis of the module's output that holds the units.
        group: for activation sites, how many consecutive features along ``axis`` one unit
            owns (a head's ``d_head`` when the activation is ``[..., n_heads * d_head]``).
        bake: for activation sites, the parameters whose slices along an axis produce (or
            solely consume) each unit, as ``(module path, attribute, axis)``; zeroing those
            slices is exactly the same as zeroing the unit (used by :func:`sc_interp.bake`).

    Example:
        >>> s = Site("fc1", "neuron", (8,), module="fc1", axis=-1)
        >>> s.kind
        'activation'
    """

    name: str
    unit: Unit
    shape: tuple[int, ...]
    module: str
    attr: str | None = None
    axis: int = -1
    group: int = 1
    bake: tuple[tuple[str, str, int], ...] = ()

    @property
    def kind(self) -> Literal["param", "activation"]:
        """``"param"`` for weight sites, ``"activation"`` for neuron/head sites."""
        return "param" if self.unit == "weight" else "activation"

    @property
    def numel(self) -> int:
        """Number of mask entries at this site."""
        n = 1
        for d in self.shape:
            n *= d
        return n


def check_unit(unit: str) -> None:
    """Raise :class:`ConfigError` unless ``unit`` is one of ``weight``, ``neuron``, ``head``."""
    if unit not in UNITS:
        raise ConfigError(f"unknown unit {unit!r}; allowed units: {', '.join(UNITS)}")


def select_sites(sites: Sequence[Site], targets: Sequence[str] | None) -> list[Site]:
    """Keep the sites whose name matches any glob pattern in ``targets`` (all if None).

    Every pattern must match at least one site; otherwise the error lists what exists.

    Example:
        >>> s = [Site("blocks.0.mlp.hook_post", "neuron", (4,), "m0"),
        ...      Site("blocks.1.mlp.hook_post", "neuron", (4,), "m1")]
        >>> [x.name for x in select_sites(s, ["blocks.1.*"])]
        ['blocks.1.mlp.hook_post']
    """
    if targets is None:
        return list(sites)
    if isinstance(targets, str):
        targets = [targets]
    names = [s.name for s in sites]
    unmatched = [p for p in targets if not fnmatch.filter(names, p)]
    if unmatched:
        shown = ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")
        raise TargetError(
            f"target pattern(s) {unmatched} match no site; available sites: {shown or '(none)'}"
        )
    return [s for s in sites if any(fnmatch.fnmatchcase(s.name, p) for p in targets)]


def check_shapes(masks: dict[str, Tensor], sites: dict[str, Site]) -> None:
    """Raise :class:`AttachError` unless every mask has its site's shape.

    Example:
        >>> check_shapes({"fc": torch.ones(3)}, {"fc": Site("fc", "neuron", (4,), "fc")})
        Traceback (most recent call last):
        ...
        sc_interp.errors.AttachError: mask for site 'fc' has shape (3,), the model's site has shape (4,)
    """
    for name, mask in masks.items():
        site = sites.get(name)
        if site is None:
            raise TargetError(f"no site {name!r} in this model; sites: {list(sites)[:20]}")
        if tuple(mask.shape) != tuple(site.shape):
            raise AttachError(
                f"mask for site {name!r} has shape {tuple(mask.shape)}, the model's site has "
                f"shape {tuple(site.shape)}"
            )


def expand_to_activation(mask: Tensor, site: Site, activation: Tensor) -> Tensor:
    """Reshape a ``[n_units]`` mask so it broadcasts against ``activation`` at ``site``.

    Example:
        >>> site = Site("z", "head", (2,), "z", axis=-1, group=3)
        >>> expand_to_activation(torch.tensor([1.0, 0.0]), site, torch.ones(5, 6)).shape
        torch.Size([6])
    """
    if site.group > 1:
        mask = mask.repeat_interleave(site.group)
    axis = site.axis % activation.ndim
    if activation.shape[axis] != mask.shape[0]:
        raise ConfigError(
            f"site {site.name!r}: activation has {activation.shape[axis]} features on axis "
            f"{site.axis} but the mask has {mask.shape[0]}"
        )
    shape = [1] * (activation.ndim - axis)
    shape[0] = mask.shape[0]
    return mask.to(activation.dtype).view(shape)


_PARAMETRIZED_KEY = re.compile(r"\.parametrizations\.(\w+)\.original$")


def fingerprint(state_keys_and_shapes: Sequence[tuple[str, tuple[int, ...]]]) -> str:
    """A stable hash of parameter names and shapes (what a mask file was made for)."""
    import hashlib

    h = hashlib.sha256()
    for k, shape in sorted(state_keys_and_shapes):
        h.update(f"{k}:{tuple(shape)};".encode())
    return h.hexdigest()[:16]


def model_fingerprint(model: torch.nn.Module) -> str:
    """Fingerprint of ``model``: state_dict keys and shapes, ignoring our parametrizations."""
    items = []
    for key, value in model.state_dict().items():
        items.append((_PARAMETRIZED_KEY.sub(r".\1", key), tuple(value.shape)))
    return fingerprint(items)
