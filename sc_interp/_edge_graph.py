"""The edge graph of a transformer: sources, destination groups and edge names.

The residual stream of a sequential (attention, then MLP) transformer is the sum of its
*sources*' outputs: ``input`` (token plus positional embeddings), every attention head
``a{L}.h{H}`` and every MLP ``m{L}``. A *destination* reads that sum: a head's query, key
or value input (``a{L}.h{H}<q|k|v>``), an MLP's input (``m{L}``) or the unembedding
(``logits``). An edge ``src->dst`` exists when ``src`` comes before ``dst`` in the forward
pass; names follow EAP-IG (and :mod:`sc_interp.circuits.naming`).

Edge masks are grouped into *sites*, one per kind of destination input and layer, named by
the TransformerLens hook of that input:

==================================  ==========================================  ===========
site                                edges (entry order)                         entries
==================================  ==========================================  ===========
``blocks.{L}.hook_q_input``         ``{src}->a{L}.h{H}<q>`` for each head, then  H x S(L)
                                    each source in forward order
``blocks.{L}.hook_k_input``         likewise ``<k>``                            H x S(L)
``blocks.{L}.hook_v_input``         likewise ``<v>``                            H x S(L)
``blocks.{L}.hook_mlp_in``          ``{src}->m{L}``                             S(L) + H
``blocks.{n-1}.hook_resid_post``    ``{src}->logits``                           every source
==================================  ==========================================  ===========

``S(L) = 1 + L * (H + 1)``: ``input`` and every head and MLP of the layers before ``L``.
"""

from __future__ import annotations

import fnmatch
import glob
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from sc_interp.errors import TargetError
from sc_interp.sites import Site

GroupKind = Literal["q", "k", "v", "mlp", "logits"]
_GLOB_CHARS = ("*", "?", "[")


@dataclass(frozen=True)
class EdgeGroup:
    """The edges into one kind of destination input at one layer (one edge site).

    Attributes:
        site: the site name (a TransformerLens hook name, see the module docs).
        kind: ``"q"``, ``"k"``, ``"v"``, ``"mlp"`` or ``"logits"``.
        layer: the destination's layer (``n_layers`` for ``logits``).
        n_dest: destinations in the group (``n_heads`` for q/k/v, else 1).
        n_src: sources every destination of the group reads.
        edges: the edge name of every entry, destination-major.
    """

    site: str
    kind: GroupKind
    layer: int
    n_dest: int
    n_src: int
    edges: tuple[str, ...]


class EdgeGraph:
    """Sources and destination groups of a transformer with ``n_layers`` and ``n_heads``.

    Example:
        >>> graph = EdgeGraph(2, 2)
        >>> graph.sources
        ['input', 'a0.h0', 'a0.h1', 'm0', 'a1.h0', 'a1.h1', 'm1']
        >>> [(g.site, g.n_src) for g in graph.groups][:2]
        [('blocks.0.hook_q_input', 1), ('blocks.0.hook_k_input', 1)]
        >>> graph.groups[3].edges
        ('input->m0', 'a0.h0->m0', 'a0.h1->m0')
    """

    def __init__(self, n_layers: int, n_heads: int, *, has_mlp: bool = True):
        self.n_layers, self.n_heads, self.has_mlp = n_layers, n_heads, has_mlp
        self.sources = ["input"]
        self.groups: list[EdgeGroup] = []
        for layer in range(n_layers):
            upstream = list(self.sources)
            heads = [f"a{layer}.h{h}" for h in range(n_heads)]
            for kind in ("q", "k", "v"):
                edges = tuple(f"{s}->{d}<{kind}>" for d in heads for s in upstream)
                site = f"blocks.{layer}.hook_{kind}_input"
                self.groups.append(EdgeGroup(site, kind, layer, n_heads, len(upstream), edges))
            self.sources += heads
            if has_mlp:
                edges = tuple(f"{s}->m{layer}" for s in self.sources)
                site = f"blocks.{layer}.hook_mlp_in"
                self.groups.append(EdgeGroup(site, "mlp", layer, 1, len(self.sources), edges))
                self.sources.append(f"m{layer}")
        edges = tuple(f"{s}->logits" for s in self.sources)
        site = f"blocks.{n_layers - 1}.hook_resid_post"
        self.groups.append(EdgeGroup(site, "logits", n_layers, 1, len(self.sources), edges))

    def group(self, site: str) -> EdgeGroup:
        """The group of an edge site name (without any model prefix)."""
        for group in self.groups:
            if group.site == site:
                return group
        raise TargetError(f"no edge site {site!r}; sites: {[g.site for g in self.groups]}")

    @property
    def n_edges(self) -> int:
        """Number of edges in the graph."""
        return sum(len(g.edges) for g in self.groups)


def _literal(pattern: str) -> bool:
    return not any(c in pattern for c in _GLOB_CHARS)


def select_edges(sites: Sequence[Site], targets: Sequence[str] | None) -> list[Site]:
    """Edge sites restricted to the edges ``targets`` select.

    A pattern selects every edge of the sites whose *name* it matches
    (``"blocks.1.hook_q_input"``, ``"blocks.*.hook_mlp_in"``) and every edge whose *edge
    name* it matches (``"a0.h1->*"``, ``"*->logits"``, ``"input->a1.h*<k>"``). Sites keep
    their selected edges in their own order; ``None`` selects everything. Patterns without
    glob characters are exact names (looked up, not scanned), so a list of thousands of
    edge names is cheap.

    Raises:
        TargetError: a pattern selects nothing (the message shows site and edge names).

    Example:
        >>> from sc_interp.sites import Site
        >>> g = EdgeGraph(1, 1).groups
        >>> sites = [Site(x.site, "edge", (len(x.edges),), "", edges=x.edges) for x in g]
        >>> [(s.name, s.edges) for s in select_edges(sites, ["a0.h0->*"])]
        [('blocks.0.hook_mlp_in', ('a0.h0->m0',)), ('blocks.0.hook_resid_post', ('a0.h0->logits',))]
    """
    if targets is None:
        return [s for s in sites if s.default]
    patterns = [targets] if isinstance(targets, str) else list(targets)
    literal = {p for p in patterns if _literal(p)}
    globbed = [p for p in patterns if not _literal(p)]
    matched: set[str] = set()
    out = []
    for site in sites:
        whole = [p for p in patterns if fnmatch.fnmatchcase(site.name, p)]
        matched.update(whole)
        if whole:
            out.append(site)
            continue
        keep = []
        for edge in site.edges:
            hit = edge in literal
            if hit:
                matched.add(edge)
            for p in globbed:
                if fnmatch.fnmatchcase(edge, p):
                    hit = True
                    matched.add(p)
            if hit:
                keep.append(edge)
        if keep:
            out.append(replace(site, shape=(len(keep),), edges=tuple(keep)))
    unmatched = [p for p in patterns if p not in matched]
    if unmatched:
        names = [s.name for s in sites]
        examples = [e for s in sites for e in s.edges[:2]][:8]
        raise TargetError(
            f"target pattern(s) {unmatched[:10]} match no edge or edge site; edge sites: "
            f"{', '.join(names[:12])}{' ...' if len(names) > 12 else ''}; edges look like "
            f"{', '.join(examples)} (globs such as 'a0.h1->*' or '*->logits' work)"
        )
    return out


def exact_targets(edges: dict[str, tuple[str, ...]]) -> list[str]:
    """Patterns that select exactly these edges (glob characters escaped).

    Example:
        >>> exact_targets({"blocks.0.hook_mlp_in": ("input->m0",)})
        ['input->m0']
    """
    return [glob.escape(e) for names in edges.values() for e in names]
