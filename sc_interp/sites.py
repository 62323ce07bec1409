"""Mask sites: the places in a model where a mask can act.

A :class:`Site` pairs the toolkit's own name for a place (``blocks.0.mlp.hook_post``,
``blocks.0.attn.W_Q``, ``fc1.weight``, ``model.layers.0.self_attn.o_proj``) with how a mask
is applied there: either as a parametrization of a weight tensor (``unit="weight"``) or as
a hook that scales an activation (``unit="neuron"`` / ``"head"``): a module's output
(``io="output"``, a forward hook) or its input (``io="input"``, a forward pre-hook; Hugging
Face heads are the input of the attention output projection). A :class:`UnitMap` says which
canonical circuit units (``a{L}.h{H}``, ``m{L}.n{I}``) a site's mask entries belong to.
Edge sites (``unit="edge"``) group the edges into one kind of destination input of one layer
(``blocks.1.hook_q_input``); ``Site.edges`` names each mask entry (``a0.h1->a1.h2<q>``), see
:mod:`sc_interp._edge_graph`.
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

Unit = Literal["weight", "neuron", "head", "edge"]
UNITS: tuple[str, ...] = get_args(Unit)


@dataclass(frozen=True)
class UnitMap:
    """Which circuit units a site's mask entries belong to, from the site's real layout.

    Along ``axis`` of the mask, the entries form ``sections`` equal blocks (3 for a fused
    ``[q | k | v]`` projection); each block holds consecutive slices of ``group`` entries,
    slice ``i`` belonging to units ``i * share ... i * share + share - 1`` (``share > 1``:
    a key/value head serves several query heads under grouped-query attention).

    Attributes:
        kind: ``"head"`` (node ``a{layer}.h{H}``) or ``"neuron"`` (node ``m{layer}.n{I}``).
        layer: the transformer layer.
        axis: the mask axis that runs over units (``1`` for the input side of a Linear
            ``[out, in]`` weight, ``0`` for the input side of a Hugging Face ``Conv1D``).
        group: consecutive entries along ``axis`` per slice (a head's ``head_dim``).
        sections: equal blocks along ``axis`` that each run over all slices.
        share: units per slice.

    Example:
        >>> fused = UnitMap("head", 0, axis=0, group=2, sections=3)  # [q | k | v] rows, 2 heads
        >>> [(unit, entries.tolist()) for unit, entries in fused.split(torch.arange(12))]
        [(0, [0, 1, 4, 5, 8, 9]), (1, [2, 3, 6, 7, 10, 11])]
    """

    kind: Literal["head", "neuron"]
    layer: int
    axis: int = 0
    group: int = 1
    sections: int = 1
    share: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("head", "neuron"):
            raise ConfigError(f"UnitMap kind must be 'head' or 'neuron', got {self.kind!r}")
        values = (self.layer, self.axis, self.group, self.sections, self.share)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"UnitMap fields must be integers, got {values}")
        if self.layer < 0 or min(self.group, self.sections, self.share) < 1:
            raise ConfigError(f"UnitMap has a negative layer or a size below 1: {self}")

    def split(self, mask: Tensor) -> list[tuple[int, Tensor]]:
        """``(unit index, flat entries)`` for every unit this mask covers."""
        if mask.ndim == 0 or not -mask.ndim <= self.axis < mask.ndim:
            raise ConfigError(f"a mask of shape {tuple(mask.shape)} has no axis {self.axis}")
        moved = mask.movedim(self.axis, 0)
        size = moved.shape[0]
        if size % (self.sections * self.group):
            raise ConfigError(
                f"a mask of shape {tuple(mask.shape)} does not split into {self.sections} "
                f"section(s) of {self.group}-entry slices along axis {self.axis}"
            )
        slices = size // (self.sections * self.group)
        view = moved.reshape(self.sections, slices, self.group, -1)
        out = []
        for i in range(slices):
            entries = view[:, i].reshape(-1)
            out.extend((i * self.share + j, entries) for j in range(self.share))
        return out

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (stored in Subnetwork files)."""
        return dict(self.__dict__)


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
            The axis comes from the module's real layout (``[out, in]`` for ``nn.Linear``,
            ``[in, out]`` for Hugging Face ``Conv1D``).
        io: for activation sites, whether the mask scales the module's ``"output"`` (a
            forward hook) or its ``"input"`` (a forward pre-hook on its first argument).
        default: whether ``MaskConfig(targets=None)`` selects this site. Embeddings and
            unembeddings are listed but only masked when a target names them.
        units: the canonical circuit units the mask entries belong to (``None``: the site
            is no head or neuron, or its layout is unknown); used by :func:`sc_interp.compare`.
        edges: for edge sites, the canonical edge name of each mask entry (in order); a
            site selected by edge targets holds only the selected edges.

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
    io: Literal["output", "input"] = "output"
    default: bool = True
    units: UnitMap | None = None
    edges: tuple[str, ...] = ()

    @property
    def kind(self) -> Literal["param", "activation", "edge"]:
        """``"param"`` for weight sites, ``"activation"`` for neuron/head sites, ``"edge"``."""
        if self.unit == "edge":
            return "edge"
        return "param" if self.unit == "weight" else "activation"

    @property
    def numel(self) -> int:
        """Number of mask entries at this site."""
        n = 1
        for d in self.shape:
            n *= d
        return n


def check_unit(unit: str) -> None:
    """Raise :class:`ConfigError` unless ``unit`` is ``weight``, ``neuron``, ``head`` or ``edge``."""
    if not isinstance(unit, str) or unit not in UNITS:
        raise ConfigError(f"unknown unit {unit!r}; allowed units: {', '.join(UNITS)}")


def select_sites(sites: Sequence[Site], targets: Sequence[str] | None) -> list[Site]:
    """Keep the sites whose name matches any glob pattern in ``targets``.

    ``None`` keeps every site marked ``default`` (all but embeddings and unembeddings).
    Every pattern must match at least one site; otherwise the error lists what exists.

    Example:
        >>> s = [Site("blocks.0.mlp.hook_post", "neuron", (4,), "m0"),
        ...      Site("blocks.1.mlp.hook_post", "neuron", (4,), "m1")]
        >>> [x.name for x in select_sites(s, ["blocks.1.*"])]
        ['blocks.1.mlp.hook_post']
    """
    if targets is None:
        return [s for s in sites if s.default]
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
    # a dict: FSDP2 writes its parameter back under the plain name while a weight mask
    # parametrizes it, so the state_dict may hold both ``x.weight`` and its ``original``
    items: dict[str, tuple[int, ...]] = {}
    for key, value in model.state_dict().items():
        items[_PARAMETRIZED_KEY.sub(r".\1", key)] = tuple(value.shape)
    return fingerprint(list(items.items()))
