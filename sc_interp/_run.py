"""Running a user's model on a batch, whatever its family (the one place that knows how)."""

from __future__ import annotations

from typing import Any

import torch

from sc_interp.adapters import resolve
from sc_interp.adapters.nnsight import is_nnsight


def model_device(model: object) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless model)."""
    for p in resolve(model).parameters():
        return p.device
    return torch.device("cpu")


def forward(model: object, x: Any) -> Any:
    """``model(x)`` with ``x`` moved to the model's device; nnsight models run in a trace."""
    if isinstance(x, torch.Tensor):
        x = x.to(model_device(model))
    if not is_nnsight(model):
        return model(x)  # type: ignore[operator]
    with model.trace(x):  # type: ignore[attr-defined]
        out = model.output.save()  # type: ignore[attr-defined]
    return out
