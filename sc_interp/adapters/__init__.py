"""Adapters: one small module per model family, each only says which sites exist.

:func:`resolve` unwraps wrappers (nnsight) to the torch module that actually runs, and
:func:`find_sites` lists a model's mask sites in forward order for one unit kind.
"""

from __future__ import annotations

from torch import nn

from sc_interp.adapters import nnsight as _nnsight
from sc_interp.adapters import torch as _torch
from sc_interp.errors import UnsupportedModelError
from sc_interp.sites import Site, check_unit


def resolve(model: object) -> nn.Module:
    """The ``torch.nn.Module`` that runs ``model`` (unwrapping nnsight's ``NNsight``).

    Raises:
        UnsupportedModelError: ``model`` is neither a torch module nor a supported wrapper.
    """
    if _nnsight.is_nnsight(model):
        return _nnsight.unwrap(model)
    if isinstance(model, nn.Module):
        return model
    raise UnsupportedModelError(
        f"cannot attach masks to a {type(model).__module__}.{type(model).__qualname__}; "
        "supported: torch.nn.Module (plain PyTorch), TransformerLens HookedTransformer / "
        "TransformerBridge, nnsight NNsight / LanguageModel"
    )


def find_sites(model: object, unit: str) -> list[Site]:
    """All mask sites of ``unit`` kind in ``model``, in forward order.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> [s.name for s in find_sites(net, "neuron")]
        ['0', '2']
    """
    check_unit(unit)
    return _torch.sites(resolve(model), unit)
