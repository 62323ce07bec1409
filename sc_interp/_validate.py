"""Argument checks for the public boundary: one place, one style of message.

Every check names the argument, shows the value it got and says what is allowed, and raises
:class:`~sc_interp.errors.ConfigError` (or the error class passed in). Numpy scalars are
accepted wherever Python numbers are, and come back as Python numbers; ``bool`` is not a
number here (``epochs=True`` is a mistake, not 1).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sc_interp.errors import ConfigError, ScInterpError


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def integer(
    name: str,
    value: object,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    error: type[ScInterpError] = ConfigError,
) -> int:
    """``value`` as an ``int`` within ``[minimum, maximum]``.

    Example:
        >>> import numpy as np
        >>> integer("epochs", np.int64(3), minimum=1)
        3
        >>> integer("epochs", 1.5, minimum=1)
        Traceback (most recent call last):
        ...
        sc_interp.errors.ConfigError: epochs=1.5: must be an integer >= 1
    """
    bounds = _bounds(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise error(f"{name}={_show(value)}: must be an integer{bounds}")
    out = int(value)
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        raise error(f"{name}={out}: must be an integer{bounds}")
    return out


def number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    error: type[ScInterpError] = ConfigError,
) -> float:
    """``value`` as a finite ``float`` within the bounds (``above``/``below`` are strict).

    Example:
        >>> number("lr", 0.01, above=0)
        0.01
        >>> number("lr", float("nan"), above=0)
        Traceback (most recent call last):
        ...
        sc_interp.errors.ConfigError: lr=nan: must be a finite number > 0
    """
    parts = []
    if above is not None:
        parts.append(f"> {above:g}")
    if minimum is not None:
        parts.append(f">= {minimum:g}")
    if below is not None:
        parts.append(f"< {below:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    allowed = "must be a finite number" + (" " + " and ".join(parts) if parts else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{name}={_show(value)}: {allowed}")
    out = float(value)
    if (
        not math.isfinite(out)
        or (above is not None and not out > above)
        or (minimum is not None and not out >= minimum)
        or (below is not None and not out < below)
        or (maximum is not None and not out <= maximum)
    ):
        raise error(f"{name}={_show(value)}: {allowed}")
    return out


def boolean(name: str, value: object) -> bool:
    """``value`` as a ``bool`` (Python or numpy booleans only)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise ConfigError(f"{name}={_show(value)}: must be True or False")


def choice(name: str, value: object, allowed: Iterable[str]) -> str:
    """``value`` if it is one of the ``allowed`` strings.

    Example:
        >>> choice("method", "mean", ["zero", "mean"])
        'mean'
    """
    options = list(allowed)
    if not isinstance(value, str) or value not in options:
        raise ConfigError(f"{name}={_show(value)}: allowed: {', '.join(map(repr, options))}")
    return value


def path(name: str, value: object, *, error: type[ScInterpError] = ConfigError) -> Path:
    """``value`` as a ``Path`` (a ``str`` or ``os.PathLike``)."""
    if isinstance(value, bytes) or not isinstance(value, str | os.PathLike):
        raise error(f"{name}={_show(value)}: must be a file path (str or pathlib.Path)")
    out = Path(value)
    if str(value) == "":
        raise error(f"{name}: the path is empty")
    return out


def writable_file(name: str, value: object, *, error: type[ScInterpError] = ConfigError) -> Path:
    """A path a file can be written to: not a directory, parent creatable."""
    out = path(name, value, error=error)
    if out.is_dir():
        raise error(f"{name}={str(out)!r} is a directory; give a file name inside it")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise error(f"{name}={str(out)!r}: cannot create files under {str(parent)!r}")
    return out


def optional_callable(name: str, value: object) -> Any:
    """``value`` if it is ``None`` or callable."""
    if value is not None and not callable(value):
        raise ConfigError(f"{name}={_show(value)}: must be a function or None")
    return value


def instance(name: str, value: object, kinds: type | tuple[type, ...], what: str) -> Any:
    """``value`` if it is an instance of ``kinds`` (``what`` says so in words)."""
    if not isinstance(value, kinds):
        raise ConfigError(f"{name}: expected {what}, got {type(value).__name__} ({_show(value)})")
    return value


def _bounds(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
