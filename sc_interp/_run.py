"""Running a user's model on a batch, whatever its family (the one place that knows how)."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from sc_interp._prompt_batch import PromptBatch
from sc_interp.adapters import resolve
from sc_interp.adapters.nnsight import is_nnsight
from sc_interp.adapters.transformer_lens import is_transformer_lens


def model_device(model: object) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless model)."""
    for p in resolve(model).parameters():
        return p.device
    return torch.device("cpu")


def forward(model: object, x: Any) -> Any:
    """``model(x)`` with ``x`` moved to the model's device; nnsight models run in a trace.

    A :class:`~sc_interp.prompts.PromptBatch` is passed as tokens plus what the
    model family needs to ignore padding (see :func:`prompt_arguments`).
    """
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
