"""Relaxations: how real-valued mask logits become a (soft or hard) mask.

Three relaxations share one interface:

- ``continuous``: continuous sparsification (Savarese et al. 2020), the paper's choice.
  Training mask ``sigmoid(beta * s)``; ``beta`` is annealed from 1 to ``beta_max``.
- ``hard_concrete``: the stretched hard-concrete / L0 relaxation (Louizos et al. 2018).
  Training mask is a sample; the penalty is the probability that a unit is non-zero.
- ``straight_through``: a hard 0/1 mask in the forward pass, the gradient of
  ``sigmoid(beta * s)`` in the backward pass.

All three share the evaluation mask ``s > 0``, so a learned set of logits means the same
subnetwork whichever relaxation trained it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from sc_interp._fused import (
    continuous_masked_weight,
    continuous_masked_weight_and_sum,
    straight_through_masked_weight,
)
from sc_interp.errors import ConfigError


class Relaxation(ABC):
    """A way to turn mask logits into a mask.

    Example:
        >>> r = get_relaxation("continuous")
        >>> r.mask(torch.tensor([2.0, -2.0]), training=False, beta=1.0)
        tensor([1., 0.])
    """

    name: ClassVar[str]

    @abstractmethod
    def train_mask(
        self, logits: Float[Tensor, "*s"], beta: float, generator: torch.Generator | None
    ) -> Float[Tensor, "*s"]:
        """The differentiable mask used while training."""

    @abstractmethod
    def density(self, logits: Float[Tensor, "*s"], beta: float) -> Float[Tensor, "*s"]:
        """Per-unit expected "on" value that the L0 penalty sums (differentiable)."""

    def mask(
        self,
        logits: Float[Tensor, "*s"],
        *,
        training: bool,
        beta: float,
        generator: torch.Generator | None = None,
    ) -> Float[Tensor, "*s"]:
        """Soft mask in training, hard 0/1 mask (``logits > 0``) otherwise."""
        if training:
            return self.train_mask(logits, beta, generator)
        return hard_mask(logits).to(logits.dtype)

    def masked_weight(
        self,
        weight: Float[Tensor, "*s"],
        logits: Float[Tensor, "*s"],
        beta: float,
        generator: torch.Generator | None = None,
    ) -> tuple[Float[Tensor, "*s"], Float[Tensor, "*s"]]:
        """``(weight * training mask, training mask)`` for a weight mask in training.

        Relaxations with a fused version (continuous, straight-through) compute both in
        fewer passes over the weight (see ``sc_interp._fused``); the result and its
        gradients equal those of ``weight * self.train_mask(logits, beta, generator)``.
        """
        mask = self.train_mask(logits, beta, generator)
        return weight * mask.to(weight.dtype), mask

    def masked_weight_and_density(
        self,
        weight: Float[Tensor, "*s"],
        logits: Float[Tensor, "*s"],
        beta: float,
        generator: torch.Generator | None = None,
    ) -> tuple[Float[Tensor, "*s"], Float[Tensor, "*s"], Float[Tensor, ""] | None]:
        """:meth:`masked_weight` plus ``density(logits, beta).sum()`` when it comes cheaply.

        Continuous sparsification's training mask is its density, so its fused version
        sums it in the same node; the others return ``None`` (the L0 penalty then sums
        :meth:`density` itself).
        """
        out, mask = self.masked_weight(weight, logits, beta, generator)
        return out, mask, None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def hard_mask(logits: Tensor) -> Tensor:
    """The evaluation mask shared by every relaxation: ``logits > 0``."""
    return logits > 0


class ContinuousSparsification(Relaxation):
    """``sigmoid(beta * s)`` while training; ``s > 0`` at evaluation."""

    name = "continuous"

    def train_mask(self, logits: Tensor, beta: float, generator: torch.Generator | None) -> Tensor:
        return torch.sigmoid(beta * logits)

    def density(self, logits: Tensor, beta: float) -> Tensor:
        return torch.sigmoid(beta * logits)

    def masked_weight(
        self, weight: Tensor, logits: Tensor, beta: float, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        return continuous_masked_weight(weight, logits, beta)

    def masked_weight_and_density(
        self, weight: Tensor, logits: Tensor, beta: float, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        return continuous_masked_weight_and_sum(weight, logits, beta)


class HardConcrete(Relaxation):
    """Stretched hard-concrete gates (Louizos et al. 2018) with ``log_alpha = s``.

    Args:
        temperature: the concrete distribution's temperature (2/3 in the paper).
        limits: the stretch interval ``(gamma, zeta)``.
    """

    name = "hard_concrete"

    def __init__(self, temperature: float = 2.0 / 3.0, limits: tuple[float, float] = (-0.1, 1.1)):
        self.temperature = temperature
        self.gamma, self.zeta = limits

    def train_mask(self, logits: Tensor, beta: float, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
        u = u.clamp(1e-6, 1.0 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + logits) / self.temperature)
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    def density(self, logits: Tensor, beta: float) -> Tensor:
        shift = self.temperature * math.log(-self.gamma / self.zeta)
        return torch.sigmoid(logits - shift)

    def __repr__(self) -> str:
        return (
            f"HardConcrete(temperature={self.temperature:.3g}, limits=({self.gamma}, {self.zeta}))"
        )


class StraightThrough(Relaxation):
    """Hard ``s > 0`` forward, ``sigmoid(beta * s)`` gradient backward.

    The forward mask is already 0/1, so a unit sends little gradient while it is on: start
    from logits well above 0 (``init=1.0``) and use a smaller step (``lr=1e-2``); from the
    paper's ``init=0.05`` with ``lr=0.05`` Adam switches every unit off in the first steps.
    """

    name = "straight_through"

    def train_mask(self, logits: Tensor, beta: float, generator: torch.Generator | None) -> Tensor:
        soft = torch.sigmoid(beta * logits)
        return soft + (hard_mask(logits).to(soft.dtype) - soft).detach()

    def density(self, logits: Tensor, beta: float) -> Tensor:
        return torch.sigmoid(beta * logits)

    def masked_weight(
        self, weight: Tensor, logits: Tensor, beta: float, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        return straight_through_masked_weight(weight, logits, beta)


RELAXATIONS: dict[str, type[Relaxation]] = {
    cls.name: cls for cls in (ContinuousSparsification, HardConcrete, StraightThrough)
}


def get_relaxation(name: str) -> Relaxation:
    """Return the relaxation called ``name``.

    Raises:
        ConfigError: ``name`` is not one of ``continuous``, ``hard_concrete``, ``straight_through``.
    """
    try:
        return RELAXATIONS[name]()
    except KeyError:
        raise ConfigError(
            f"unknown relaxation {name!r}; allowed: {', '.join(sorted(RELAXATIONS))}"
        ) from None
