"""Registry of the synthetic paper tasks and :func:`make_task`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from sc_interp.errors import ConfigError
from sc_interp.tasks._base import CompoundTask
from sc_interp.tasks.language import LANGUAGE_TASKS, make_language_task
from sc_interp.tasks.vision import VISION_TASKS, make_vision_task

TASKS: dict[str, Callable[..., CompoundTask]] = {
    **{name: partial(make_vision_task, name) for name in VISION_TASKS},
    **{name: partial(make_language_task, name) for name in LANGUAGE_TASKS},
}
"""The paper's tasks by name: ``inside-contact``, ``inside-number``, ``number-contact``
(vision) and ``sva``, ``anaphora`` (language), each a builder of a
:class:`~sc_interp.tasks.CompoundTask` (:func:`make_task` calls it)."""
"""Task name -> generator ``(*, n_train, n_test, seed, **kw) -> CompoundTask``."""


def make_task(
    name: str, *, n_train: int = 2000, n_test: int = 500, seed: int = 0, **kw: Any
) -> CompoundTask:
    """Generate a synthetic compound task by name.

    Args:
        name: One of ``"inside-contact"``, ``"inside-number"``, ``"number-contact"``
            (vision) or ``"sva"``, ``"anaphora"`` (language).
        n_train: Training examples per sub-dataset.
        n_test: Test examples per sub-dataset.
        seed: Generator seed; the same seed gives identical tensors.
        **kw: Task options: ``n_val`` (validation examples, default 0), ``rule``,
            ``vary_other``; vision ``size``, ``gap``; language ``max_len``, ``number``
            (``"singular"``/``"plural"``), ``paper_sizes`` (see
            :func:`~sc_interp.tasks.make_language_task`).

    Raises:
        ConfigError: ``name`` is not a known task, an option is unknown or out of range.

    Example:
        >>> task = make_task("number-contact", n_train=8, n_test=4, seed=1)
        >>> task.kind, task.a.name, task.b.name
        ('vision', 'number', 'contact')
    """
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; available tasks: {sorted(TASKS)}")
    if n_train < 1 or n_test < 1:
        raise ConfigError(f"n_train and n_test must be positive, got {n_train}, {n_test}")
    factory = TASKS[name]
    allowed = set(inspect.signature(factory).parameters) - {"n_train", "n_test", "seed"}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise ConfigError(f"task {name!r} has no option(s) {unknown}; options: {sorted(allowed)}")
    return factory(n_train=n_train, n_test=n_test, seed=seed, **kw)
