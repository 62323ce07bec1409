"""Running a user's model on a batch, whatever its family (the one place that knows how)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from sc_interp._prompt_batch import PromptBatch
from sc_interp.adapters import resolve
from sc_interp.adapters.nnsight import is_nnsight
from sc_interp.adapters.transformer_lens import is_transformer_lens
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

    A :class:`~sc_interp.prompts.PromptBatch` is passed as tokens plus what the
    model family needs to ignore padding (see :func:`prompt_arguments`).

    Raises:
        DataError: the model could not run on ``x`` (wrong shape, dtype, token ids out of
            range...); the message shows the input's shape.
    """
    tokens = x.tokens if isinstance(x, PromptBatch) else x
    shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(x).__name__
    return guarded(f"running the model on inputs of shape {shape}", _forward, model, x)


def _forward(model: object, x: Any) -> Any:
    from sc_interp import _trace_path

    plan = _trace_path.active(model)
    if plan is not None:  # remote=: the server places the inputs; interventions in the trace
        return plan.run(x)
    if isinstance(x, torch.Tensor | PromptBatch):
        x = x.to(model_device(model))
    args, kwargs = prompt_arguments(resolve(model), x) if isinstance(x, PromptBatch) else ((x,), {})
    if not is_nnsight(model):
        return model(*args, **kwargs)  # type: ignore[operator]
    with model.trace(*args, **kwargs):  # type: ignore[attr-defined]
        out = model.output.save()  # type: ignore[attr-defined]
    return out


def accepts_mask(root: nn.Module) -> bool:
    """Whether ``root`` can be given an attention mask (TransformerLens or an HF-style forward)."""
    return is_transformer_lens(root) or "attention_mask" in _parameters(root)


def prompt_arguments(root: nn.Module, x: PromptBatch) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments that run ``root`` on padded prompts.

    TransformerLens models (TL 4 bridge, TL 2/3 HookedTransformer) take ``attention_mask``
    and derive position ids from it themselves. Hugging Face-style forwards get
    ``attention_mask`` and, when they take them, ``position_ids`` counted from each
    prompt's first real token (HF would otherwise shift left-padded prompts' absolute
    positions). Other modules get the tokens alone, which is only right for right-padded
    prompts of a causal model (``from_prompts`` pads those on the right).
    """
    if is_transformer_lens(root):
        return (x.tokens,), {"attention_mask": x.attention_mask}
    params = _parameters(root)
    kwargs: dict[str, Any] = {}
    if "attention_mask" in params:
        kwargs["attention_mask"] = x.attention_mask
        if "position_ids" in params:
            kwargs["position_ids"] = x.position_ids()
    return (x.tokens,), kwargs


def _parameters(root: nn.Module) -> set[str]:
    try:
        return set(inspect.signature(root.forward).parameters)
    except (TypeError, ValueError):
        return set()
