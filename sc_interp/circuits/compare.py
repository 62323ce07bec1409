"""Compare a learned subnetwork (or any circuit) with a circuit-discovery output."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sc_interp._optional import require
from sc_interp.circuits._circuit import Circuit
from sc_interp.circuits._eap import full_units
from sc_interp.circuits._edges import circuit_edges, edge_group, edge_view, full_edges
from sc_interp.circuits._metrics import auprc, auroc
from sc_interp.circuits._subnetwork import (
    NodeView,
    _extract,
    model_dims,
    site_units,
    subnetwork_view,
)
from sc_interp.circuits.formats import load
from sc_interp.circuits.naming import node_layer, parse_node
from sc_interp.errors import CircuitError
from sc_interp.sites import UnitMap

if TYPE_CHECKING:
    import pandas

COLUMNS = (
    "layer",
    "n_units",
    "n_sub",
    "n_circuit",
    "n_both",
    "iou",
    "precision",
    "recall",
    "f1",
    "auroc",
    "auprc",
    "scored_by",
    "aggregation",
    "n_circuit_outside",
)


def _side(
    obj: object,
    *,
    model: object,
    n_heads: int | None,
    aggregation: str,
    layouts: dict[str, tuple[tuple[int, ...], UnitMap]],
) -> NodeView:
    dims = model_dims(model)
    edges = edge_view(obj, model)
    if edges is not None:  # node aggregation of an edge subnetwork
        nodes, universe, scores = edges.nodes()
        layers = [node_layer(n) for n in universe]
        n_layers = max((x for x in layers if x is not None), default=-1) + 1 or None
        return NodeView(nodes, scores, universe, n_layers, from_masks=True)
    view = subnetwork_view(obj, n_heads=n_heads, aggregation=aggregation, units=layouts)
    if view is not None:
        Circuit(frozenset(view.nodes)).validate(
            n_layers=dims.n_layers, n_heads=dims.n_heads, d_mlp=dims.d_mlp
        )
        return view
    circuit = load(obj, n_layers=dims.n_layers, n_heads=dims.n_heads, d_mlp=dims.d_mlp)
    units = set(circuit.units)
    scores = {k: v for k, v in circuit.node_scores().items() if k not in ("input", "logits")}
    universe = set(scores) | units
    if circuit.n_layers and circuit.n_heads:
        universe |= full_units(circuit.n_layers, circuit.n_heads)
    return NodeView(units, scores or None, universe if scores else None, circuit.n_layers)


def _kinds(view: NodeView) -> set[str]:
    kinds = set()
    for name in (view.universe or set()) | view.nodes:
        kind = parse_node(name).kind
        if kind in ("head", "mlp", "neuron"):
            kinds.add("heads" if kind == "head" else "MLPs")
    return kinds


def _warn_if_disjoint(sub: NodeView, ref: NodeView) -> None:
    """Warn when one side has only heads and the other only MLP units: nothing to compare."""
    mine, theirs = _kinds(sub), _kinds(ref)
    if mine and theirs and not mine & theirs:
        warnings.warn(
            f"the subnetwork covers only {', '.join(sorted(mine))} and the circuit names only "
            f"{', '.join(sorted(theirs))}: they share no unit kind, so every overlap is empty; "
            "compare masks of the unit the circuit names (e.g. unit='head' for head circuits)",
            UserWarning,
            stacklevel=4,
        )


def _mlp_neurons(names: set[str] | None) -> dict[int, bool]:
    out: dict[int, bool] = {}
    for name in names or ():
        node = parse_node(name)
        if node.kind == "neuron":
            out[node.layer] = True  # type: ignore[index]
    return out


def _lift(view: NodeView, lift_layers: set[int]) -> NodeView:
    """Replace neurons of ``lift_layers`` by their MLP; drop bare MLPs elsewhere."""

    def mapped(name: str) -> str | None:
        node = parse_node(name)
        if node.kind == "neuron" and node.layer in lift_layers:
            return f"m{node.layer}"
        if node.kind == "mlp" and node.layer not in lift_layers:
            return None
        return name

    def lift_set(names: set[str] | None) -> set[str] | None:
        if names is None:
            return None
        return {m for n in names if (m := mapped(n)) is not None}

    scores = None
    if view.scores is not None:
        scores = {}
        for name, value in view.scores.items():
            if (m := mapped(name)) is not None:
                scores[m] = max(scores.get(m, -math.inf), value)
    return NodeView(
        lift_set(view.nodes) or set(),
        scores,
        lift_set(view.universe),
        view.n_layers,
        from_masks=view.from_masks,
    )


def _metrics(
    universe: set[str], sub: set[str], ref: set[str], scores: dict[str, float] | None, by: str
) -> dict:
    s, c = sub & universe, ref & universe
    both, union = len(s & c), len(s | c)
    precision = both / len(s) if s else math.nan
    recall = both / len(c) if c else math.nan
    f1 = 2 * both / (len(s) + len(c)) if (s or c) else math.nan
    row = {
        "n_units": len(universe),
        "n_sub": len(s),
        "n_circuit": len(c),
        "n_both": both,
        "iou": both / union if union else math.nan,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "auroc": math.nan,
        "auprc": math.nan,
    }
    if scores is not None and universe:
        names = sorted(universe)
        finite = [v for v in scores.values() if math.isfinite(v)]
        floor = (min(finite) if finite else 0.0) - 1.0  # unscored units rank last
        values = [scores.get(n, floor) for n in names]
        values = [v if math.isfinite(v) else floor for v in values]
        labels = [n in (c if by == "subnetwork" else s) for n in names]
        row["auroc"], row["auprc"] = auroc(values, labels), auprc(values, labels)
    return row


@dataclass
class ComparedSets:
    """The units both sides are compared over (see :func:`compare`)."""

    universe: set[str]
    sub: set[str]
    circuit: set[str]
    outside: set[str]
    scores: dict[str, float] | None
    scored_by: str
    lifted_layers: set[int]


def node_sets(
    subnetwork_or_circuit: object,
    circuit: object,
    model: object = None,
    *,
    aggregation: str = "any",
    n_heads: int | None = None,
) -> ComparedSets:
    """The compared units, what each side keeps among them, and the ranking scores.

    Example:
        >>> sets = node_sets(["a0.h1"], ["a0.h1", "a0.h2"])
        >>> sorted(sets.universe), sorted(sets.sub)
        (['a0.h1', 'a0.h2'], ['a0.h1'])
    """
    n_heads = n_heads or model_dims(model).n_heads
    layouts = site_units(model)
    sub, ref = (
        _side(side, model=model, n_heads=n_heads, aggregation=aggregation, layouts=layouts)
        for side in (subnetwork_or_circuit, circuit)
    )
    _warn_if_disjoint(sub, ref)
    sub_neurons = _mlp_neurons((sub.universe or set()) | sub.nodes)
    ref_neurons = _mlp_neurons((ref.universe or set()) | ref.nodes)
    layers_seen = {node_layer(n) for n in sub.nodes | ref.nodes | (sub.universe or set())}
    lift = {
        layer
        for layer in layers_seen
        if layer is not None and not (sub_neurons.get(layer) and ref_neurons.get(layer))
    }
    sub, ref = _lift(sub, lift), _lift(ref, lift)
    dims = model_dims(model)
    if sub.from_masks and sub.universe is not None:
        universe = set(sub.universe)  # only what the subnetwork's masks cover
    else:
        universe = (sub.universe or set()) | (ref.universe or set()) | sub.nodes | ref.nodes
        if dims.n_layers and dims.n_heads:
            full = NodeView(set(), None, full_units(dims.n_layers, dims.n_heads))
            universe |= _lift(full, lift).universe or set()
    outside = ref.nodes - universe
    scores, by = _ranking_scores(sub, ref)
    return ComparedSets(
        universe,
        sub.nodes & universe,
        ref.nodes & universe,
        outside,
        scores,
        by,
        lift,
    )


@dataclass
class _EdgeSide:
    edges: set[str]
    universe: set[str] | None
    scores: dict[str, float] | None


def _edge_side(obj: object, model: object) -> _EdgeSide | None:
    view = edge_view(obj, model)
    if view is not None:
        return _EdgeSide(view.edges, view.universe, view.scores)
    if _extract(obj) is not None:
        return None  # weight, neuron or head masks: no edges
    dims = model_dims(model)
    circuit = load(obj, n_layers=dims.n_layers, n_heads=dims.n_heads, d_mlp=dims.d_mlp)
    if not circuit.edges:
        return None
    edges, scores = circuit_edges(circuit)
    return _EdgeSide(edges, None, scores or None)


def edge_sets(
    subnetwork_or_circuit: object, circuit: object, model: object = None
) -> ComparedSets | None:
    """The compared edges (as :func:`node_sets` does for nodes); ``None`` if a side has none.

    Example:
        >>> sets = edge_sets(["a0.h1->logits"], ["a0.h1->logits", "input->a0.h1<q>"])
        >>> sorted(sets.universe), sorted(sets.sub)
        (['a0.h1->logits', 'input->a0.h1<q>'], ['a0.h1->logits'])
    """
    sub = _edge_side(subnetwork_or_circuit, model)
    ref = _edge_side(circuit, model) if sub is not None else None
    if sub is None or ref is None:
        return None
    dims = model_dims(model)
    if sub.universe is not None:
        universe = set(sub.universe)  # only the edges the subnetwork's masks cover
    else:
        universe = sub.edges | ref.edges | set(sub.scores or ()) | set(ref.scores or ())
        universe |= ref.universe or set()
        universe |= full_edges(dims.n_layers, dims.n_heads)
    scores, by = _ranking_scores(sub, ref)
    return ComparedSets(
        universe, sub.edges & universe, ref.edges & universe, ref.edges - universe, scores, by,
        set(),
    )  # fmt: skip


def _edge_frame(sets: ComparedSets, aggregation: str) -> pandas.DataFrame:
    pd = require("pandas")
    extra = {"scored_by": sets.scored_by, "aggregation": "edge"}
    rows = [
        {
            "layer": "all",
            **_metrics(sets.universe, sets.sub, sets.circuit, sets.scores, sets.scored_by),
            **extra,
            "n_circuit_outside": len(sets.outside),
        }
    ]
    groups = {edge_group(e) for e in sets.universe}
    ordered = sorted(g for g in groups if isinstance(g, int)) + (
        ["logits"] if "logits" in groups else []
    )
    for group in ordered:
        in_group = {e for e in sets.universe if edge_group(e) == group}
        n_out = sum(1 for e in sets.outside if edge_group(e) == group)
        row = _metrics(in_group, sets.sub, sets.circuit, sets.scores, sets.scored_by)
        rows.append({"layer": group, **row, **extra, "n_circuit_outside": n_out})
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.attrs["level"] = "edge"
    frame.attrs["aggregation"] = aggregation
    return frame


LEVELS = ("auto", "edge", "node")


def compare(
    subnetwork_or_circuit: object,
    circuit: object,
    model: object = None,
    *,
    aggregation: str = "any",
    n_heads: int | None = None,
    level: str = "auto",
) -> pandas.DataFrame:
    """Agreement of a subnetwork with a reference circuit, overall and per layer.

    ``level="edge"`` compares edges (an edge subnetwork, ``MaskConfig(unit="edge")``, against
    a circuit with edges: EAP-IG, auto-circuit, ACDC, or another edge subnetwork); rows are
    per destination layer (edges into ``logits`` in a ``"logits"`` row), ``aggregation`` is
    ``"edge"``, edges into a head without ``<q|k|v>`` count as all three, and AUROC ranks
    edges by the subnetwork's logits (else by the circuit's ``|score|``). ``level="node"``
    compares nodes (an edge subnetwork keeps every head or MLP that a kept edge touches).
    ``"auto"`` (the default) compares edges when both sides have edges, else nodes.

    ``subnetwork_or_circuit`` is a :class:`~sc_interp.circuits.Circuit`, anything
    :func:`~sc_interp.circuits.load` reads, a ``{site: BoolTensor}`` dict, or an object
    with ``.masks`` (and ``.logits``) or ``.hard()`` (a Subnetwork or MaskSet). Its masks
    map to heads ``a{L}.h{H}`` and neurons ``m{L}.n{I}`` by ``aggregation`` (see
    :mod:`sc_interp.circuits._subnetwork`). ``circuit`` is the reference.

    The comparison runs where both can be compared:

    - ``input`` and ``logits`` are left out; edge circuits count through their nodes;
    - MLPs: per layer, neurons are compared when both sides have neuron-level nodes,
      else neurons are lifted to their ``m{L}`` node;
    - when the two sides share no unit kind (only heads against only MLP units) a
      ``UserWarning`` says so: every overlap is then empty;
    - when the subnetwork has masks, only the units its sites cover count (a circuit
      head in an unmasked layer is in ``n_circuit_outside``, not a miss);
    - AUROC/AUPRC rank units by the subnetwork's mask logits (``scored_by="subnetwork"``,
      labels: in the circuit), else by the circuit's node scores (``"circuit"``, labels:
      in the subnetwork; see :meth:`Circuit.node_scores`), else are ``nan``.

    Args:
        subnetwork_or_circuit: the learned subnetwork (or a circuit).
        circuit: the reference circuit.
        model: a model (or config) whose ``cfg.n_layers/n_heads/d_mlp`` (Hugging Face:
            ``config.num_hidden_layers/...``) both sides are checked against
            (``CircuitError`` lists units it does not have); also gives each site's real
            layout, needed for a bare ``{site: mask}`` dict of a Hugging Face or nnsight
            model (a Subnetwork or MaskSet carries its own), and ``n_heads`` to split TL 4
            bridge ``attn.q.weight``-style masks.
        aggregation: ``"any"``, ``"majority"`` or ``"all"`` weights of a unit kept.
        n_heads: heads per layer when no ``model`` is given (bridge weight masks).

    Returns:
        A DataFrame with one ``layer="all"`` row and one row per layer; columns
        ``layer, n_units, n_sub, n_circuit, n_both, iou, precision, recall, f1, auroc,
        auprc, scored_by, aggregation, n_circuit_outside``.

    Example:
        >>> df = compare([(0, 1), (1, 2)], ["a0.h1", "a1.h3"])
        >>> row = df.iloc[0]
        >>> row["layer"], round(float(row["iou"]), 3), float(row["precision"])
        ('all', 0.333, 0.5)
    """
    pd = require("pandas")
    if level not in LEVELS:
        raise CircuitError(f"level must be one of {LEVELS}, got {level!r}")
    if level != "node":
        edges = edge_sets(subnetwork_or_circuit, circuit, model)
        if edges is not None:
            return _edge_frame(edges, aggregation)
        if level == "edge":
            raise CircuitError(
                "level='edge' needs edges on both sides: an edge subnetwork "
                "(MaskConfig(unit='edge')) or a circuit with edges (EAP-IG, auto-circuit, "
                "ACDC); use level='node' for node lists and head/neuron masks"
            )
    sets = node_sets(
        subnetwork_or_circuit, circuit, model, aggregation=aggregation, n_heads=n_heads
    )
    universe, outside, scores, by = sets.universe, sets.outside, sets.scores, sets.scored_by
    sub_nodes, ref_nodes, lift = sets.sub, sets.circuit, sets.lifted_layers
    extra = {"scored_by": by, "aggregation": aggregation}
    rows = [
        {
            "layer": "all",
            **_metrics(universe, sub_nodes, ref_nodes, scores, by),
            **extra,
            "n_circuit_outside": len(outside),
        }
    ]
    layers = sorted(layer for layer in {node_layer(n) for n in universe} if layer is not None)
    for layer in layers:
        in_layer = {n for n in universe if node_layer(n) == layer}
        n_out = sum(1 for n in outside if node_layer(n) == layer)
        row = _metrics(in_layer, sub_nodes, ref_nodes, scores, by)
        rows.append({"layer": layer, **row, **extra, "n_circuit_outside": n_out})
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.attrs["level"] = "node"
    frame.attrs["aggregation"] = aggregation
    frame.attrs["mlp_granularity"] = {
        layer: ("mlp" if layer in lift else "neuron") for layer in layers
    }
    return frame


def _ranking_scores(sub: Any, ref: Any) -> tuple[Any, str]:
    """The scores AUROC ranks by: the subnetwork's if it has any, else the circuit's."""
    if sub.scores is not None:
        return sub.scores, "subnetwork"
    if ref.scores is not None:
        return ref.scores, "circuit"
    return None, "none"
