"""Weight layouts, read from the module's real type (never from its family or name).

``nn.Linear`` stores ``weight`` as ``[out, in]``; Hugging Face's ``Conv1D`` (GPT-2 and
the TransformerLens 4 bridge around it) as ``[in, out]``; torch convolutions as
``[out_channels, in_channels, *kernel]``. transformers is never imported: ``Conv1D`` is
recognised by class name and its ``nf`` attribute.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


def is_hf_conv1d(module: nn.Module) -> bool:
    """True for Hugging Face's ``Conv1D`` (a linear layer with ``weight`` ``[in, out]``).

    Parametrized modules get a generated subclass, so the whole class hierarchy is checked.

    Example:
        >>> is_hf_conv1d(nn.Linear(2, 3))
        False
    """
    return hasattr(module, "nf") and any(c.__name__ == "Conv1D" for c in type(module).__mro__)


def weight_of(module: nn.Module) -> torch.Tensor | None:
    """``module.weight`` for its shape, read without running parametrizations if any.

    Example:
        >>> weight_of(nn.Linear(2, 3)).shape
        torch.Size([3, 2])
    """
    if parametrize.is_parametrized(module, "weight"):
        # ours (another MaskSet's) or the user's own: the original has the shape
        plist = module.parametrizations["weight"]  # type: ignore[index,union-attr]
        weight = getattr(plist, "original", None)
        if weight is None:  # several originals (weight_norm): the computed weight's shape
            with torch.no_grad():
                weight = getattr(module, "weight", None)
    else:
        weight = getattr(module, "weight", None)
    return weight if isinstance(weight, torch.Tensor) else None


def weight_axes(module: nn.Module) -> tuple[int, int] | None:
    """``(output axis, input axis)`` of ``module.weight``; ``None`` for other modules.

    Example:
        >>> weight_axes(nn.Linear(2, 3)), weight_axes(nn.Conv2d(1, 4, 3))
        ((0, 1), (0, 1))
    """
    if is_hf_conv1d(module):
        return 1, 0
    if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
        return 0, 1
    return None
