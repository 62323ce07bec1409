"""The :class:`Circuit` value: which nodes and edges are in a circuit, and their scores."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sc_interp.circuits.naming import edge_nodes, is_edge, parse_edge, parse_node
from sc_interp.errors import CircuitError

_SHOWN = 8


@dataclass(frozen=True, repr=False)
class Circuit:
    """A circuit over canonical node/edge names (see :mod:`sc_interp.circuits.naming`).

    Attributes:
        nodes: nodes in the circuit (EAP-IG's ``in_graph``). Always includes the
            endpoints of ``edges``.
        edges: edges in the circuit. Empty for node-only circuits (head lists...).
        scores: every scored edge or node, ``{name: score}``, in or out of the circuit.
        n_layers: layers of the model the circuit was found in, when known.
        n_heads: heads per layer of that model, when known.
        source: the format it was read from (``"eap-ig"``, ``"auto-circuit"``...).

    Example:
        >>> c = Circuit.from_scores({"input->a0.h0<q>": 0.5, "a0.h0->logits": -2.0})
        >>> sorted(c.top(1).edges), sorted(c.top(1).nodes)
        (['a0.h0->logits'], ['a0.h0', 'logits'])
    """

    nodes: frozenset[str] = frozenset()
    edges: frozenset[str] = frozenset()
    scores: Mapping[str, float] = field(default_factory=dict, hash=False)
    n_layers: int | None = None
    n_heads: int | None = None
    source: str = "unknown"

    def __post_init__(self) -> None:
        edges = frozenset(self.edges)
        for name in edges:
            parse_edge(name)
        nodes = set(self.nodes)
        for name in nodes:
            parse_node(name)
        for name in edges:
            nodes.update(edge_nodes(name))
        scores: dict[str, float] = {}
        for name, value in dict(self.scores).items():
            if not (is_edge(name) or _is_node(name)):
                raise CircuitError(f"score for unknown node/edge {name!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CircuitError(f"score of {name!r} is not a number: {value!r}")
            scores[name] = float(value)
        object.__setattr__(self, "nodes", frozenset(nodes))
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "scores", scores)
        for dim in ("n_layers", "n_heads"):
            value = getattr(self, dim)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise CircuitError(f"{dim} must be an int, got {value!r}")
        self.validate(n_layers=self.n_layers, n_heads=self.n_heads)

    @classmethod
    def from_scores(
        cls, scores: Mapping[str, float], *, source: str = "scores", **dims: int | None
    ) -> Circuit:
        """A circuit with every scored edge (or node) in it, as a bare ``{name: score}`` reads.

        Example:
            >>> len(Circuit.from_scores({"a0.h0->m0": 1.0}).edges)
            1
        """
        edges = frozenset(n for n in scores if is_edge(n))
        nodes = frozenset(n for n in scores if not is_edge(n))
        return cls(nodes, edges, dict(scores), source=source, **dims)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ selection

    def _ranked(self, *, absolute: bool) -> list[tuple[float, str]]:
        edge_scores = {k: v for k, v in self.scores.items() if is_edge(k)}
        pool = edge_scores or {k: v for k, v in self.scores.items() if not is_edge(k)}
        if not pool:
            raise CircuitError(f"{self.source} circuit has no scores to select from")
        ranked = [(abs(v) if absolute else v, k) for k, v in pool.items() if not math.isnan(v)]
        return sorted(ranked, key=lambda item: (-item[0], item[1]))

    def _select(self, names: Iterable[str]) -> Circuit:
        chosen = list(names)
        edges = frozenset(n for n in chosen if is_edge(n))
        nodes = frozenset(n for n in chosen if not is_edge(n))
        return Circuit(nodes, edges, self.scores, self.n_layers, self.n_heads, self.source)

    def top(self, k: int, *, absolute: bool = True) -> Circuit:
        """The ``k`` highest-scoring edges (nodes if only nodes are scored), as a new Circuit.

        Like auto-circuit and EAP-IG, edges are ranked by ``|score|`` unless
        ``absolute=False``; ties are broken by name. Nodes are the edges' endpoints;
        nothing is pruned (EAP-IG's ``apply_topn`` also removes dangling edges).

        Example:
            >>> c = Circuit.from_scores({"a0.h0->m0": 3.0, "a0.h1->m0": -5.0})
            >>> sorted(c.top(1).edges)
            ['a0.h1->m0']
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise CircuitError(f"top(k) needs an integer k >= 0, got {k!r}")
        return self._select(name for _, name in self._ranked(absolute=absolute)[:k])

    def threshold(self, t: float, *, absolute: bool = True) -> Circuit:
        """The edges (nodes if only nodes are scored) with score ``>= t``, as a new Circuit.

        Example:
            >>> c = Circuit.from_scores({"a0.h0->m0": 3.0, "a0.h1->m0": -5.0})
            >>> sorted(c.threshold(4).edges)
            ['a0.h1->m0']
        """
        return self._select(n for s, n in self._ranked(absolute=absolute) if s >= t)

    def node_scores(self) -> dict[str, float]:
        """A score per node: its own score if it has one, else the sum of ``|score|`` of
        the scored edges into and out of it.

        The sum of absolute edge scores measures how much attribution flows through a
        node, whatever its sign (auto-circuit and EAP-IG rank edges by ``|score|`` too).

        Example:
            >>> c = Circuit.from_scores({"input->a0.h0<q>": 0.5, "a0.h0->logits": -2.0})
            >>> c.node_scores()["a0.h0"]
            2.5
        """
        out: dict[str, float] = {}
        for name, value in self.scores.items():
            if is_edge(name) and not math.isnan(value):
                for node in edge_nodes(name):
                    out[node] = out.get(node, 0.0) + abs(value)
        out.update({k: v for k, v in self.scores.items() if not is_edge(k)})
        return out

    @property
    def units(self) -> frozenset[str]:
        """Nodes without ``input`` and ``logits`` (what node metrics compare).

        Example:
            >>> sorted(Circuit.from_scores({"input->a0.h0<v>": 1.0}).units)
            ['a0.h0']
        """
        return frozenset(n for n in self.nodes if n not in ("input", "logits"))

    def validate(
        self, *, n_layers: int | None = None, n_heads: int | None = None, d_mlp: int | None = None
    ) -> Circuit:
        """Raise :class:`CircuitError` naming every node a model of this size does not have.

        Example:
            >>> Circuit(frozenset({"a1.h3"})).validate(n_layers=2, n_heads=4).nodes
            frozenset({'a1.h3'})
        """
        bad: list[str] = []
        for name in sorted(self.nodes | {n for n in self.scores if not is_edge(n)}):
            node = parse_node(name)
            if n_layers is not None and node.layer is not None and node.layer >= n_layers:
                bad.append(f"{name} (layer {node.layer} >= n_layers={n_layers})")
            elif n_heads is not None and node.kind == "head" and node.index >= n_heads:  # type: ignore[operator]
                bad.append(f"{name} (head {node.index} >= n_heads={n_heads})")
            elif d_mlp is not None and node.kind == "neuron" and node.index >= d_mlp:  # type: ignore[operator]
                bad.append(f"{name} (neuron {node.index} >= d_mlp={d_mlp})")
        if self.n_layers is not None and n_layers is not None and self.n_layers > n_layers:
            bad.append(f"the circuit's n_layers={self.n_layers} > the model's {n_layers}")
        if self.n_heads is not None and n_heads is not None and self.n_heads > n_heads:
            bad.append(f"the circuit's n_heads={self.n_heads} > the model's {n_heads}")
        if bad:
            shown = ", ".join(bad[:20]) + (f", ... ({len(bad)} in all)" if len(bad) > 20 else "")
            raise CircuitError(f"the circuit names nodes the model does not have: {shown}")
        return self

    def __repr__(self) -> str:
        def preview(names: Iterable[str]) -> str:
            items = sorted(names, key=_sort_key)
            extra = f", ... (+{len(items) - _SHOWN})" if len(items) > _SHOWN else ""
            return "[" + ", ".join(items[:_SHOWN]) + extra + "]"

        dims = "".join(
            f", {d}={getattr(self, d)}" for d in ("n_layers", "n_heads") if getattr(self, d)
        )
        return (
            f"Circuit(source={self.source!r}, {len(self.nodes)} nodes {preview(self.nodes)}, "
            f"{len(self.edges)} edges, {len(self.scores)} scores{dims})"
        )


def _is_node(name: object) -> bool:
    try:
        parse_node(name)
    except CircuitError:
        return False
    return True


def _sort_key(name: str) -> tuple:
    """Sort node/edge names in forward order (input, a0.h0, ..., m0, a1.h0, ..., logits)."""
    first = name.split("->")[0]
    node = parse_node(first) if _is_node(first) else None
    if node is None:
        return (2, 0, 0, name)
    rank = {"input": (-1, 0), "logits": (10**9, 0)}.get(node.kind)
    if rank is None:
        rank = (node.layer or 0, 0 if node.kind == "head" else 1)
    return (0, *rank, node.index if node.index is not None else -1, name)
