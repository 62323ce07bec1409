"""Edge masks at run time: record each source's output, rewrite each destination's input.

One :class:`EdgeRuntime` per MaskSet and TransformerLens model. In every forward pass its
source hooks keep references to ``input`` (the first block's residual input), each layer's
mixed values ``z`` (a head's output is its slice ``z_h @ W_O[h]``; the attention output bias
``b_O`` is in no edge and always kept) and each MLP's output. A destination's input is the
residual stream the model itself computed there plus the change the masks make::

    input(d) = resid + sum_s (m[d, s] - 1) * (out_s - replacement_s)

which is exactly Edge Pruning's and auto-circuit's masked sum of sources (with ``m = 1``
everywhere it is the residual stream itself, bit for bit: eval masks that keep every edge
of a group skip the group). ``replacement_s`` is 0 (``zero``), the source's mean output
(``mean``) or its output on another input (``resample``), see :mod:`sc_interp.ablate`.

Destinations: a head's query, key and value inputs are rewritten by replacing the output
of ``attn.hook_q|k|v`` with the projection of each head's own masked input through the
layer's ``ln1``; the MLP's input (before ``ln2``) and the unembedding's input (before
``ln_final``) are rewritten by forward pre-hooks.

Memory: the head outputs of every layer are materialised, ``n_heads x batch x positions
x d_model`` per layer, so a forward holds about ``sources x batch x positions x d_model``
floats more than the plain model (plus their gradients in training).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from sc_interp.adapters.edges_tl import TLEdgeModel, family_of
from sc_interp.errors import ConfigError

if TYPE_CHECKING:
    from sc_interp.masks import MaskSet
    from sc_interp.sites import Site


class SourceReplacement:
    """What a removed edge carries instead of its source's output (default: zero).

    Subclasses return, for sources ``start:end`` (graph order), a tensor that broadcasts
    against ``[end - start, batch, pos, d_model]``.
    """

    def part(self, start: int, end: int, like: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def new_forward(self, batch: int, positions: int) -> None:
        """Called when a forward pass starts (``resample`` draws its donors here)."""


class EdgeSourceHook:
    """A forward hook that records a source for the edge masks (never changes the output)."""

    def __init__(self, runtime: EdgeRuntime, record: Callable[[Tensor], None]):
        self.runtime = runtime
        self.record = record

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, Tensor):
            self.record(output)


class EdgeDestinationHook:
    """A forward hook (q/k/v) or pre-hook (MLP, logits) that rewrites one destination group."""

    def __init__(self, runtime: EdgeRuntime, site: Site):
        self.runtime = runtime
        self.site_name = site.name
        self.group = runtime.group_of(site)
        full = {edge: i for i, edge in enumerate(self.group.edges)}
        self.index = torch.tensor([full[e] for e in site.edges], dtype=torch.long)
        self.complete = len(site.edges) == len(self.group.edges)

    def __call__(self, module: nn.Module, *rest: Any) -> Any:
        if self.group.kind in ("q", "k", "v"):
            output = rest[1]
            return self.runtime.rewrite_qkv(self, output)
        args, kwargs = rest
        if not args or not isinstance(args[0], Tensor):
            raise ConfigError(f"edge site {self.site_name!r}: the module got no tensor input")
        new = self.runtime.rewrite_resid(self, args[0])
        return None if new is None else ((new, *args[1:]), kwargs)

    def minus_one(self, masks: MaskSet) -> Tensor | None:
        """``mask - 1`` as ``[n_dest, n_src]`` (None when every edge is kept)."""
        mask = masks.mask(self.site_name)
        if not masks.training and bool((mask > 0).all()):
            return None
        full = torch.zeros(len(self.group.edges), device=mask.device, dtype=mask.dtype)
        full = full.index_copy(0, self.index.to(mask.device), mask - 1)
        return full.view(self.group.n_dest, self.group.n_src)


class EdgeRuntime:
    """Records sources and rewrites destinations for one MaskSet on one TL model."""

    def __init__(self, masks: MaskSet, root: nn.Module, prefix: str):
        self.masks = masks
        model = root.get_submodule(prefix) if prefix else root
        family = family_of(model)
        self.prefix = prefix
        self.edges = TLEdgeModel(model, family)
        self.graph = self.edges.graph
        self.replacement: SourceReplacement | None = None
        self.capture: list[Tensor] | None = None
        self._reset()

    def _reset(self) -> None:
        self.parts: list[Tensor] = []  # [k, batch, pos, d_model] per part, graph order
        self.resid: dict[int, Tensor] = {}
        self.z: dict[int, Tensor] = {}
        self.mlp: dict[int, Tensor] = {}

    def group_of(self, site: Site) -> Any:
        name = site.name[len(self.prefix) + 1 :] if self.prefix else site.name
        return self.graph.group(name)

    # ------------------------------------------------------------- installing
    def install_sources(self) -> list[Any]:
        """Register the source hooks; returns their torch handles."""
        handles = []
        for layer, parts in enumerate(self.edges.layers):
            handles.append(self._source(parts.resid_pre, lambda t, i=layer: self._on_resid(i, t)))
            handles.append(self._source(parts.z, lambda t, i=layer: self.z.__setitem__(i, t)))
            if parts.mlp_out is not None:
                handles.append(
                    self._source(parts.mlp_out, lambda t, i=layer: self.mlp.__setitem__(i, t))
                )
        # after the unembedding's input is used, drop this forward's references
        handles.append(self._source(self.edges.logits_in, lambda t: self._finish()))
        return handles

    def _source(self, module: nn.Module, record: Callable[[Tensor], None]) -> Any:
        return module.register_forward_hook(EdgeSourceHook(self, record))

    def install_destination(self, site: Site) -> tuple[nn.Module, Any]:
        """Register the hook of one edge site; returns ``(module, torch handle)``."""
        hook = EdgeDestinationHook(self, site)
        group = hook.group
        if group.kind in ("q", "k", "v"):
            module = self.edges.layers[group.layer].qkv[group.kind]
            return module, module.register_forward_hook(hook)
        if group.kind == "mlp":
            module = self.edges.layers[group.layer].ln2
            assert module is not None
        else:
            module = self.edges.logits_in
        return module, module.register_forward_pre_hook(hook, with_kwargs=True)

    # ------------------------------------------------------------- recording
    def _on_resid(self, layer: int, value: Tensor) -> None:
        if layer == 0:
            self._reset()
            if self.replacement is not None:
                self.replacement.new_forward(value.shape[0], value.shape[1])
        self.resid[layer] = value

    def _finish(self) -> None:
        if self.capture is not None:
            n = self.graph.n_layers
            every = torch.cat([self._part(i) for i in range(self._n_parts(n))])
            self.capture.append(every.detach().movedim(0, 2))  # [batch, pos, sources, d]
        self._reset()

    def _n_parts(self, layer: int) -> int:
        """Parts (input, heads, MLP) before the attention of ``layer``."""
        return 1 + layer * (2 if self.edges.has_mlp else 1)

    def _part(self, index: int) -> Tensor:
        """Source outputs of part ``index`` as ``[k, batch, pos, d_model]``."""
        while len(self.parts) <= index:
            i = len(self.parts)
            if i == 0:
                self.parts.append(self._recorded(self.resid, 0, "the first block's input")[None])
                continue
            layer, is_mlp = divmod(i - 1, 2) if self.edges.has_mlp else (i - 1, 0)
            if is_mlp:
                self.parts.append(self._recorded(self.mlp, layer, "the MLP output")[None])
                continue
            z = self.edges.heads_of(self._recorded(self.z, layer, "the attention's z"))
            w_o, _ = self.edges.out_weights(layer)
            self.parts.append(torch.einsum("bphe,hed->hbpd", z, w_o.to(z.dtype)))
        return self.parts[index]

    @staticmethod
    def _recorded(store: dict[int, Tensor], layer: int, what: str) -> Tensor:
        found = store.get(layer)
        if found is None:
            raise ConfigError(
                f"edge masks found no record of {what} of layer {layer} in this forward pass; "
                "run the whole model (stop_at_layer and partial forwards are not supported)"
            )
        return found

    def _span(self, index: int) -> tuple[int, int]:
        if index == 0:
            return 0, 1
        h = self.graph.n_heads
        if not self.edges.has_mlp:
            start = 1 + (index - 1) * h
            return start, start + h
        layer, is_mlp = divmod(index - 1, 2)
        start = 1 + layer * (h + 1) + (h if is_mlp else 0)
        return start, start + (1 if is_mlp else h)

    # ------------------------------------------------------------- rewriting
    def delta(self, minus_one: Tensor) -> Tensor:
        """``sum_s (m[d, s] - 1) (out_s - replacement_s)`` as ``[batch, pos, n_dest, d]``."""
        total: Tensor | None = None
        index = 0
        n_src = minus_one.shape[1]
        while True:
            start, end = self._span(index)
            if start >= n_src:
                break
            weights = minus_one[:, start:end]
            if self.masks.training or bool(weights.any()):
                source = self._part(index)
                if self.replacement is not None:
                    source = source - self.replacement.part(start, end, source)
                term = torch.einsum("ds,sbpe->bpde", weights.to(source.dtype), source)
                total = term if total is None else total + term
            index += 1
        assert total is not None
        return total

    def rewrite_qkv(self, hook: EdgeDestinationHook, output: Tensor) -> Tensor | None:
        if self.masks._disabled:
            return None
        minus_one = hook.minus_one(self.masks)
        if minus_one is None:
            return None
        layer, kind = hook.group.layer, hook.group.kind
        resid = self._recorded(self.resid, layer, "the residual input")
        x = resid.unsqueeze(2) + self.delta(minus_one.to(resid.device))  # [b, p, heads, d]
        normed = self.edges.norm1(layer, x)
        w, b = self.edges.qkv_weights(layer, kind)
        out = torch.einsum("bphd,hde->bphe", normed, w.to(normed.dtype))
        if b is not None:
            out = out + b.to(out.dtype)
        return out.reshape(output.shape)

    def rewrite_resid(self, hook: EdgeDestinationHook, resid: Tensor) -> Tensor | None:
        if self.masks._disabled:
            return None
        minus_one = hook.minus_one(self.masks)
        if minus_one is None:
            return None
        return resid + self.delta(minus_one.to(resid.device)).squeeze(2)


class RemoveAll:
    """Several torch hook handles removed as one."""

    def __init__(self, handles: list[Any]):
        self.handles = handles

    def remove(self) -> None:
        for handle in reversed(self.handles):
            handle.remove()
        self.handles = []


def install(root: nn.Module, site: Site, masks: MaskSet) -> tuple[nn.Module, RemoveAll]:
    """Install the hook of edge site ``site`` (and, once per model, the source hooks)."""
    runtimes: dict[str, EdgeRuntime] = masks._edge_runtimes
    prefix = site.module
    handles = []
    runtime = runtimes.get(prefix)
    if runtime is None:
        runtime = runtimes[prefix] = EdgeRuntime(masks, root, prefix)
        handles = runtime.install_sources()
    try:
        module, handle = runtime.install_destination(site)
    except BaseException:
        RemoveAll(handles).remove()
        runtimes.pop(prefix, None) if handles else None
        raise
    return module, RemoveAll([*handles, handle])


def is_masked(root: nn.Module, site: Site) -> bool:
    """Whether the destination of edge site ``site`` already carries an edge mask."""
    model = root.get_submodule(site.module) if site.module else root
    edges = TLEdgeModel(model, family_of(model))
    name = site.name[len(site.module) + 1 :] if site.module else site.name
    group = edges.graph.group(name)
    if group.kind in ("q", "k", "v"):
        hooks = edges.layers[group.layer].qkv[group.kind]._forward_hooks
    else:
        module = edges.layers[group.layer].ln2 if group.kind == "mlp" else edges.logits_in
        assert module is not None
        hooks = module._forward_pre_hooks
    return any(isinstance(h, EdgeDestinationHook) for h in hooks.values())
