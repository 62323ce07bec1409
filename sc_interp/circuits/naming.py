"""Canonical node and edge names, and mappers from other circuit tools' names.

Nodes (EAP-IG's convention): ``input``, ``a{L}.h{H}`` (attention head ``H`` of layer
``L``), ``m{L}`` (the MLP of layer ``L``), ``m{L}.n{I}`` (neuron ``I`` of that MLP) and
``logits``. Edges are ``src->dst``; an edge into a head may name which input it feeds with
a ``<q>``, ``<k>`` or ``<v>`` suffix, e.g. ``a0.h1->a2.h3<q>``, ``m0->logits``,
``input->a0.h0<v>``.

Mappers translate auto-circuit names (``A0.3``, ``A1.2.Q``, ``MLP 1``, ``Resid Start``,
``Resid End``) and ACDC / TransformerLens hook names (``blocks.0.attn.hook_result`` with
index ``[:, :, 3]``, ``blocks.1.hook_q_input``, ``blocks.0.hook_mlp_out``,
``blocks.0.hook_resid_pre``, ``blocks.{last}.hook_resid_post``) to these.

Example:
    >>> parse_node("a9.h9")
    Node(kind='head', layer=9, index=9)
    >>> parse_edge("a0.h1->a2.h3<q>")
    Edge(src='a0.h1', dst='a2.h3', qkv='q')
    >>> autocircuit_edge("A0.1->A2.3.Q")
    'a0.h1->a2.h3<q>'
    >>> acdc_node("blocks.0.attn.hook_result", (None, None, 3))
    ('a0.h3', None)
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

from sc_interp.errors import CircuitError

NodeKind = Literal["input", "head", "mlp", "neuron", "logits"]
QKV = Literal["q", "k", "v"]

_HEAD = re.compile(r"a(\d+)\.h(\d+)")
_MLP = re.compile(r"m(\d+)")
_NEURON = re.compile(r"m(\d+)\.n(\d+)")
_EDGE = re.compile(r"(.+?)->(.+?)(?:<([qkv])>)?")
_ALLOWED = "'input', 'logits', 'a{L}.h{H}', 'm{L}' or 'm{L}.n{I}'"


class Node(NamedTuple):
    """A parsed canonical node name: its kind, layer and head/neuron index."""

    kind: NodeKind
    layer: int | None = None
    index: int | None = None

    @property
    def name(self) -> str:
        """The canonical name, e.g. ``'a3.h1'``."""
        if self.kind in ("input", "logits"):
            return self.kind
        if self.kind == "head":
            return f"a{self.layer}.h{self.index}"
        if self.kind == "mlp":
            return f"m{self.layer}"
        return f"m{self.layer}.n{self.index}"


class Edge(NamedTuple):
    """A parsed canonical edge: source node, destination node, optional q/k/v input."""

    src: str
    dst: str
    qkv: QKV | None = None

    @property
    def name(self) -> str:
        """The canonical name, e.g. ``'a0.h1->a2.h3<q>'``."""
        return f"{self.src}->{self.dst}" + (f"<{self.qkv}>" if self.qkv else "")


def parse_node(name: object) -> Node:
    """Parse a canonical node name; raise :class:`CircuitError` if it is not one.

    Example:
        >>> parse_node("m3.n17")
        Node(kind='neuron', layer=3, index=17)
    """
    if not isinstance(name, str):
        raise CircuitError(f"node names are strings, got {name!r}; allowed: {_ALLOWED}")
    if name in ("input", "logits"):
        return Node(name)  # type: ignore[arg-type]
    if match := _HEAD.fullmatch(name):
        return Node("head", int(match[1]), int(match[2]))
    if match := _MLP.fullmatch(name):
        return Node("mlp", int(match[1]))
    if match := _NEURON.fullmatch(name):
        return Node("neuron", int(match[1]), int(match[2]))
    raise CircuitError(f"unknown node name {name!r}; allowed: {_ALLOWED}")


def is_node(name: object) -> bool:
    """Whether ``name`` is a canonical node name.

    Example:
        >>> is_node("a0.h1"), is_node("a0.hx")
        (True, False)
    """
    try:
        parse_node(name)
    except CircuitError:
        return False
    return True


def node_layer(name: str) -> int | None:
    """The layer of a node (``None`` for ``input``/``logits``).

    Example:
        >>> node_layer("m4.n2")
        4
    """
    return parse_node(name).layer


def _order(node: Node) -> float:
    """Position in a sequential (attention then MLP) forward pass."""
    if node.kind == "input":
        return -1.0
    if node.kind == "logits":
        return float("inf")
    assert node.layer is not None
    return node.layer + (0.0 if node.kind == "head" else 0.5)


def parse_edge(name: object) -> Edge:
    """Parse a canonical edge name; raise :class:`CircuitError` if it is not one.

    The source must be ``input``, a head or an MLP; the destination a head, an MLP or
    ``logits``, and later in the forward pass than the source. ``<q>/<k>/<v>`` is allowed
    only on a head destination; a head destination without it means its whole input.

    Example:
        >>> parse_edge("input->m0").name
        'input->m0'
    """
    if not isinstance(name, str) or not (match := _EDGE.fullmatch(name)):
        raise CircuitError(
            f"unknown edge name {name!r}; edges are 'SRC->DST' or 'SRC->DST<q|k|v>', "
            "e.g. 'a0.h1->a2.h3<q>'"
        )
    src, dst = parse_node(match[1]), parse_node(match[2])
    qkv: QKV | None = match[3]  # type: ignore[assignment]
    if src.kind not in ("input", "head", "mlp"):
        raise CircuitError(f"edge {name!r}: a source is 'input', a head or an MLP")
    if dst.kind not in ("head", "mlp", "logits"):
        raise CircuitError(f"edge {name!r}: a destination is a head, an MLP or 'logits'")
    if qkv and dst.kind != "head":
        raise CircuitError(f"edge {name!r}: <{qkv}> is only allowed on a head destination")
    if _order(src) >= _order(dst):
        raise CircuitError(f"edge {name!r}: the source does not come before the destination")
    return Edge(src.name, dst.name, qkv)


def is_edge(name: object) -> bool:
    """Whether ``name`` is a canonical edge name.

    Example:
        >>> is_edge("m0->logits"), is_edge("logits->m0")
        (True, False)
    """
    try:
        parse_edge(name)
    except CircuitError:
        return False
    return True


def edge_nodes(name: str) -> tuple[str, str]:
    """The source and destination node of an edge.

    Example:
        >>> edge_nodes("a0.h1->a2.h3<q>")
        ('a0.h1', 'a2.h3')
    """
    edge = parse_edge(name)
    return edge.src, edge.dst


# --------------------------------------------------------------------- auto-circuit names

_AC_HEAD = re.compile(r"A(\d+)\.(\d+)(?:\.([QKV]))?")
_AC_MLP = re.compile(r"MLP (\d+)")


def autocircuit_node(name: object) -> tuple[str, QKV | None]:
    """Map an auto-circuit node name to ``(canonical node, q/k/v or None)``.

    auto-circuit's factorized transformer graph names nodes ``Resid Start`` (input),
    ``A{L}.{H}`` (a head; as a destination with ``.Q``/``.K``/``.V`` when q/k/v are
    separate), ``MLP {L}`` and ``Resid End`` (logits). The unfactorized graph's
    ``Resid Mid``/``Resid Post`` nodes have no counterpart and are refused.

    Example:
        >>> autocircuit_node("A3.1.K"), autocircuit_node("Resid End")
        (('a3.h1', 'k'), ('logits', None))
    """
    if not isinstance(name, str):
        raise CircuitError(f"auto-circuit node names are strings, got {name!r}")
    if name == "Resid Start":
        return "input", None
    if name == "Resid End":
        return "logits", None
    if match := _AC_HEAD.fullmatch(name):
        qkv = match[3].lower() if match[3] else None
        return f"a{match[1]}.h{match[2]}", qkv  # type: ignore[return-value]
    if match := _AC_MLP.fullmatch(name):
        return f"m{match[1]}", None
    if name.startswith(("Resid Mid", "Resid Post")):
        raise CircuitError(
            f"auto-circuit node {name!r} belongs to the unfactorized graph, which has no "
            "canonical counterpart; use a factorized graph (patchable_model(factorized=True))"
        )
    raise CircuitError(
        f"unknown auto-circuit node name {name!r}; expected 'Resid Start', 'Resid End', "
        "'A{L}.{H}', 'A{L}.{H}.Q|K|V' or 'MLP {L}'"
    )


def autocircuit_edge(name: object) -> str:
    """Map an auto-circuit edge name (``'A0.1->A2.3.Q'``) to a canonical edge name.

    Example:
        >>> autocircuit_edge("Resid Start->MLP 0")
        'input->m0'
    """
    if not isinstance(name, str) or name.count("->") != 1:
        raise CircuitError(f"unknown auto-circuit edge name {name!r}; expected 'SRC->DEST'")
    src_name, dst_name = name.split("->")
    src, src_qkv = autocircuit_node(src_name)
    dst, qkv = autocircuit_node(dst_name)
    if src_qkv is not None:
        raise CircuitError(f"auto-circuit edge {name!r}: a source head has no .Q/.K/.V")
    return parse_edge(Edge(src, dst, qkv).name).name


# ----------------------------------------------------------------- ACDC / TL hook names

_BLOCK_HOOK = re.compile(r"blocks\.(\d+)\.(.+)")
_TORCH_INDEX = re.compile(r"(.+?)\s*\[(.*)\]")
_HEAD_HOOKS = {"attn.hook_result": None, "attn.hook_q": "q", "attn.hook_k": "k",
               "attn.hook_v": "v", "hook_q_input": "q", "hook_k_input": "k",
               "hook_v_input": "v", "attn.hook_q_input": "q", "attn.hook_k_input": "k",
               "attn.hook_v_input": "v"}  # fmt: skip
_MLP_HOOKS = ("hook_mlp_in", "hook_mlp_out", "hook_resid_mid", "mlp.hook_post")


def parse_acdc_index(text: str) -> tuple[int | None, ...]:
    """Parse a printed ``TorchIndex`` such as ``'[:, :, 3]'`` or ``'[COL, COL, 3]'``.

    Example:
        >>> parse_acdc_index("[:, :, 3]")
        (None, None, 3)
    """
    inner = text.strip()
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    out: list[int | None] = []
    for part in (p.strip() for p in inner.split(",")):
        if part in (":", "COL", "COLON", "None"):
            out.append(None)
        elif part.lstrip("-").isdigit():
            out.append(int(part))
        else:
            raise CircuitError(f"cannot read ACDC index {text!r}; expected e.g. '[:, :, 3]'")
    return tuple(out)


def split_acdc_node(text: str) -> tuple[str, tuple[int | None, ...]]:
    """Split ACDC's printed node ``'blocks.0.attn.hook_result[:, :, 3]'`` into name and index.

    Example:
        >>> split_acdc_node("blocks.0.hook_resid_pre[:]")
        ('blocks.0.hook_resid_pre', (None,))
    """
    match = _TORCH_INDEX.fullmatch(text.strip())
    if not match:
        return text.strip(), (None,)
    return match[1], parse_acdc_index(match[2])


def acdc_node(
    hook_name: object, index: object = (None,), *, n_layers: int | None = None
) -> tuple[str, QKV | None]:
    """Map an ACDC node (TransformerLens hook name and index) to ``(node, q/k/v or None)``.

    ``blocks.0.hook_resid_pre``, ``hook_embed`` and ``hook_pos_embed`` are ``input``;
    ``blocks.{n_layers-1}.hook_resid_post`` is ``logits`` (any ``hook_resid_post`` when
    ``n_layers`` is unknown); ``attn.hook_result``/``hook_q``/``hook_q_input``... with
    index ``[:, :, H]`` are head ``H``; ``hook_mlp_in``/``hook_mlp_out`` are the MLP.

    Example:
        >>> acdc_node("blocks.1.hook_k_input", [None, None, 2])
        ('a1.h2', 'k')
    """
    if not isinstance(hook_name, str):
        raise CircuitError(f"ACDC node names are strings, got {hook_name!r}")
    if not isinstance(index, (tuple, list)) or not all(
        i is None or (isinstance(i, int) and not isinstance(i, bool)) for i in index
    ):
        raise CircuitError(f"ACDC node {hook_name!r}: bad index {index!r}")
    if hook_name in ("hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre"):
        return "input", None
    match = _BLOCK_HOOK.fullmatch(hook_name)
    if not match:
        raise CircuitError(f"unknown ACDC node {hook_name!r}{list(index)}")
    layer, rest = int(match[1]), match[2]
    if rest == "hook_resid_post":
        if n_layers is not None and layer != n_layers - 1:
            raise CircuitError(
                f"ACDC node {hook_name!r} is not the last layer's resid_post "
                f"(n_layers={n_layers}); only blocks.{n_layers - 1}.hook_resid_post is logits"
            )
        return "logits", None
    if rest in _HEAD_HOOKS:
        head = index[2] if len(index) >= 3 else None
        if head is None:
            raise CircuitError(f"ACDC node {hook_name!r}{list(index)} needs a head index")
        return f"a{layer}.h{head}", _HEAD_HOOKS[rest]  # type: ignore[return-value]
    if rest in _MLP_HOOKS:
        return f"m{layer}", None
    raise CircuitError(f"unknown ACDC node {hook_name!r}{list(index)}")


def acdc_edge(
    child: str,
    child_index: object,
    parent: str,
    parent_index: object,
    *,
    n_layers: int | None = None,
) -> tuple[str | None, set[str]]:
    """Map an ACDC edge key ``(child, child_index, parent, parent_index)``.

    Returns ``(canonical edge or None, nodes)``: edges inside one head or MLP (ACDC's
    ``hook_q_input -> hook_q -> hook_result`` and ``hook_mlp_in -> hook_mlp_out``) have no
    canonical edge, but still name the unit they belong to.

    Example:
        >>> edge, nodes = acdc_edge("blocks.1.hook_q_input", (None, None, 3),
        ...                         "blocks.0.attn.hook_result", (None, None, 1))
        >>> edge, sorted(nodes)
        ('a0.h1->a1.h3<q>', ['a0.h1', 'a1.h3'])
    """
    dst, qkv = acdc_node(child, child_index, n_layers=n_layers)
    src, _ = acdc_node(parent, parent_index, n_layers=n_layers)
    if src == dst:
        return None, {src}
    if not parent.endswith(("hook_result", "hook_mlp_out", "hook_resid_pre", "embed")):
        raise CircuitError(
            f"ACDC edge {parent}{list(parent_index)}->{child}{list(child_index)}: "  # type: ignore[arg-type]
            "the parent is not a head output, an MLP output or the embedding"
        )
    if not child.endswith(("_input", "hook_mlp_in", "hook_resid_mid", "hook_resid_post")):
        qkv = None
    edge = parse_edge(Edge(src, dst, qkv).name)
    return edge.name, {edge.src, edge.dst}
