"""Plain PyTorch adapter: Linear, Conv1d/2d/3d and Hugging Face ``Conv1D`` layers.

- ``weight`` sites: each layer's ``weight`` tensor, named ``{module path}.weight``.
- ``neuron`` sites: each layer's output units (Linear features, Conv channels), named by
  the module path.
- ``head`` sites: none in plain torch models.

A TransformerLens model nested inside a plain module (for example the encoder of an
odd-one-out wrapper) is handed to the TransformerLens adapter, its site names prefixed
with the path to it (``encoder.bridge.blocks.0.mlp.hook_post``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from sc_interp.adapters import transformer_lens as _tl
from sc_interp.sites import Site


def _conv1d_hf(module: nn.Module) -> bool:
    # Hugging Face's GPT-2 style Conv1D stores weight as [in, out]; detect by name so we
    # never import transformers.
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _layer_sites(path: str, module: nn.Module, unit: str) -> list[Site]:
    if parametrize.is_parametrized(module, "weight"):
        # read the shape without running the parametrizations (ours, or the user's weight_norm)
        plist = module.parametrizations["weight"]  # type: ignore[index,union-attr]
        weight = getattr(plist, "original", None)
        if weight is None:  # several originals (weight_norm): the computed weight's shape
            with torch.no_grad():
                weight = getattr(module, "weight", None)
    else:
        weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        return []
    shape = tuple(weight.shape)
    if isinstance(module, nn.Linear):
        axis, n_out = -1, module.out_features
    elif isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        axis, n_out = -(len(module.kernel_size) + 1), module.out_channels
    elif _conv1d_hf(module):
        axis, n_out = -1, int(module.nf)  # type: ignore[arg-type]
    else:
        return []
    if unit == "weight":
        return [Site(_join(path, "weight"), "weight", shape, module=path, attr="weight")]
    if unit == "neuron":
        out_axis = 1 if _conv1d_hf(module) else 0
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
    found = _layer_sites(prefix, model, unit)
    for name, child in model.named_children():
        if name == "parametrizations" and parametrize.is_parametrized(model):
            continue  # torch.nn.utils.parametrize's container, not a layer of the model
        found.extend(sites(child, unit, _join(prefix, name)))
    return found
