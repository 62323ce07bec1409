"""Edge subnetworks as graphs: kept edges, their scores, and edge-level comparison.

An edge mask (``MaskConfig(unit="edge")``) names each entry by its canonical edge
(``a0.h1->a1.h2<v>``, see :mod:`sc_interp.circuits.naming`). A MaskSet carries those names
in its sites, a Subnetwork in ``edges``; for a bare ``{site: mask}`` dict the model
(``model=``) supplies them. The kept edges (``mask``) and their logits (scores) make a
:class:`Circuit` like any circuit-discovery output, so :func:`sc_interp.compare` can count
agreement over edges and :func:`sc_interp.circuits.to_eap_json` writes the graph itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from sc_interp.circuits._circuit import Circuit
from sc_interp.circuits._eap import _expand, graph_edges
from sc_interp.circuits.naming import edge_nodes, parse_edge, parse_node
from sc_interp.errors import CircuitError

_EDGE_SITE = re.compile(r"(^|\.)blocks\.\d+\.hook_(q_input|k_input|v_input|mlp_in|resid_post)$")


@dataclass
class EdgeView:
    """Edges an edge subnetwork keeps, every edge it masks, and their logits."""

    edges: set[str]
    universe: set[str]
    scores: dict[str, float] | None = None

    def nodes(self) -> tuple[set[str], set[str], dict[str, float] | None]:
        """Node aggregation: a head or MLP is kept when any kept edge touches it.

        Returns ``(kept units, every unit touched, unit scores)``; a unit's score is the
        largest logit of the edges touching it (``> 0`` exactly when it is kept).
        """
        kept = {n for e in self.edges for n in edge_nodes(e)} - {"input", "logits"}
        universe = {n for e in self.universe for n in edge_nodes(e)} - {"input", "logits"}
        scores = None
        if self.scores is not None:
            scores = {}
            for edge, value in self.scores.items():
                for node in set(edge_nodes(edge)) & universe:
                    scores[node] = max(scores.get(node, -math.inf), value)
        return kept, universe, scores

    def to_circuit(self, **dims: int | None) -> Circuit:
        """The kept edges as a Circuit, every masked edge scored by its logit."""
        return Circuit(
            frozenset(), frozenset(self.edges), self.scores or {}, source="subnetwork", **dims
        ).validate(n_layers=dims.get("n_layers"), n_heads=dims.get("n_heads"))


def _edge_names(obj: object, names: list[str], model: object) -> dict[str, tuple[str, ...]]:
    sites = getattr(obj, "sites", None)
    if isinstance(sites, Mapping):
        found = {k: s.edges for k, s in sites.items() if getattr(s, "edges", ())}
        if found:
            return found
    edges = getattr(obj, "edges", None)
    if isinstance(edges, Mapping) and edges:
        return {str(k): tuple(v) for k, v in edges.items()}
    if model is None or not any(_EDGE_SITE.search(n) for n in names):
        return {}
    from sc_interp.circuits._subnetwork import _module

    module = _module(model)
    if module is None:
        return {}
    from sc_interp.adapters import find_sites

    return {s.name: s.edges for s in find_sites(module, "edge")}


def edge_view(obj: object, model: object = None) -> EdgeView | None:
    """The edge view of an edge subnetwork (MaskSet, Subnetwork, ``{site: mask}``), else None.

    Example:
        >>> import torch
        >>> from sc_interp.subnetwork import Subnetwork
        >>> from sc_interp.masks import MaskConfig
        >>> sub = Subnetwork({"blocks.0.hook_mlp_in": torch.tensor([1.0, -1.0])},
        ...                  MaskConfig(unit="edge"),
        ...                  edges={"blocks.0.hook_mlp_in": ("input->m0", "a0.h0->m0")})
        >>> view = edge_view(sub)
        >>> sorted(view.edges), view.scores["a0.h0->m0"]
        (['input->m0'], -1.0)
    """
    from sc_interp.circuits._subnetwork import _extract

    extracted = _extract(obj)
    if extracted is None:
        return None
    masks, logits, _ = extracted
    names = _edge_names(obj, list(masks), model)
    if not names:
        if any(_EDGE_SITE.search(n) for n in masks) and not getattr(obj, "units", None):
            raise CircuitError(
                f"masks {sorted(masks)[:3]} look like edge sites but carry no edge names; pass "
                "model= (the model they were learned on), or a Subnetwork or MaskSet"
            )
        return None
    kept: set[str] = set()
    universe: set[str] = set()
    scores: dict[str, float] = {}
    for site, mask in masks.items():
        site_edges = names.get(site)
        if site_edges is None:
            raise CircuitError(f"mask {site!r} is no edge site; edge sites: {sorted(names)[:8]}")
        if len(site_edges) != mask.numel():
            raise CircuitError(
                f"mask {site!r} has {mask.numel()} entries but its site has {len(site_edges)} "
                "edges; pass the model the masks were learned on"
            )
        flat = mask.reshape(-1).tolist()
        universe.update(site_edges)
        kept.update(e for e, k in zip(site_edges, flat, strict=True) if k)
        if logits is not None and site in logits:
            values = logits[site].reshape(-1).tolist()
            scores.update(zip(site_edges, values, strict=True))
    return EdgeView(kept, universe, scores or None)


def circuit_edges(circuit: Circuit) -> tuple[set[str], dict[str, float]]:
    """A circuit's edges and edge scores, edges into a head without q/k/v as all three."""
    edges = {e for name in circuit.edges for e in _expand(name)}
    scores: dict[str, float] = {}
    for name, value in circuit.scores.items():
        if "->" in name and not math.isnan(value):
            for e in _expand(name):
                scores[e] = max(scores.get(e, -math.inf), abs(value))
    return edges, scores


def edge_group(edge: str) -> int | str:
    """The row an edge is reported in: its destination's layer, or ``"logits"``."""
    layer = parse_node(parse_edge(edge).dst).layer
    return "logits" if layer is None else layer


def full_edges(n_layers: int | None, n_heads: int | None) -> set[str]:
    """Every edge of the model's graph (empty when its size is unknown)."""
    if not n_layers or not n_heads:
        return set()
    return set(graph_edges(n_layers, n_heads))
