"""Weight layouts, read from the module's real type (never from its family or name).

``nn.Linear`` stores ``weight`` as ``[out, in]``; Hugging Face's ``Conv1D`` (GPT-2 and
the TransformerLens 4 bridge around it) as ``[in, out]``; torch convolutions as
``[out_channels, in_channels, *kernel]``. transformers is never imported: ``Conv1D`` is
recognised by class name and its ``nf`` attribute.
"""

from __future__ import annotations

from torch import nn


def is_hf_conv1d(module: nn.Module) -> bool:
    """True for Hugging Face's ``Conv1D`` (a linear layer with ``weight`` ``[in, out]``).

    Example:
        >>> is_hf_conv1d(nn.Linear(2, 3))
        False
    """
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


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
