"""ACDC edge collections (github.com/ArthurConmy/Automatic-Circuit-Discovery).

ACDC keys edges by ``(child_name, child_index, parent_name, parent_index)``: hook names
and ``TorchIndex.hashable_tuple`` indices such as ``(None, None, 3)`` for ``[:, :, 3]``
(``TLACDCCorrespondence.all_edges()``; ``TLACDCExperiment.load_subgraph`` takes
``{key: present}``). ``save_edges`` pickles ``[(key, effect_size), ...]``; we never
unpickle, so convert such a file to JSON first (indices as lists, ``null`` for ``:``).

Accepted here:

- ``{(child, child_index, parent, parent_index): present_or_effect_size}``;
- ``[[child, child_index, parent, parent_index], ...]`` (each may carry a fifth
  ``effect_size`` item), or ``[[key, effect_size], ...]`` as ``save_edges`` collects it;
- string keys: the ``repr`` of such a tuple, or ``"parent[idx]->child[idx]"`` with ACDC's
  printed ``TorchIndex`` (``blocks.0.attn.hook_result[:, :, 3]``).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from numbers import Real

from sc_interp.circuits._circuit import Circuit
from sc_interp.circuits.naming import acdc_edge, split_acdc_node
from sc_interp.errors import CircuitError


def _index(value: object) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    raise CircuitError(f"ACDC index must be a list like [null, null, 3], got {value!r}")


def is_acdc_key(item: object) -> bool:
    """Whether ``item`` looks like ACDC's ``(child, child_index, parent, parent_index)``.

    Example:
        >>> is_acdc_key(("blocks.1.hook_resid_post", (None,), "blocks.0.hook_mlp_out", (None,)))
        True
    """
    return (
        isinstance(item, (list, tuple))
        and len(item) == 4
        and isinstance(item[0], str)
        and isinstance(item[2], str)
        and isinstance(item[1], (list, tuple))
        and isinstance(item[3], (list, tuple))
    )


def parse_acdc_string_key(text: str) -> tuple:
    """Parse a string key: the repr of an ACDC key tuple, or ``'parent[idx]->child[idx]'``.

    Example:
        >>> parse_acdc_string_key("blocks.0.hook_resid_pre[:]->blocks.0.hook_mlp_in[:]")
        ('blocks.0.hook_mlp_in', (None,), 'blocks.0.hook_resid_pre', (None,))
    """
    stripped = text.strip()
    if stripped.startswith("("):
        try:
            key = ast.literal_eval(stripped)  # literals only: never executes code
        except Exception as exc:  # SyntaxError, ValueError, MemoryError, RecursionError
            raise CircuitError(f"cannot read ACDC edge key {text[:200]!r}") from exc
        if not is_acdc_key(key):
            raise CircuitError(f"ACDC edge key {text[:200]!r} is not (child, idx, parent, idx)")
        return key
    if stripped.count("->") == 1 and "[" in stripped:
        parent, child = stripped.split("->")
        (p_name, p_idx), (c_name, c_idx) = split_acdc_node(parent), split_acdc_node(child)
        return c_name, c_idx, p_name, p_idx
    raise CircuitError(f"unknown ACDC edge {text[:200]!r}")


def looks_like_acdc_string(text: str) -> bool:
    """Whether a string key is in one of ACDC's forms (tuple repr or hook names).

    Example:
        >>> looks_like_acdc_string("blocks.0.hook_mlp_out[:]->blocks.1.hook_resid_post[:]")
        True
    """
    return text.lstrip().startswith("(") or ("hook_" in text and "->" in text)


def read_acdc(entries: Sequence[tuple[tuple, object]], *, n_layers: int | None = None) -> Circuit:
    """Build a Circuit from ``[(acdc_key, value), ...]``.

    ``value`` is ``True``/``False`` (present or not), a number (effect size: present,
    scored) or ``None`` (present, unscored). Edges inside one head or MLP are ACDC
    bookkeeping: they add their unit to the nodes but no canonical edge.

    Example:
        >>> key = ("blocks.1.hook_q_input", (None, None, 3), "blocks.0.attn.hook_result",
        ...        (None, None, 1))
        >>> sorted(read_acdc([(key, 0.2)]).edges)
        ['a0.h1->a1.h3<q>']
    """
    nodes: set[str] = set()
    edges: set[str] = set()
    scores: dict[str, float] = {}
    bad: list[str] = []
    for key, value in entries:
        try:
            if not is_acdc_key(key):
                raise CircuitError(f"ACDC edge {key!r} is not (child, idx, parent, idx)")
            child, c_idx, parent, p_idx = key
            edge, units = acdc_edge(child, _index(c_idx), parent, _index(p_idx), n_layers=n_layers)
            if isinstance(value, bool):
                present = value
            elif value is None:
                present = True
            elif isinstance(value, Real):
                present = True
                if edge is not None:
                    scores[edge] = float(value)
            else:
                raise CircuitError(f"ACDC edge {key!r}: value must be bool, number or null")
            if present:
                nodes.update(units)
                if edge is not None:
                    edges.add(edge)
        except CircuitError as exc:
            bad.append(str(exc))
    if bad:
        more = f" ... ({len(bad)} in all)" if len(bad) > 10 else ""
        raise CircuitError("bad ACDC edges: " + "; ".join(bad[:10]) + more)
    return Circuit(frozenset(nodes), frozenset(edges), scores, source="acdc")


def acdc_entries(data: object) -> list[tuple[tuple, object]] | None:
    """Normalise any accepted ACDC container to ``[(key, value)]``; ``None`` if not ACDC."""
    if isinstance(data, Mapping):
        keys = list(data)
        if keys and all(is_acdc_key(k) for k in keys):
            return [(tuple(k), data[k]) for k in keys]
        if keys and all(isinstance(k, str) and looks_like_acdc_string(k) for k in keys):
            return [(parse_acdc_string_key(k), data[k]) for k in keys]
        return None
    if not isinstance(data, (list, tuple)) or not data:
        return None
    out: list[tuple[tuple, object]] = []
    for item in data:
        if is_acdc_key(item):
            out.append((tuple(item), None))
        elif isinstance(item, (list, tuple)) and len(item) == 5 and is_acdc_key(item[:4]):
            out.append((tuple(item[:4]), item[4]))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and is_acdc_key(item[0]):
            out.append((tuple(item[0]), item[1]))
        else:
            return None
    return out


def is_mapping_of_numbers(data: Mapping) -> bool:
    """Whether every value is a number or bool (used to tell score dicts apart)."""
    return all(isinstance(v, (Real, bool)) for v in data.values())
