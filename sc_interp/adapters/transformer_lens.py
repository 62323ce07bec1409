"""TransformerLens adapter: TL 4 ``TransformerBridge`` and TL 2/3 ``HookedTransformer``.

Site names are TransformerLens' own:

============  ==========================================  ==========================================
unit          HookedTransformer (TL 2/3)                  TransformerBridge (TL 4)
============  ==========================================  ==========================================
``weight``    ``blocks.{L}.attn.W_Q|W_K|W_V|W_O``,        ``blocks.{L}.attn.q|k|v|o.weight``,
              ``blocks.{L}.mlp.W_in|W_gate|W_out``        ``blocks.{L}.mlp.in|gate|out.weight``
``neuron``    ``blocks.{L}.mlp.hook_post``                ``blocks.{L}.mlp.hook_post``
``head``      ``blocks.{L}.attn.hook_z``                  ``blocks.{L}.attn.hook_z``
``edge``      ``blocks.{L}.hook_q|k|v_input``, ``blocks.{L}.hook_mlp_in``,
              ``blocks.{n-1}.hook_resid_post`` (both; see :mod:`sc_interp.adapters.edges_tl`)
============  ==========================================  ==========================================

Hooks are raw torch forward hooks on the hook points, not TransformerLens hooks, so
``model.reset_hooks()`` leaves them in place. On the bridge, ``attn.hook_z`` is an alias
of ``attn.o.hook_in`` whose raw output is ``[batch, pos, n_heads * d_head]``: a head owns
``d_head`` consecutive features. TransformerLens itself is never imported here: models are
recognised by class name.

A bridge booted around a Hugging Face model keeps that model's modules inside its
components: on GPT-2, ``attn.o``, ``mlp.in`` and ``mlp.out`` wrap ``Conv1D`` layers whose
``weight`` is ``[in, out]`` (``attn.q|k|v`` are split into ``nn.Linear``). Bake axes and the
units of each weight mask entry (:class:`~sc_interp.sites.UnitMap`) are read from the
wrapped module's type, never assumed from the name.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from sc_interp.adapters._layout import weight_axes
from sc_interp.sites import Site, UnitMap

_HOOKED = "HookedTransformer"
_BRIDGE = "TransformerBridge"
_ATTN_ORDER = {"Q": 0, "K": 1, "V": 2, "O": 3, "in": 4, "gate": 5, "out": 6}
_HT_WEIGHT = re.compile(r"^blocks\.(\d+)\.(?:attn\.W_([QKVO])|mlp\.W_(in|gate|out))$")
_PARAMETRIZED = re.compile(r"\.parametrizations\.(\w+)\.original$")
_BRIDGE_WEIGHT = re.compile(r"^blocks\.(\d+)\.(?:attn\.([qkvo])|mlp\.(in|gate|out))\.weight$")


def _family(model: nn.Module) -> str | None:
    for cls in type(model).__mro__:
        if cls.__module__.startswith("transformer_lens") and cls.__name__ in (_HOOKED, _BRIDGE):
            return cls.__name__
    return None


def is_transformer_lens(model: nn.Module) -> bool:
    """True for a TL ``HookedTransformer`` or ``TransformerBridge`` (or a subclass)."""
    return _family(model) is not None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _module_paths(model: nn.Module) -> dict[int, str]:
    return {id(m): path for path, m in model.named_modules(remove_duplicate=False)}


def _param_owners(model: nn.Module) -> dict[int, tuple[str, str]]:
    owners: dict[int, tuple[str, str]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        for attr, p in module._parameters.items():
            if p is not None:
                owners.setdefault(id(p), (path, attr))
    return owners


def _heads(cfg: Any) -> tuple[int, int, int]:
    """``(n_heads, d_head, query heads per key/value head)`` from a TL config."""
    n_heads, d_head = int(cfg.n_heads), int(cfg.d_head)
    n_kv = getattr(cfg, "n_key_value_heads", None) or n_heads
    return n_heads, d_head, max(n_heads // int(n_kv), 1)


def _hooked_units(kind: str, layer: int) -> UnitMap:
    # HookedTransformer: W_Q/W_K/W_V [n_heads, d_model, d_head], W_O [n_heads, d_head, d_model],
    # W_in/W_gate [d_model, d_mlp], W_out [d_mlp, d_model]
    if kind in ("Q", "K", "V", "O"):
        return UnitMap("head", layer, 0)
    return UnitMap("neuron", layer, 0 if kind == "out" else 1)


def _bridge_units(kind: str, layer: int, module: nn.Module, cfg: Any) -> UnitMap | None:
    axes = weight_axes(module)
    if axes is None:
        return None
    out_axis, in_axis = axes
    _, d_head, share = _heads(cfg)
    if kind in ("q", "k", "v"):
        return UnitMap("head", layer, out_axis, d_head, share=1 if kind == "q" else share)
    if kind == "o":
        return UnitMap("head", layer, in_axis, d_head)
    return UnitMap("neuron", layer, in_axis if kind == "out" else out_axis)


def _weight_sites(model: nn.Module, family: str, prefix: str) -> list[Site]:
    owners = _param_owners(model)
    cfg: Any = getattr(model, "cfg", None)
    if family == _HOOKED:
        named = dict(model.named_parameters())
        pattern = _HT_WEIGHT
    else:
        named = dict(model.state_dict(keep_vars=True))
        pattern = _BRIDGE_WEIGHT
    keyed = []
    for raw, param in named.items():
        # see through parametrizations (another MaskSet's, or the user's own)
        name = _PARAMETRIZED.sub(r".\1", raw)
        match = pattern.match(name)
        if match is None or id(param) not in owners:
            continue
        layer, attn, mlp = match.groups()
        order = _ATTN_ORDER[(attn or "").upper() or mlp]
        keyed.append(((int(layer), order), name, param, attn or mlp))
    found = []
    for (layer, _), name, param, kind in sorted(keyed, key=lambda item: item[0]):
        path, attr = owners[id(param)]
        holder = re.match(r"^(.*)\.parametrizations\.(\w+)$", path)
        if holder is not None and attr == "original":  # the parametrized module itself
            path, attr = holder.groups()
        if family == _HOOKED:
            units = _hooked_units(kind, layer)
        else:
            module = model.get_submodule(path)
            units = None if cfg is None else _bridge_units(kind, layer, module, cfg)
        found.append(
            Site(
                _join(prefix, name),
                "weight",
                tuple(param.shape),
                _join(prefix, path),
                attr,
                units=units,
            )
        )
    return found


def _hook_sites(model: nn.Module, family: str, unit: str, prefix: str) -> list[Site]:
    cfg: Any = getattr(model, "cfg")  # noqa: B009 - typed Any on purpose
    hooks: dict[str, nn.Module] = getattr(model, "hook_dict")  # noqa: B009
    paths = _module_paths(model)
    weights = {s.name: s for s in _weight_sites(model, family, "")}
    found = []
    for layer in range(int(cfg.n_layers)):
        if unit == "neuron":
            name, shape, axis, group = f"blocks.{layer}.mlp.hook_post", (int(cfg.d_mlp),), -1, 1
            # the unit's only consumer: row i of W_out [d_mlp, d_model] / the input side of
            # the bridge's out.weight (column i of a Linear, row i of a Conv1D)
            reader = (
                f"blocks.{layer}.mlp.W_out"
                if family == _HOOKED
                else f"blocks.{layer}.mlp.out.weight"
            )
        else:
            name, shape = f"blocks.{layer}.attn.hook_z", (int(cfg.n_heads),)
            # HookedTransformer: [batch, pos, head, d_head]; bridge (raw): [batch, pos, head*d_head]
            axis, group = (-2, 1) if family == _HOOKED else (-1, int(cfg.d_head))
            reader = (
                f"blocks.{layer}.attn.W_O" if family == _HOOKED else f"blocks.{layer}.attn.o.weight"
            )
        hook = hooks.get(name)
        if hook is None or id(hook) not in paths:
            continue
        bake: tuple[tuple[str, str, int], ...] = ()
        if reader in weights:
            w = weights[reader]
            # HookedTransformer: W_O / W_out hold heads / neurons on axis 0
            axes = (None, 0) if family == _HOOKED else weight_axes(model.get_submodule(w.module))
            if axes is not None:
                bake = ((_join(prefix, w.module), w.attr or "weight", axes[1]),)
        found.append(
            Site(
                _join(prefix, name),
                unit,  # type: ignore[arg-type]
                shape,
                _join(prefix, paths[id(hook)]),
                None,
                axis,
                group,
                bake,
                units=UnitMap("head" if unit == "head" else "neuron", layer),
            )
        )
    return found


def sites(model: nn.Module, unit: str, prefix: str = "") -> list[Site]:
    """Sites of ``unit`` kind in a TransformerLens model, in forward order."""
    family = _family(model)
    if family is None:
        return []
    if unit == "weight":
        return _weight_sites(model, family, prefix)
    if unit == "edge":
        from sc_interp.adapters import edges_tl

        return edges_tl.sites(model, family, prefix)
    return _hook_sites(model, family, unit, prefix)
