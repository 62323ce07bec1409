"""EAP-IG graph JSON (github.com/hannamw/EAP-IG, ``eap/graph.py``): read and write.

``Graph.to_json`` writes ``{"cfg": {...}, "nodes": {name: {"in_graph": bool, ["score": float],
["neurons": [...], "neurons_scores": [...]]}}, "edges": {name: {"score": float,
"in_graph": bool}}}``; ``cfg`` holds ``n_layers``, ``n_heads``, ``parallel_attn_mlp`` and
``d_model``. ``Graph.from_json`` rebuilds the full graph from ``cfg`` and then sets the
listed nodes and edges, so a file may list a subset of them. EAP-IG's "neurons" are the
``d_model`` output dimensions of a node, not MLP hidden units, so they are not read.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from numbers import Real
from pathlib import Path

from sc_interp.circuits._circuit import Circuit
from sc_interp.circuits.naming import QKV, Edge, is_edge, parse_edge, parse_node
from sc_interp.errors import CircuitError

EAP_KEYS = ("cfg", "nodes", "edges")


def _positive_int(cfg: Mapping, key: str) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CircuitError(f"EAP-IG JSON: cfg[{key!r}] must be a positive integer, got {value!r}")
    return value


def _flag(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise CircuitError(f"EAP-IG JSON: {where} must be true/false, got {value!r}")


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise CircuitError(f"EAP-IG JSON: {where} must be a number, got {value!r}")
    return float(value)


def read_eap(data: Mapping) -> Circuit:
    """Read an EAP-IG graph dict (as ``json.load`` gives it) into a :class:`Circuit`.

    Example:
        >>> d = {"cfg": {"n_layers": 1, "n_heads": 2, "parallel_attn_mlp": False, "d_model": 8},
        ...      "nodes": {"input": {"in_graph": True}, "a0.h1": {"in_graph": True}},
        ...      "edges": {"input->a0.h1<q>": {"score": 0.3, "in_graph": True}}}
        >>> sorted(read_eap(d).edges)
        ['input->a0.h1<q>']
    """
    cfg, nodes, edges = (data.get(k) for k in EAP_KEYS)
    if not isinstance(cfg, Mapping) or not isinstance(nodes, Mapping):
        raise CircuitError("EAP-IG JSON: 'cfg' and 'nodes' must be objects")
    if not isinstance(edges, Mapping):
        raise CircuitError("EAP-IG JSON: 'edges' must be an object {edge: {score, in_graph}}")
    n_layers, n_heads = _positive_int(cfg, "n_layers"), _positive_int(cfg, "n_heads")
    bad: list[str] = []
    kept_nodes: set[str] = set()
    kept_edges: set[str] = set()
    scores: dict[str, float] = {}
    for name, info in nodes.items():
        try:
            parse_node(name)
            if isinstance(info, Mapping):
                if _flag(info.get("in_graph", False), f"nodes[{name!r}].in_graph"):
                    kept_nodes.add(name)
                if "score" in info:
                    score = _number(info["score"], f"nodes[{name!r}].score")
                    if not math.isnan(score):
                        scores[name] = score
            elif _flag(info, f"nodes[{name!r}]"):  # the older {name: bool} form
                kept_nodes.add(name)
        except CircuitError as exc:
            bad.append(str(exc))
    for name, info in edges.items():
        try:
            parse_edge(name)
            if not isinstance(info, Mapping):
                raise CircuitError(f"EAP-IG JSON: edges[{name!r}] must be {{score, in_graph}}")
            if "score" in info:
                scores[name] = _number(info["score"], f"edges[{name!r}].score")
            if _flag(info.get("in_graph", False), f"edges[{name!r}].in_graph"):
                kept_edges.add(name)
        except CircuitError as exc:
            bad.append(str(exc))
    if bad:
        raise CircuitError("EAP-IG JSON has bad entries: " + "; ".join(bad[:20]))
    return Circuit(
        frozenset(kept_nodes), frozenset(kept_edges), scores, n_layers, n_heads, "eap-ig"
    )


def graph_nodes(n_layers: int, n_heads: int) -> list[str]:
    """Every node of EAP-IG's graph, in its order.

    Example:
        >>> graph_nodes(1, 2)
        ['input', 'a0.h0', 'a0.h1', 'm0', 'logits']
    """
    out = ["input"]
    for layer in range(n_layers):
        out += [f"a{layer}.h{h}" for h in range(n_heads)] + [f"m{layer}"]
    return [*out, "logits"]


def full_units(n_layers: int, n_heads: int) -> set[str]:
    """Every head and MLP node of a model (no ``input``/``logits``).

    Example:
        >>> sorted(full_units(1, 2))
        ['a0.h0', 'a0.h1', 'm0']
    """
    return set(graph_nodes(n_layers, n_heads)[1:-1])


def graph_edges(n_layers: int, n_heads: int) -> Iterator[str]:
    """Every edge of EAP-IG's (sequential attention-then-MLP) graph.

    Example:
        >>> len(list(graph_edges(1, 1)))
        8
    """
    upstream = ["input"]
    for layer in range(n_layers):
        heads = [f"a{layer}.h{h}" for h in range(n_heads)]
        for src in upstream:
            for head in heads:
                for letter in "qkv":
                    yield f"{src}->{head}<{letter}>"
        upstream = upstream + heads
        for src in upstream:
            yield f"{src}->m{layer}"
        upstream = [*upstream, f"m{layer}"]
    for src in upstream:
        yield f"{src}->logits"


def _expand(name: str) -> list[str]:
    """EAP-IG needs q/k/v on edges into heads: an edge without it stands for all three."""
    edge = parse_edge(name)
    if edge.qkv is None and parse_node(edge.dst).kind == "head":
        letters: tuple[QKV, ...] = ("q", "k", "v")
        return [Edge(edge.src, edge.dst, q).name for q in letters]
    return [name]


def eap_dict(circuit: Circuit, *, n_layers: int, n_heads: int, d_model: int | None) -> dict:
    """Build the EAP-IG graph dict of ``circuit`` (see :func:`sc_interp.circuits.to_eap_json`)."""
    bad_neurons = sorted(n for n in circuit.nodes if parse_node(n).kind == "neuron")
    lifted = {f"m{parse_node(n).layer}" for n in bad_neurons}
    nodes_in = set(circuit.nodes) - set(bad_neurons) | lifted
    edges: dict[str, dict] = {}
    if circuit.edges:
        for name in sorted(circuit.scores.keys() | circuit.edges):
            if is_edge(name):
                for full in _expand(name):
                    score = circuit.scores.get(name, 0.0)
                    edges[full] = {"score": score, "in_graph": name in circuit.edges}
    else:
        # A node-only circuit: every edge between kept nodes (and input/logits) is kept.
        nodes_in |= {"input", "logits"} if nodes_in else set()
        for name in graph_edges(n_layers, n_heads):
            src, dst = parse_edge(name)[:2]
            score = circuit.scores.get(name, 0.0)
            if (src in nodes_in and dst in nodes_in) or name in circuit.scores:
                edges[name] = {"score": score, "in_graph": src in nodes_in and dst in nodes_in}
    node_dict: dict[str, dict] = {}
    for name in graph_nodes(n_layers, n_heads):
        node_dict[name] = {"in_graph": name in nodes_in}
        if name in circuit.scores:
            node_dict[name]["score"] = circuit.scores[name]
    cfg = {"n_layers": n_layers, "n_heads": n_heads, "parallel_attn_mlp": False}
    # EAP-IG's from_json needs d_model only to size neuron tensors it then drops.
    cfg["d_model"] = d_model if d_model is not None else 0
    return {"cfg": cfg, "nodes": node_dict, "edges": edges}


def write_eap(data: dict, path: str | os.PathLike) -> Path:
    """Write an EAP-IG graph dict as JSON (``NaN`` scores are written as ``0``)."""
    for info in data["edges"].values():
        if math.isnan(info["score"]):
            info["score"] = 0.0
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data))
    except OSError as exc:
        from sc_interp.errors import CircuitError

        raise CircuitError(f"cannot write {out}: {exc}") from None
    return out
