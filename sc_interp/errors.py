"""One exception hierarchy for everything sc-interp raises.

Every error a user can trigger with bad input is a subclass of :class:`ScInterpError`,
so ``except sc.ScInterpError`` catches all of them, and each message says what was
wrong and what is allowed.
"""

from __future__ import annotations


class ScInterpError(Exception):
    """Base class of every error raised by sc-interp.

    Example:
        >>> import sc_interp as sc
        >>> try:
        ...     sc.MaskConfig(unit="edges")
        ... except sc.ScInterpError as err:
        ...     print(type(err).__name__)
        ConfigError
    """


class ConfigError(ScInterpError, ValueError):
    """A configuration value is not allowed (unknown unit, relaxation, method...).

    Example:
        >>> import sc_interp as sc
        >>> sc.MaskConfig(unit="edges")
        Traceback (most recent call last):
        ...
        sc_interp.errors.ConfigError: unknown unit 'edges'; allowed units: weight, neuron, head, edge
    """


class TargetError(ScInterpError, ValueError):
    """A target pattern is unknown or matches no mask site of the model.

    Example:
        >>> import torch, sc_interp as sc
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
        >>> sc.attach_masks(net, sc.MaskConfig(unit="neuron", targets=["fc*"]))
        Traceback (most recent call last):
        ...
        sc_interp.errors.TargetError: target pattern(s) ['fc*'] match no site; available sites: 0, 2
    """


class UnsupportedModelError(ScInterpError, TypeError):
    """The model is of a family sc-interp has no adapter for.

    Example:
        >>> import sc_interp as sc
        >>> sc.list_sites("not a model")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        sc_interp.errors.UnsupportedModelError: cannot attach masks to a builtins.str; ...
    """


class AttachError(ScInterpError, RuntimeError):
    """Masks cannot be attached (a site is already masked, the MaskSet was detached...).

    Example:
        >>> import torch, sc_interp as sc
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
        >>> with sc.attach_masks(net, sc.MaskConfig(unit="neuron")):
        ...     sc.attach_masks(net, sc.MaskConfig(unit="neuron"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        sc_interp.errors.AttachError: site(s) ... already carry sc-interp masks; ...
    """


class MaskFileError(ScInterpError, ValueError):
    """A mask file is malformed, unsafe (pickle), made for another model, or cannot be written.

    Example:
        >>> import torch, sc_interp as sc
        >>> sc.load_masks(torch.nn.Linear(2, 2), "no-such-file.safetensors")
        Traceback (most recent call last):
        ...
        sc_interp.errors.MaskFileError: no such mask file: no-such-file.safetensors
    """


class DataError(ScInterpError, ValueError):
    """Task data is empty, mis-shaped or has labels out of range.

    Example:
        >>> import torch, sc_interp as sc
        >>> empty = (torch.empty(0, 2), torch.empty(0, dtype=torch.long))
        >>> sc.Subtask("t", train=empty, test=empty, chance=0.5)
        Traceback (most recent call last):
        ...
        sc_interp.errors.DataError: t.train: the data is empty
    """


class TrainingError(ScInterpError, RuntimeError):
    """Mask training failed (for example the loss became NaN).

    The message gives the epoch, the step, the task loss and the learning rate; a lower
    ``TrainConfig(lr=...)`` usually helps.

    Example:
        >>> import sc_interp as sc
        >>> issubclass(sc.TrainingError, RuntimeError)
        True
    """


class CircuitError(ScInterpError, ValueError):
    """A circuit file is malformed or names nodes the model does not have.

    Example:
        >>> import sc_interp as sc
        >>> sc.circuits.load(["a0.h9"], n_layers=1, n_heads=4)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        sc_interp.errors.CircuitError: ...
    """


class MissingDependencyError(ScInterpError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra.

    Example:
        >>> import sc_interp as sc
        >>> issubclass(sc.MissingDependencyError, ImportError)  # install: pip install 'sc-interp[plot]'
        True
    """
