"""Map a learned subnetwork's masks (keyed by site name) to canonical nodes.

TransformerLens sites map to units by name (see :mod:`sc_interp.circuits._site_names`).
Hugging Face models (plain or under nnsight) name their sites by module path
(``model.layers.0.self_attn.o_proj``, ``transformer.h.0.attn.c_attn.weight``); their mask
entries map to units by each site's :class:`~sc_interp.sites.UnitMap`, which the adapter
derives from the config and the module's real layout (``nn.Linear`` ``[out, in]``,
``Conv1D`` ``[in, out]``, fused ``[q | k | v]`` or per-head interleaved qkv, key/value
heads shared by several query heads). A MaskSet carries them in its sites, a Subnetwork
stores them (also in its file), and ``model=`` supplies them for a bare ``{site: mask}``
dict. Where a site has a UnitMap it wins over the name rules (the bridge around
GPT-2 has ``Conv1D`` ``attn.o``/``mlp.in``/``mlp.out``, which the names would misread).

A unit (head ``a{L}.h{H}`` or neuron ``m{L}.n{I}``) gathers every mask entry of its slices
across the sites of its layer. ``aggregation`` decides when it is kept: ``"any"`` entry
kept (the default: a unit with any surviving weight still computes something),
``"majority"`` (more than half kept) or ``"all"``. The MLP node ``m{L}`` is kept when any
of its neurons is. With logits, a unit's score is the k-th largest logit of its entries
(k = 1 for "any", n//2+1 for "majority", n for "all"), so that ``score > 0`` matches
the kept rule when masks are ``logits > 0``; ``m{L}`` scores the max of its neurons.
Sites that are no unit (embeddings, norms, biases) are skipped with a log message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from sc_interp.circuits._circuit import Circuit
from sc_interp.circuits._site_names import SITE, unit_rows
from sc_interp.errors import CircuitError, ConfigError
from sc_interp.sites import UnitMap

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

Aggregation = Literal["any", "majority", "all"]
AGGREGATIONS = ("any", "majority", "all")


class ModelDims(NamedTuple):
    """Sizes read from a model, its ``cfg`` or a config mapping (``None`` when unknown)."""

    n_layers: int | None = None
    n_heads: int | None = None
    d_mlp: int | None = None
    d_model: int | None = None


# no real model has more layers, heads or hidden units per layer than this; a larger number
# is a typo that would otherwise allocate unit sets until memory runs out
MAX_DIM = 1_000_000


def model_dims(model: object) -> ModelDims:
    """Read ``n_layers``, ``n_heads``, ``d_mlp``, ``d_model`` from a model or config.

    Example:
        >>> model_dims({"n_layers": 2, "n_heads": 4})
        ModelDims(n_layers=2, n_heads=4, d_mlp=None, d_model=None)
    """
    if model is None:
        return ModelDims()
    module = _module(model)
    if module is not None and getattr(module, "cfg", None) is None:
        from sc_interp.adapters import hf

        found = hf.dims(module) if hf.is_hf(module) else None
        if found is not None:
            return ModelDims(found.n_layers, found.n_heads, found.d_mlp, found.d_model)
    cfg = getattr(module if module is not None else model, "cfg", model)
    values: list[int | None] = []
    for key in ModelDims._fields:
        value = cfg.get(key) if isinstance(cfg, Mapping) else getattr(cfg, key, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise CircuitError(f"model config {key}={value!r} is not an integer")
        if value is not None and not 0 < value <= MAX_DIM:
            raise CircuitError(
                f"model config {key}={value!r}: must be an integer in [1, {MAX_DIM}]"
            )
        values.append(value)
    return ModelDims(*values)


def _module(model: object) -> Any:
    """The torch module of a model or nnsight wrapper; ``None`` for configs and mappings."""
    from torch import nn

    from sc_interp.adapters.nnsight import is_nnsight, unwrap

    if is_nnsight(model):
        return unwrap(model)
    return model if isinstance(model, nn.Module) else None


def site_units(model: object) -> dict[str, tuple[tuple[int, ...], UnitMap]]:
    """Every site's mask shape and :class:`UnitMap` in ``model`` (all units), by site name.

    Example:
        >>> site_units(None)
        {}
    """
    module = _module(model)
    if module is None:
        return {}
    from sc_interp.adapters import find_sites

    found: dict[str, tuple[tuple[int, ...], UnitMap]] = {}
    for unit in ("weight", "neuron", "head"):
        for site in find_sites(module, unit):
            if site.units is not None:
                found.setdefault(site.name, (site.shape, site.units))
    return found


@dataclass
class NodeView:
    """Units a subnetwork keeps, their scores, and every unit it could keep."""

    nodes: set[str]
    scores: dict[str, float] | None = None
    universe: set[str] | None = None
    n_layers: int | None = None
    sites: list[str] = field(default_factory=list)
    from_masks: bool = False


def _as_tensor(value: object, name: str) -> torch.Tensor:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()  # type: ignore[union-attr]
    try:
        return torch.as_tensor(value).cpu()
    except Exception as exc:
        raise CircuitError(f"mask {name!r} is not a tensor: {type(value).__name__}") from exc


def split_masks(
    tensors: Mapping[str, object],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Bool or 0/1 tensors are masks; other float tensors are logits (masks = logits > 0).

    Example:
        >>> import torch
        >>> masks, logits = split_masks({"blocks.0.attn.hook_z": torch.tensor([0.5, -1.0])})
        >>> masks["blocks.0.attn.hook_z"].tolist(), logits is not None
        ([True, False], True)
    """
    masks: dict[str, torch.Tensor] = {}
    logits: dict[str, torch.Tensor] = {}
    for name, value in tensors.items():
        t = _as_tensor(value, str(name))
        if t.dtype.is_floating_point and not bool(((t == 0) | (t == 1)).all()):
            logits[str(name)] = t.float()
            masks[str(name)] = t > 0
        else:
            masks[str(name)] = t.bool()
    return masks, (logits or None)


def _own_units(obj: object) -> dict[str, UnitMap]:
    """UnitMaps an object carries: a MaskSet's sites, a Subnetwork's ``units``."""
    sites = getattr(obj, "sites", None)
    if isinstance(sites, Mapping):
        return {k: s.units for k, s in sites.items() if getattr(s, "units", None) is not None}
    units = getattr(obj, "units", None)
    if isinstance(units, Mapping):
        return {k: v for k, v in units.items() if isinstance(v, UnitMap)}
    return {}


def _extract(obj: object) -> tuple[dict, dict | None, dict[str, UnitMap]] | None:
    """``(masks, logits, unit maps)`` of a mask-type subnetwork, ``None`` for anything else."""
    import torch

    if isinstance(obj, Circuit):
        return None
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return (*split_masks(obj), {})
        return None
    masks = getattr(obj, "masks", None)
    if not isinstance(masks, Mapping):
        hard = getattr(obj, "hard", None)
        masks = hard() if callable(hard) else None
    if not isinstance(masks, Mapping):
        return None
    logits = getattr(obj, "logits", None)
    masks = {str(k): _as_tensor(v, str(k)).bool() for k, v in masks.items()}
    if isinstance(logits, Mapping) and logits:
        logits = {str(k): _as_tensor(v, str(k)).float() for k, v in logits.items()}
        for k in masks:
            if k in logits and logits[k].shape != masks[k].shape:
                raise CircuitError(
                    f"logits of {k!r} have shape {tuple(logits[k].shape)}, "
                    f"mask has {tuple(masks[k].shape)}"
                )
        return masks, {k: v for k, v in logits.items() if k in masks}, _own_units(obj)
    return masks, None, _own_units(obj)


def _aggregate(values: torch.Tensor, aggregation: str) -> bool:
    if aggregation == "any":
        return bool(values.any())
    if aggregation == "all":
        return bool(values.all())
    return int(values.sum()) * 2 > values.numel()


def _score(values: torch.Tensor, aggregation: str) -> float:
    n = values.numel()
    k = {"any": 1, "majority": n // 2 + 1, "all": n}[aggregation]
    return float(values.flatten().topk(k).values[-1])


def _entries(
    name: str, t: torch.Tensor, n_heads: int | None, unit_map: UnitMap | None
) -> tuple[str, int, list[tuple[int, torch.Tensor]]] | None:
    """``(kind, layer, [(unit index, entries)])`` of one site; ``None`` if it is no unit."""
    if unit_map is not None:
        try:
            return unit_map.kind, unit_map.layer, unit_map.split(t)
        except ConfigError as exc:
            raise CircuitError(f"mask {name!r}: {exc}") from None
    rows = unit_rows(name, t, n_heads)
    if rows is None:
        return None
    kind, table = rows
    layer = int(SITE.search(name)[1])  # type: ignore[index]
    return kind, layer, [(i, table[i].reshape(-1)) for i in range(table.shape[0])]


def subnetwork_view(
    obj: object,
    *,
    n_heads: int | None = None,
    aggregation: str = "any",
    units: Mapping[str, tuple[tuple[int, ...], UnitMap]] | None = None,
) -> NodeView | None:
    """The units a mask-type subnetwork keeps; ``None`` if ``obj`` holds no masks.

    ``units`` gives a model's site layouts (see :func:`site_units`), used for masks of the
    site's shape; the object's own (a MaskSet's sites, a Subnetwork's ``units``) take
    precedence, and name rules cover TransformerLens sites without either.

    Example:
        >>> import torch
        >>> view = subnetwork_view({"blocks.1.attn.hook_z": torch.tensor([True, False])})
        >>> sorted(view.nodes), sorted(view.universe)
        (['a1.h0'], ['a1.h0', 'a1.h1'])
    """
    if aggregation not in AGGREGATIONS:
        raise CircuitError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    extracted = _extract(obj)
    if extracted is None:
        return None
    masks, logits, own = extracted
    layouts = {
        name: unit_map
        for name, (shape, unit_map) in (units or {}).items()
        if name in masks and tuple(masks[name].shape) == shape
    }
    layouts.update(own)
    gathered: dict[str, list] = {}
    gathered_logits: dict[str, list] = {}
    used, skipped = [], []
    for name, mask in masks.items():
        found = _entries(name, mask, n_heads, layouts.get(name))
        if found is None:
            skipped.append(name)
            continue
        kind, layer, table = found
        logit_rows = None
        if logits is not None and name in logits:
            logit_rows = _entries(name, logits[name], n_heads, layouts.get(name))
        used.append(name)
        for position, (i, entries) in enumerate(table):
            unit = f"a{layer}.h{i}" if kind == "head" else f"m{layer}.n{i}"
            gathered.setdefault(unit, []).append(entries)
            if logit_rows is not None:
                gathered_logits.setdefault(unit, []).append(logit_rows[2][position][1])
    if skipped:
        logger.info("sites that are no head or neuron, skipped: %s", ", ".join(skipped))
    if not used:
        raise CircuitError(
            f"no mask site maps to a head or neuron: {sorted(masks)[:20]}; expected sites like "
            "blocks.L.attn.hook_z, blocks.L.mlp.hook_post, blocks.L.attn.W_Q or "
            "blocks.L.attn.q.weight, or a Hugging Face model's sites with model= given "
            "(a Subnetwork or MaskSet carries its own site layouts)"
        )
    return _view(gathered, gathered_logits, aggregation, used)


def _view(gathered: dict, gathered_logits: dict, aggregation: str, used: list[str]) -> NodeView:
    import torch

    nodes: set[str] = set()
    universe: set[str] = set()
    scores: dict[str, float] = {}
    for unit, parts in gathered.items():
        universe.add(unit)
        if _aggregate(torch.cat(parts), aggregation):
            nodes.add(unit)
        if unit in gathered_logits:
            scores[unit] = _score(torch.cat(gathered_logits[unit]), aggregation)
        if unit.count(".n"):
            mlp = unit.split(".")[0]
            universe.add(mlp)
            if unit in nodes:
                nodes.add(mlp)
            if unit in scores:
                scores[mlp] = max(scores.get(mlp, float("-inf")), scores[unit])
    layers = [int(re.findall(r"\d+", u)[0]) for u in universe]
    n_layers = max(layers) + 1 if layers else None
    return NodeView(nodes, scores or None, universe, n_layers, used, from_masks=True)


def to_circuit(
    obj: object, *, model: object = None, n_heads: int | None = None, aggregation: str = "any"
) -> Circuit:
    """A :class:`Circuit` of a subnetwork's kept nodes (scored by logits), or ``load(obj)``.

    Example:
        >>> import torch
        >>> sorted(to_circuit({"blocks.0.mlp.hook_post": torch.tensor([0, 1])}).nodes)
        ['m0', 'm0.n1']
    """
    from sc_interp.circuits._edges import edge_view
    from sc_interp.circuits.formats import load

    dims = model_dims(model)
    edges = edge_view(obj, model)
    if edges is not None:
        return edges.to_circuit(n_layers=dims.n_layers, n_heads=dims.n_heads)
    view = subnetwork_view(
        obj, n_heads=n_heads or dims.n_heads, aggregation=aggregation, units=site_units(model)
    )
    if view is None:
        return load(obj, n_layers=dims.n_layers, n_heads=dims.n_heads, d_mlp=dims.d_mlp)
    return Circuit(frozenset(view.nodes), scores=view.scores or {}, source="subnetwork").validate(
        n_layers=dims.n_layers, n_heads=dims.n_heads, d_mlp=dims.d_mlp
    )
