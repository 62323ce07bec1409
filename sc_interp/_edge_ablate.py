"""Mean and resample ablation of edges: what a removed edge carries instead of zero.

A removed edge ``src->dst`` feeds ``dst`` a replacement of ``src``'s output instead of the
output itself (see :mod:`sc_interp._edge_runtime`):

- ``mean``: the source's output averaged over ``data`` (batch and positions; prompts:
  real tokens only), the same vector at every position;
- ``resample``: the source's output on another input from ``data`` (the corrupted-input
  ablation of ACDC and EAP: a path patch from that input). Donors are drawn afresh for
  every batch, seeded, never the example itself (:class:`sc_interp.ablate.Donors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from sc_interp._edge_runtime import EdgeRuntime, SourceReplacement
from sc_interp._prompt_batch import PromptBatch
from sc_interp._run import forward
from sc_interp.errors import ConfigError

if TYPE_CHECKING:
    from sc_interp.ablate import Donors
    from sc_interp.masks import MaskSet


class MeanReplacement(SourceReplacement):
    """Every source replaced by its mean output (``[sources, d_model]``)."""

    def __init__(self, mean: Tensor):
        self.mean = mean

    def part(self, start: int, end: int, like: Tensor) -> Tensor:
        return self.mean[start:end, None, None, :].to(like.device, like.dtype)


class ResampleReplacement(SourceReplacement):
    """Every source replaced by its output on the donor inputs of the current batch."""

    def __init__(self, recorded: Tensor, donors: Donors):
        self.recorded = recorded  # [inputs * per_input, pos, sources, d_model]
        self.donors = donors
        self.per_input = max(1, len(recorded) // donors.n)
        self.current: Tensor | None = None

    def new_forward(self, batch: int, positions: int) -> None:
        if positions != self.recorded.shape[1]:
            raise ConfigError(
                f"resample: the recorded inputs have {self.recorded.shape[1]} positions but this "
                f"input has {positions}; use inputs of the same length (pad them alike)"
            )
        rows = self.donors.rows(batch, self.per_input).to(self.recorded.device)
        self.current = self.recorded[rows].movedim(2, 0)  # [sources, batch, pos, d_model]

    def part(self, start: int, end: int, like: Tensor) -> Tensor:
        assert self.current is not None
        return self.current[start:end].to(like.device, like.dtype)


def record_sources(model: object, masks: MaskSet, inputs: Tensor | PromptBatch) -> list[Tensor]:
    """Unmasked source outputs ``[batch, pos, sources, d_model]`` per edge runtime."""
    runtimes: list[EdgeRuntime] = list(masks._edge_runtimes.values())
    for runtime in runtimes:
        runtime.capture = []
    try:
        with masks.disabled(), torch.no_grad():
            for start in range(0, len(inputs), 256):
                forward(model, inputs[start : start + 256])
        return [torch.cat(runtime.capture or []) for runtime in runtimes]
    finally:
        for runtime in runtimes:
            runtime.capture = None


def set_replacements(
    model: object, masks: MaskSet, method: str, inputs: Tensor | PromptBatch, donors: Donors | None
) -> None:
    """Give every edge runtime of ``masks`` its ``mean`` or ``resample`` replacement."""
    recorded = record_sources(model, masks, inputs)
    for runtime, sources in zip(masks._edge_runtimes.values(), recorded, strict=True):
        replacement: Any
        if method == "mean":
            real = inputs.attention_mask if isinstance(inputs, PromptBatch) else None
            replacement = MeanReplacement(_mean(sources, real))
        else:
            assert donors is not None
            replacement = ResampleReplacement(sources, donors)
        runtime.replacement = replacement


def _mean(sources: Tensor, real: Tensor | None) -> Tensor:
    """Mean over batch and positions of ``[batch, pos, sources, d]`` (real tokens only)."""
    if real is not None and sources.shape[:2] == real.shape:
        weight = real.to(sources.device, sources.dtype)[:, :, None, None]
        return (sources * weight).sum(dim=(0, 1)) / weight.sum().clamp(min=1.0)
    return sources.mean(dim=(0, 1))
