"""Read circuits from other tools' outputs (:func:`load`) and write EAP-IG JSON.

:func:`load` detects the format:

- EAP-IG graph JSON (``{"cfg", "nodes", "edges"}``, a path or the dict);
- ``{edge: score}`` / ``{edge: in_circuit}`` / ``[edge, ...]`` with canonical names or
  auto-circuit's (``"A0.1->A1.2.Q"``, ``"Resid Start->MLP 0"``): a bare score dict puts
  every edge in the circuit, select with ``circuit.top(k)`` or ``circuit.threshold(t)``;
- ACDC edge collections (see :mod:`sc_interp.circuits._acdc`);
- head and neuron lists: ``[(9, 9), (10, 7)]`` (``(layer, head)``) or
  ``["a9.h9", "m3.n17", "m2"]`` (auto-circuit node names ``"A9.9"``, ``"MLP 2"`` too);
- a :class:`Circuit` (returned as is, after validation).

Nothing is ever unpickled: ``.pt``/``.pkl`` files are refused with a hint to convert.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

from sc_interp import _validate
from sc_interp.circuits import _acdc, _eap
from sc_interp.circuits._circuit import Circuit
from sc_interp.circuits.naming import (
    autocircuit_edge,
    autocircuit_node,
    is_edge,
    is_node,
    parse_node,
)
from sc_interp.errors import CircuitError

logger = logging.getLogger(__name__)

_PICKLES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")


def _read_path(path: Path) -> Any:
    if path.suffix.lower() in _PICKLES:
        raise CircuitError(
            f"{path}: {path.suffix} files are pickles, which sc-interp never loads; export the "
            "circuit as JSON (EAP-IG: graph.to_json(path); ACDC: a list of "
            "[child, child_index, parent, parent_index, effect_size])"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CircuitError(f"cannot read circuit file {path}: {exc}") from exc
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CircuitError(f"{path} is not valid JSON: {exc}") from exc


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _name(item: str, *, n_layers: int | None) -> tuple[str, bool]:
    """Map one name of any accepted family to ``(canonical name, is_edge)``."""
    if is_edge(item):
        return item, True
    if is_node(item):
        return item, False
    if "->" in item:
        if _acdc.looks_like_acdc_string(item):
            key = _acdc.parse_acdc_string_key(item)
            circuit = _acdc.read_acdc([(key, True)], n_layers=n_layers)
            if len(circuit.edges) == 1:
                return next(iter(circuit.edges)), True
            raise CircuitError(f"ACDC edge {item!r} lies inside one unit")
        return autocircuit_edge(item), True
    try:
        return autocircuit_node(item)[0], False
    except CircuitError:
        pass
    if "hook_" in item:
        from sc_interp.circuits.naming import acdc_node, split_acdc_node

        return acdc_node(*split_acdc_node(item), n_layers=n_layers)[0], False
    parse_node(item)  # raises with the list of allowed forms
    raise AssertionError("unreachable")


def _from_names(
    names: Mapping[str, object] | Sequence[str], *, n_layers: int | None, source: str
) -> Circuit:
    values = names if isinstance(names, Mapping) else dict.fromkeys(names, True)
    nodes: set[str] = set()
    edges: set[str] = set()
    scores: dict[str, float] = {}
    bad: list[str] = []
    families: set[str] = set()
    for raw, value in values.items():
        try:
            if not isinstance(raw, str):
                raise CircuitError(f"{raw!r} is not a node or edge name")
            name, edge = _name(raw, n_layers=n_layers)
            families.add("canonical" if raw == name else "auto-circuit/acdc")
            if isinstance(value, bool):
                keep = value
            elif isinstance(value, Real):
                keep, scores[name] = True, float(value)
            else:
                raise CircuitError(f"value of {raw!r} must be a number or true/false")
            if keep:
                (edges if edge else nodes).add(name)
        except CircuitError as exc:
            bad.append(f"{raw!r}: {exc}")
    if bad:
        more = f" ... ({len(bad)} in all)" if len(bad) > 10 else ""
        raise CircuitError("unknown or bad circuit entries: " + "; ".join(bad[:10]) + more)
    if source == "names" and families == {"auto-circuit/acdc"}:
        source = "auto-circuit"
    return Circuit(frozenset(nodes), frozenset(edges), scores, source=source)


def _from_object(data: object, *, n_layers: int | None) -> Circuit:
    if isinstance(data, Circuit):
        return data
    if isinstance(data, Mapping):
        if all(k in data for k in _eap.EAP_KEYS):
            return _eap.read_eap(data)
        if any(k in data for k in _eap.EAP_KEYS) and len(data) <= 4:
            missing = [k for k in _eap.EAP_KEYS if k not in data]
            raise CircuitError(f"EAP-IG JSON is missing {missing}; it needs cfg, nodes, edges")
        if (entries := _acdc.acdc_entries(data)) is not None:
            return _acdc.read_acdc(entries, n_layers=n_layers)
        return _from_names(data, n_layers=n_layers, source="names")
    if isinstance(data, (list, tuple)):
        if not data:
            return Circuit(source="names")
        if all(isinstance(x, (list, tuple)) and len(x) == 2 and all(map(_is_int, x)) for x in data):
            bad = [x for x in data if x[0] < 0 or x[1] < 0]
            if bad:
                raise CircuitError(f"negative (layer, head) entries: {bad[:10]}")
            return Circuit(frozenset(f"a{x[0]}.h{x[1]}" for x in data), source="heads")
        if (entries := _acdc.acdc_entries(data)) is not None:
            return _acdc.read_acdc(entries, n_layers=n_layers)
        if all(isinstance(x, str) for x in data):
            return _from_names(list(data), n_layers=n_layers, source="names")
        bad_items = [x for x in data if not isinstance(x, str)][:5]
        raise CircuitError(
            f"cannot read a circuit from a list with items like {bad_items!r}; expected "
            "(layer, head) pairs, node/edge names or ACDC (child, idx, parent, idx) keys"
        )
    raise CircuitError(
        f"cannot read a circuit from {type(data).__name__}; pass a path, an EAP-IG dict, "
        "{edge: score}, a list of names/(layer, head) pairs, ACDC edges or a Circuit"
    )


def load(
    path_or_object: object,
    *,
    n_layers: int | None = None,
    n_heads: int | None = None,
    d_mlp: int | None = None,
) -> Circuit:
    """Read a circuit from a file or a Python object, detecting the format.

    Args:
        path_or_object: a JSON file path, or any object listed in this module's doc.
        n_layers: the model's layers; nodes beyond are an error, and ACDC's
            ``blocks.{n_layers-1}.hook_resid_post`` is ``logits``.
        n_heads: the model's heads per layer; heads beyond are an error.
        d_mlp: the model's MLP width; neurons beyond are an error.

    Returns:
        A :class:`Circuit` with canonical names.

    Raises:
        CircuitError: malformed input, unknown names, or nodes the model does not have.

    Example:
        >>> sorted(load([(9, 9), (10, 7)]).nodes)
        ['a10.h7', 'a9.h9']
        >>> sorted(load({"A0.1->MLP 1": 0.3, "Resid Start->A0.1.V": -1.0}).edges)
        ['a0.h1->m1', 'input->a0.h1<v>']
    """
    data = path_or_object
    if isinstance(data, (str, os.PathLike)):
        text = os.fspath(data)
        if isinstance(text, str) and text.lstrip()[:1] in ("{", "[") and not Path(text).exists():
            try:
                data = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise CircuitError(f"circuit text is not valid JSON: {exc}") from exc
        else:
            path = Path(text)  # type: ignore[arg-type]
            if not path.is_file():
                raise CircuitError(f"circuit file {str(path)!r} does not exist")
            data = _read_path(path)
    try:
        circuit = _from_object(data, n_layers=n_layers)
    except RecursionError as exc:
        raise CircuitError("circuit data is nested too deeply") from exc
    return circuit.validate(n_layers=n_layers, n_heads=n_heads, d_mlp=d_mlp)


MAX_EDGES = 50_000_000


def to_eap_json(
    subnetwork_or_circuit: object,
    path: str | os.PathLike,
    *,
    n_layers: int | None = None,
    n_heads: int | None = None,
    d_model: int | None = None,
    model: object = None,
) -> Path:
    """Write a circuit or a learned subnetwork as EAP-IG graph JSON.

    The file reads back with EAP-IG's ``Graph.from_json`` and with :func:`load`. Edges of
    the circuit are written with their scores and ``in_graph``; scored edges outside it
    with ``in_graph: false``. A node-only circuit (a subnetwork, a head list) keeps every
    edge between its nodes, ``input`` and ``logits`` (score 0 when unscored). MLP neurons
    are written as their MLP node; edges into a head without ``<q|k|v>`` as all three.

    Args:
        subnetwork_or_circuit: anything :func:`sc_interp.circuits.compare` accepts.
        path: the JSON file to write.
        n_layers: the model's layers (else the circuit's, or ``model.cfg``).
        n_heads: the model's heads per layer (likewise).
        d_model: written to ``cfg``; EAP-IG only uses it to size neuron tensors, so
            ``0`` is written when it is unknown.
        model: a model (or config) to take the sizes from.

    Returns:
        The path written.

    Example:
        >>> import tempfile, os
        >>> out = to_eap_json([(0, 1)], os.path.join(tempfile.mkdtemp(), "c.json"),
        ...                   n_layers=1, n_heads=2)
        >>> sorted(load(out).nodes)
        ['a0.h1', 'input', 'logits']
    """
    from sc_interp.circuits._subnetwork import model_dims, to_circuit

    path = _validate.writable_file("path", path, error=CircuitError)
    dims = model_dims(model)
    for name, given, known in (("n_layers", n_layers, dims.n_layers), ("n_heads", n_heads, dims.n_heads),
                               ("d_model", d_model, dims.d_model)):  # fmt: skip
        if given is None:
            continue
        _validate.integer(name, given, minimum=1 if name != "d_model" else 0, error=CircuitError)
        if known is not None and given != known:
            raise CircuitError(f"{name}={given} but the model has {name}={known}")
    circuit = to_circuit(subnetwork_or_circuit, model=model, n_heads=n_heads or dims.n_heads)
    n_layers = n_layers or dims.n_layers or circuit.n_layers
    n_heads = n_heads or dims.n_heads or circuit.n_heads
    if n_layers is None or n_heads is None:
        raise CircuitError(
            "to_eap_json needs the model's size: pass n_layers= and n_heads= (or model=)"
        )
    # EAP-IG's graph has every edge between its nodes: bound it before building it
    n_edges = (n_layers * (n_heads + 1) + 1) * (n_layers * (3 * n_heads + 1) + 1)
    if n_edges > MAX_EDGES:
        raise CircuitError(
            f"an EAP-IG graph for n_layers={n_layers}, n_heads={n_heads} would have about "
            f"{n_edges:.1e} edges (at most {MAX_EDGES:.0e}); check the sizes"
        )
    circuit.validate(n_layers=n_layers, n_heads=n_heads, d_mlp=dims.d_mlp)
    data = _eap.eap_dict(
        circuit, n_layers=n_layers, n_heads=n_heads, d_model=d_model or dims.d_model
    )
    logger.debug("writing EAP-IG graph with %d edges to %s", len(data["edges"]), path)
    return _eap.write_eap(data, path)
