"""Running a user's model on a batch, whatever its family (the one place that knows how)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch

from sc_interp.adapters import resolve
from sc_interp.adapters.nnsight import is_nnsight
from sc_interp.errors import DataError, ScInterpError

T = TypeVar("T")
# exceptions from these packages (and Python's own) raised while running the user's model
# or callables mean the inputs do not fit; anything else is the user's own and passes unchanged
_LIBRARIES = ("builtins", "torch", "transformer_lens", "nnsight", "transformers", "numpy",
              "einops", "jaxtyping", "safetensors", "typeguard", "beartype")  # fmt: skip


def is_users_own(exc: BaseException) -> bool:
    """Whether ``exc`` is of a class the user defined (it then escapes unchanged)."""
    module = type(exc).__module__ or ""
    return not any(module == lib or module.startswith(lib + ".") for lib in _LIBRARIES)


def guarded(what: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, with library errors turned into :class:`DataError` naming ``what``.

    The user's own exception classes, ScInterpErrors and KeyboardInterrupt pass unchanged.

    Example:
        >>> guarded("the readout", lambda x: x[5], [1, 2])
        Traceback (most recent call last):
        ...
        sc_interp.errors.DataError: the readout failed: IndexError: list index out of range
    """
    try:
        return fn(*args)
    except ScInterpError:
        raise
    except Exception as exc:
        if is_users_own(exc):
            raise
        raise DataError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


def model_device(model: object) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless model)."""
    for p in resolve(model).parameters():
        return p.device
    return torch.device("cpu")


def forward(model: object, x: Any) -> Any:
    """``model(x)`` with ``x`` moved to the model's device; nnsight models run in a trace.

    Raises:
        DataError: the model could not run on ``x`` (wrong shape, dtype, token ids out of
            range...); the message shows the input's shape.
    """
    shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
    return guarded(f"running the model on inputs of shape {shape}", _forward, model, x)


def _forward(model: object, x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        x = x.to(model_device(model))
    if not is_nnsight(model):
        return model(x)  # type: ignore[operator]
    with model.trace(x):  # type: ignore[attr-defined]
        out = model.output.save()  # type: ignore[attr-defined]
    return out
