"""Edge sites of TransformerLens models: where each source and destination lives.

Both TL 2/3 ``HookedTransformer`` and the TL 4 ``TransformerBridge`` expose the same hook
names for what an edge mask needs (raw torch hooks on them, as for the other units):

- sources: ``blocks.0.hook_resid_pre`` (``input``: token plus positional embeddings),
  ``blocks.{L}.attn.hook_z`` times each head's slice of ``W_O`` (head ``a{L}.h{H}``; the
  attention output bias ``b_O`` belongs to no head and is always kept, as in TransformerLens'
  ``hook_result`` and EAP-IG) and ``blocks.{L}.hook_mlp_out`` (``m{L}``, its output bias
  included);
- destinations: ``blocks.{L}.attn.hook_q|k|v`` (replaced by the projection of each head's
  own masked input, through the layer's ``ln1``), the input of ``blocks.{L}.ln2`` (the
  MLP's masked input, before its LayerNorm) and the input of ``ln_final`` (``unembed``
  without final norm). Each destination's own LayerNorm normalises its masked sum, as in
  Edge Pruning and auto-circuit. The run-time side is :mod:`sc_interp._edge_runtime`.

Supported: sequential attention-then-MLP blocks with one key/value head per query head
(GPT-2, Pythia-style without parallel attention, the TL 4 native bridge, any TL 2/3
HookedTransformer config that has neither parallel attention, grouped-query attention,
shortformer positions nor extra post-norms). Others raise
:class:`~sc_interp.errors.UnsupportedModelError` naming the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from sc_interp._edge_graph import EdgeGraph
from sc_interp.adapters._layout import weight_axes
from sc_interp.adapters.transformer_lens import _family
from sc_interp.errors import UnsupportedModelError
from sc_interp.sites import Site

_HOOKED = "HookedTransformer"
_HT_NORMS = ("LayerNorm", "LayerNormPre", "RMSNorm", "RMSNormPre")


def family_of(model: nn.Module) -> str:
    """``"HookedTransformer"`` or ``"TransformerBridge"``; raises for any other model."""
    family = _family(model)
    if family is None:
        raise UnsupportedModelError(
            f"edge masks need a TransformerLens model, got {type(model).__name__}"
        )
    return family


@dataclass
class LayerParts:
    """The modules of one layer that an edge mask hooks or calls."""

    resid_pre: nn.Module  # HookPoint: output is the layer's residual input
    qkv: dict[str, nn.Module]  # HookPoints: output is the projected q / k / v
    z: nn.Module  # HookPoint: output is the per-head mixed values
    ln1: nn.Module  # called on each head's masked q/k/v input
    attn: nn.Module
    mlp_out: nn.Module | None  # HookPoint: output is the MLP's output
    ln2: nn.Module | None  # its input is the MLP's (pre-norm) input


class TLEdgeModel:
    """One TransformerLens model seen as an edge graph (see the module docs).

    Example:
        >>> TLEdgeModel.__name__
        'TLEdgeModel'
    """

    def __init__(self, model: nn.Module, family: str):
        cfg: Any = getattr(model, "cfg")  # noqa: B009
        _check_supported(cfg, family)
        self.model, self.family = model, family
        self.n_layers, self.n_heads = int(cfg.n_layers), int(cfg.n_heads)
        self.d_head, self.d_model = int(cfg.d_head), int(cfg.d_model)
        self.has_mlp = not bool(getattr(cfg, "attn_only", False))
        self.graph = EdgeGraph(self.n_layers, self.n_heads, has_mlp=self.has_mlp)
        hooks: dict[str, nn.Module] = getattr(model, "hook_dict")  # noqa: B009
        blocks: Any = getattr(model, "blocks")  # noqa: B009

        def hook(name: str) -> nn.Module:
            found = hooks.get(name)
            if found is None:
                raise UnsupportedModelError(
                    f"edge masks need the hook point {name!r}, which this {family} does not "
                    "have (bridges with a fused qkv projection are not supported)"
                )
            return found

        self.layers = []
        for layer in range(self.n_layers):
            block = blocks[layer]
            self.layers.append(
                LayerParts(
                    resid_pre=hook(f"blocks.{layer}.hook_resid_pre"),
                    qkv={k: hook(f"blocks.{layer}.attn.hook_{k}") for k in "qkv"},
                    z=hook(f"blocks.{layer}.attn.hook_z"),
                    ln1=block.ln1,
                    attn=block.attn,
                    mlp_out=hook(f"blocks.{layer}.hook_mlp_out") if self.has_mlp else None,
                    ln2=block.ln2 if self.has_mlp else None,
                )
            )
        has_final = family != _HOOKED or cfg.normalization_type is not None
        self.logits_in: nn.Module = getattr(model, "ln_final" if has_final else "unembed")

    def norm1(self, layer: int, x: Tensor) -> Tensor:
        """The layer's ``ln1`` applied to ``x`` (``[..., d_model]``) without firing its hooks.

        TransformerLens' own norms fire ``hook_scale``/``hook_normalized``; computing them here
        keeps a user's ``run_with_cache`` free of our per-head calls.
        """
        ln1: Any = self.layers[layer].ln1
        inner = getattr(ln1, "original_component", None)
        if inner is not None:  # a bridge's NormalizationBridge wraps a plain torch norm
            return inner(x)
        name = type(ln1).__name__
        if name not in _HT_NORMS:
            return ln1(x)
        if name.startswith("LayerNorm"):
            x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + ln1.eps).sqrt()
        if name == "LayerNorm":
            return x * ln1.w + ln1.b
        return x * ln1.w if name == "RMSNorm" else x

    # ------------------------------------------------------------------ weights
    def qkv_weights(self, layer: int, kind: str) -> tuple[Tensor, Tensor | None]:
        """``(W [n_heads, d_model, d_head], b [n_heads, d_head] or None)`` of q, k or v."""
        attn = self.layers[layer].attn
        if self.family == _HOOKED:
            upper = kind.upper()
            return getattr(attn, f"W_{upper}"), getattr(attn, f"b_{upper}")
        module = _wrapped(getattr(attn, kind))
        weight = _out_in(module)  # [H * d_head, d_model]
        w = weight.reshape(self.n_heads, self.d_head, self.d_model).transpose(1, 2)
        bias = getattr(module, "bias", None)
        return w, None if bias is None else bias.reshape(self.n_heads, self.d_head)

    def out_weights(self, layer: int) -> tuple[Tensor, Tensor | None]:
        """``(W_O [n_heads, d_head, d_model], b_O [d_model] or None)``."""
        attn = self.layers[layer].attn
        if self.family == _HOOKED:
            return attn.W_O, attn.b_O
        module = _wrapped(attn.o)
        weight = _out_in(module)  # [d_model, H * d_head]
        w = weight.reshape(self.d_model, self.n_heads, self.d_head).permute(1, 2, 0)
        return w, getattr(module, "bias", None)

    def heads_of(self, activation: Tensor) -> Tensor:
        """A q/k/v/z hook's output as ``[batch, pos, n_heads, d_head]`` (the bridge's raw
        hooks see ``[batch, pos, n_heads * d_head]``)."""
        if activation.ndim == 4:
            return activation
        return activation.reshape(*activation.shape[:-1], self.n_heads, self.d_head)


def _wrapped(bridge_component: nn.Module) -> nn.Module:
    return getattr(bridge_component, "original_component", None) or bridge_component


def _out_in(module: nn.Module) -> Tensor:
    """The module's weight as ``[out, in]`` (``Conv1D`` stores ``[in, out]``)."""
    axes = weight_axes(module)
    weight: Tensor = getattr(module, "weight")  # noqa: B009
    if axes is None:
        raise UnsupportedModelError(f"edge masks cannot read the layout of {type(module).__name__}")
    return weight if axes[0] == 0 else weight.T


def _check_supported(cfg: Any, family: str) -> None:
    reasons = []
    if getattr(cfg, "parallel_attn_mlp", False):
        reasons.append("parallel attention and MLP")
    n_kv = getattr(cfg, "n_key_value_heads", None)
    if n_kv and int(n_kv) != int(cfg.n_heads):
        reasons.append("grouped-query attention")
    if getattr(cfg, "positional_embedding_type", "standard") == "shortformer":
        reasons.append("shortformer positional embeddings")
    if getattr(cfg, "use_normalization_before_and_after", False):
        reasons.append("normalization after attention and MLP")
    if family == _HOOKED and str(getattr(cfg, "original_architecture", "")).startswith("Olmo"):
        reasons.append("post-norm blocks")
    if reasons:
        raise UnsupportedModelError(
            f"edge masks support sequential pre-norm transformers; this {family} has "
            f"{', '.join(reasons)}"
        )


def sites(model: nn.Module, family: str, prefix: str = "") -> list[Site]:
    """Edge sites of a TransformerLens model, in forward order (one per destination group).

    Example:
        >>> sites.__name__
        'sites'
    """
    edge_model = TLEdgeModel(model, family)
    join = (lambda name: f"{prefix}.{name}") if prefix else (lambda name: name)
    # ``module`` is the TransformerLens model itself: one runtime per model hooks every site
    return [
        Site(join(g.site), "edge", (len(g.edges),), module=prefix, edges=g.edges)
        for g in edge_model.graph.groups
    ]
