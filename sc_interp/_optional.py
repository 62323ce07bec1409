"""Lazy imports of optional dependencies with a message that names the extra to install.

Every import of an optional package in sc-interp goes through :func:`require`, so a user
with the core install (``pip install sc-interp``) gets a :class:`MissingDependencyError`
that says which extra to install instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from sc_interp.errors import MissingDependencyError

# top-level package -> the pip extra that installs it (submodules use their top level)
EXTRA_OF = {
    "transformer_lens": "tl",
    "nnsight": "nnsight",
    "matplotlib": "plot",
    "pandas": "plot",
    "transformers": "hf",
    "neurosurgeon": "bench",
}


def extra_of(module: str) -> str:
    """The pip extra that installs ``module`` (``"all"`` when no single extra does).

    Example:
        >>> extra_of("matplotlib.pyplot"), extra_of("transformer_lens.config")
        ('plot', 'tl')
    """
    return EXTRA_OF.get(module.split(".")[0], "all")


def require(module: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip extra.

    Args:
        module: the module to import (``"pandas"``, ``"matplotlib.pyplot"``...).
        feature: what needs it, for the message (``"Subnetwork.history"``).

    Example:
        >>> require("math").sqrt(4.0)
        2.0
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = extra_of(module)
        needer = feature or "this feature"
        raise MissingDependencyError(
            f"{needer} needs {module!r}, which cannot be imported ({exc}); "
            f"install it with: pip install 'sc-interp[{extra}]'"
        ) from exc
