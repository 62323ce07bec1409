"""Lazy imports of optional dependencies with a message that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from sc_interp.errors import MissingDependencyError

_EXTRA_OF = {
    "transformer_lens": "tl",
    "nnsight": "nnsight",
    "matplotlib": "plot",
    "matplotlib.pyplot": "plot",
    "pandas": "plot",
    "transformers": "hf",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip extra.

    Example:
        >>> require("math").sqrt(4.0)
        2.0
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRA_OF.get(module, "all")
        raise MissingDependencyError(
            f"{module!r} is needed for this feature but is not installed; "
            f"install it with: pip install 'sc-interp[{extra}]'"
        ) from exc
