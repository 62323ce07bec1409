"""Helpers behind the CLI commands (loading user task and study files, summary tables)."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

from sc_interp.ablate import ablate, isolate
from sc_interp.data import Subtask
from sc_interp.errors import ConfigError
from sc_interp.subnetwork import Subnetwork
from sc_interp.train import evaluate


def load_task_file(path: str) -> tuple[Any, Subtask]:
    """Run a user's Python file and take its ``model`` and ``task`` variables."""
    if not Path(path).is_file():
        raise ConfigError(f"no such task file: {path}")
    namespace = runpy.run_path(path)
    model, task = namespace.get("model"), namespace.get("task")
    if model is None or not isinstance(task, Subtask):
        raise ConfigError(
            f"{path} must define `model` (the network) and `task` (an sc_interp.Subtask); "
            f"found model={type(model).__name__}, task={type(task).__name__}"
        )
    return model, task


STUDY_OPTIONS = ("mask", "train", "seeds", "controls", "method", "n_random", "margin", "n_boot")
"""Optional variables of a study file, passed on to test_compositionality."""


def load_study_file(path: str) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Run a study file and take ``models``, ``a``, ``b`` and the optional settings.

    ``a`` and ``b`` are Subtasks or TaskData; ``models`` one model or a list. Optional:
    ``mask``, ``train``, ``seeds``, ``controls``, ``method``, ``n_random``, ``margin``,
    ``n_boot``.
    """
    if not Path(path).is_file():
        raise ConfigError(f"no such study file: {path}")
    namespace = runpy.run_path(path)
    missing = [k for k in ("models", "a", "b") if namespace.get(k) is None]
    if missing:
        raise ConfigError(
            f"{path} must define `models` (a model or a list of models), `a` and `b` (Subtasks "
            f"or TaskData); missing: {', '.join(missing)}. Optional: {', '.join(STUDY_OPTIONS)}"
        )
    options = {k: namespace[k] for k in STUDY_OPTIONS if namespace.get(k) is not None}
    return namespace["models"], namespace["a"], namespace["b"], options


def summary(model: Any, sub: Subnetwork, task: Subtask) -> str:
    """A small table: per-site kept units, and accuracy of full / subnetwork / ablated model."""
    rows = [f"{'site':40s} {'kept':>12s}"]
    for name, mask in sub.masks.items():
        rows.append(f"{name:40s} {int(mask.sum()):>6d}/{mask.numel():<5d}")
    full = evaluate(model, task).accuracy
    with isolate(model, sub):
        alone = evaluate(model, task).accuracy
    with ablate(model, sub):
        removed = evaluate(model, task).accuracy
    rows.append("")
    rows.append(f"{'model':40s} {'accuracy on ' + task.name:>12s}")
    for label, acc in (
        ("full model", full),
        ("subnetwork alone", alone),
        ("subnetwork ablated", removed),
    ):
        rows.append(f"{label:40s} {acc:12.3f}")
    rows.append(f"density {sub.density():.3f} (chance {task.chance:.2f})")
    return "\n".join(rows)
