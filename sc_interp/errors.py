"""One exception hierarchy for everything sc-interp raises.

Every error a user can trigger with bad input is a subclass of :class:`ScInterpError`,
so ``except sc.ScInterpError`` catches all of them, and each message says what was
wrong and what is allowed.
"""

from __future__ import annotations


class ScInterpError(Exception):
    """Base class of every error raised by sc-interp."""


class ConfigError(ScInterpError, ValueError):
    """A configuration value is not allowed (unknown unit, relaxation, method...)."""


class TargetError(ScInterpError, ValueError):
    """A target pattern is unknown or matches no mask site of the model."""


class UnsupportedModelError(ScInterpError, TypeError):
    """The model is of a family sc-interp has no adapter for."""


class AttachError(ScInterpError, RuntimeError):
    """Masks cannot be attached (a site is already masked, the MaskSet was detached...)."""


class MaskFileError(ScInterpError, ValueError):
    """A mask file is malformed, unsafe (pickle), made for another model, or cannot be written."""


class DataError(ScInterpError, ValueError):
    """Task data is empty, mis-shaped or has labels out of range."""


class TrainingError(ScInterpError, RuntimeError):
    """Mask training failed (for example the loss became NaN)."""


class CircuitError(ScInterpError, ValueError):
    """A circuit file is malformed or names nodes the model does not have."""


class MissingDependencyError(ScInterpError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra."""
