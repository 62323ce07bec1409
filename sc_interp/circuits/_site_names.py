"""TransformerLens site names and the units their mask entries belong to.

Sites (any prefix before ``blocks.`` is ignored, e.g. ``encoder.bridge.blocks.0...``):

============================================  ==========================  ==================
site                                          mask shape                  unit axis
============================================  ==========================  ==================
``blocks.L.attn.W_Q|W_K|W_V`` (TL 2/3)         ``[n_heads, d_model, d_head]``  head: dim 0
``blocks.L.attn.W_O`` (TL 2/3)                 ``[n_heads, d_head, d_model]``  head: dim 0
``blocks.L.mlp.W_in`` / ``W_out`` (TL 2/3)     ``[d_model, d_mlp]`` / ``[d_mlp, d_model]``  neuron
``blocks.L.attn.q|k|v.weight`` (TL 4 bridge)  ``[n_heads*d_head, d_model]``  head: row groups
``blocks.L.attn.o.weight`` (TL 4 bridge)      ``[d_model, n_heads*d_head]``  head: column groups
``blocks.L.mlp.in.weight`` / ``out.weight``   ``[d_mlp, d_model]`` / ``[d_model, d_mlp]``  neuron
``blocks.L.mlp.hook_post``                    ``[d_mlp]``                 neuron
``blocks.L.attn.hook_z``                      ``[n_heads]``               head
============================================  ==========================  ==================

These rules assume ``nn.Linear`` layouts on the bridge; a site's
:class:`~sc_interp.sites.UnitMap` (read from the real module) takes precedence where known.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sc_interp.errors import CircuitError

if TYPE_CHECKING:
    import torch

SITE = re.compile(r"(?:^|\.)blocks\.(\d+)\.(.+)$")
_TL_HEAD = {"attn.W_Q", "attn.W_K", "attn.W_V", "attn.W_O"}
_BRIDGE_HEAD_ROWS = {"attn.q.weight", "attn.k.weight", "attn.v.weight"}


def unit_rows(name: str, t: torch.Tensor, n_heads: int | None) -> tuple[str, torch.Tensor] | None:
    """``(kind, [n_units, entries])`` for one site, ``None`` if the site is no unit."""
    match = SITE.search(name)
    if not match:
        return None
    rest = match[2]
    shape = tuple(t.shape)

    def need(ndim: int, what: str) -> None:
        if t.ndim != ndim:
            raise CircuitError(f"mask {name!r} has shape {shape}; expected {what}")

    if rest in _TL_HEAD:
        need(3, "[n_heads, d_model, d_head] (W_O: [n_heads, d_head, d_model])")
        return "head", t.reshape(shape[0], -1)
    if rest == "mlp.W_in":
        need(2, "[d_model, d_mlp]")
        return "neuron", t.T
    if rest in ("mlp.W_out", "mlp.in.weight"):
        need(2, "[d_mlp, d_model]")
        return "neuron", t
    if rest == "mlp.out.weight":
        need(2, "[d_model, d_mlp]")
        return "neuron", t.T
    if rest == "mlp.hook_post":
        return "neuron", t.reshape(-1, 1)
    if rest == "attn.hook_z":
        return "head", t.reshape(-1, 1)
    if rest in _BRIDGE_HEAD_ROWS or rest == "attn.o.weight":
        if n_heads is None:
            raise CircuitError(
                f"mask {name!r} stacks all heads in one matrix; pass model= (its cfg.n_heads) "
                "or n_heads= to split it"
            )
        need(2, "[n_heads*d_head, d_model] (o.weight: [d_model, n_heads*d_head])")
        rows = t if rest != "attn.o.weight" else t.T
        if rows.shape[0] % n_heads:
            raise CircuitError(
                f"mask {name!r} of shape {shape} does not split into {n_heads} heads"
            )
        return "head", rows.reshape(n_heads, -1)
    return None
