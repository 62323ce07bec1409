"""Plain PyTorch adapter: Linear, Conv1d/2d/3d and Hugging Face ``Conv1D`` layers.

- ``weight`` sites: each layer's ``weight`` tensor, named ``{module path}.weight``.
- ``neuron`` sites: each layer's output units (Linear features, Conv channels), named by
  the module path.
- ``head`` sites: none in plain torch models.

A TransformerLens model nested inside a plain module (for example the encoder of an
odd-one-out wrapper) is handed to the TransformerLens adapter, and a Hugging Face
``PreTrainedModel`` of a known family to the Hugging Face adapter
(:mod:`sc_interp.adapters.hf`), their site names prefixed with the path to them
(``encoder.bridge.blocks.0.mlp.hook_post``, ``encoder.bert.encoder.layer.0.output.dense``).
Weight layouts come from the module type (``nn.Linear`` ``[out, in]``, ``Conv1D``
``[in, out]``), see :mod:`sc_interp.adapters._layout`.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize

from sc_interp.adapters import hf as _hf
from sc_interp.adapters import transformer_lens as _tl
from sc_interp.adapters._layout import weight_axes, weight_of
from sc_interp.sites import Site


def _layer_sites(path: str, module: nn.Module, unit: str) -> list[Site]:
    weight = weight_of(module)
    axes = weight_axes(module)
    if weight is None or axes is None:
        return []
    shape = tuple(weight.shape)
    out_axis = axes[0]
    n_out = int(weight.shape[out_axis])
    # the unit axis of the layer's output: channels of a convolution, features otherwise
    axis = (
        -(len(module.kernel_size) + 1)
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d)
        else -1
    )
    if unit == "weight":
        return [Site(_join(path, "weight"), "weight", shape, module=path, attr="weight")]
    if unit == "neuron":
        bake = ((path, "weight", out_axis),)
        if getattr(module, "bias", None) is not None:
            bake += ((path, "bias", 0),)
        return [Site(path, "neuron", (n_out,), module=path, axis=axis, bake=bake)]
    return []


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def sites(model: nn.Module, unit: str, prefix: str = "") -> list[Site]:
    """Sites of ``unit`` kind in ``model`` in registration (forward) order."""
    if _tl.is_transformer_lens(model):
        return _tl.sites(model, unit, prefix)
    if _hf.is_hf(model) and unit != "edge":  # edges: TransformerLens models only
        known = _hf.sites(model, unit, prefix)
        if known is not None:
            return known
    found = _layer_sites(prefix, model, unit)
    for name, child in model.named_children():
        if name == "parametrizations" and parametrize.is_parametrized(model):
            continue  # torch.nn.utils.parametrize's container, not a layer of the model
        found.extend(sites(child, unit, _join(prefix, name)))
    return found
