"""Statistics for compositionality: floored deltas, bootstrap CIs, verdict rule, mask IoU.

The verdict rule lives here and only here (DESIGN.md §2):

- *compositional*: the 95% CI of ``sub_delta`` lies above 0, the CI of ``abl_delta`` lies
  below 0, and the learned subnetwork beats the size-matched random-subnetwork control;
- *not compositional*: both CIs lie within ``±margin`` (default 0.1), or either lies
  entirely on the wrong side of 0;
- *inconclusive*: anything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch

Verdict = Literal["compositional", "not compositional", "inconclusive"]


def floored_accuracy(correct: np.ndarray, chance: float) -> float:
    """Accuracy of a 0/1 correctness vector, floored at chance."""
    return max(float(np.mean(correct)), chance)


def delta(acc_target: float, acc_other: float, chance: float) -> float:
    """Difference of two accuracies after flooring both at chance."""
    return max(acc_target, chance) - max(acc_other, chance)


def bootstrap_ci(samples: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap samples."""
    arr = np.asarray(samples, dtype=float)
    lo, hi = np.quantile(arr, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def cluster_bootstrap(
    values: Mapping[object, Sequence[float]], n_boot: int = 2000, seed: int = 0
) -> np.ndarray:
    """Bootstrap means resampling clusters (base models) with replacement.

    Args:
        values: per cluster, the values of its rows (mask seeds).
        n_boot: number of bootstrap draws.
        seed: seeds the resampling (same seed, same draws).

    Returns:
        ``n_boot`` means of the per-cluster means.

    Example:
        >>> draws = cluster_bootstrap({"m0": [0.2, 0.4], "m1": [0.3]}, n_boot=10)
        >>> draws.shape
        (10,)
    """
    rng = np.random.default_rng(seed)
    means = np.array([np.mean(v) for v in values.values()])
    picks = rng.integers(0, len(means), size=(n_boot, len(means)))
    return means[picks].mean(axis=1)


def example_bootstrap(
    rows: Sequence[tuple[np.ndarray, np.ndarray]], chance: float, n_boot: int = 2000, seed: int = 0
) -> np.ndarray:
    """Bootstrap of a mean floored delta for one base model: resample seeds and test examples.

    Args:
        rows: per mask seed, the 0/1 correctness on the target and on the other subtask.
        chance: chance accuracy (flooring).
    """
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for i in range(n_boot):
        chosen = rng.integers(0, len(rows), size=len(rows))
        deltas = []
        for j in chosen:
            target, other = rows[j]
            t = target[rng.integers(0, len(target), size=len(target))]
            o = other[rng.integers(0, len(other), size=len(other))]
            deltas.append(floored_accuracy(t, chance) - floored_accuracy(o, chance))
        out[i] = np.mean(deltas)
    return out


def verdict(
    sub_ci: tuple[float, float],
    abl_ci: tuple[float, float],
    beats_random: bool,
    margin: float = 0.1,
) -> Verdict:
    """Apply the verdict rule (module docstring) to two CIs and the random control.

    Example:
        >>> verdict((0.3, 0.5), (-0.5, -0.3), True)
        'compositional'
        >>> verdict((-0.05, 0.05), (-0.02, 0.04), True)
        'not compositional'
    """
    if sub_ci[0] > 0 and abl_ci[1] < 0 and beats_random:
        return "compositional"
    within = all(-margin <= x <= margin for x in (*sub_ci, *abl_ci))
    wrong_sign = sub_ci[1] < 0 or abl_ci[0] > 0
    if within or wrong_sign:
        return "not compositional"
    return "inconclusive"


def iou(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Intersection over union of two masks over the union of all their units.

    Sites present in only one mask count as all-off in the other. The paper's released
    code averaged per-layer ratios; this is the ratio of totals.

    Example:
        >>> iou({"l": torch.tensor([1, 1, 0, 0]).bool()}, {"l": torch.tensor([0, 1, 1, 0]).bool()})
        0.3333333333333333
    """
    inter = union = 0
    for name in set(a) | set(b):
        x = a.get(name)
        y = b.get(name)
        x = torch.zeros_like(y, dtype=torch.bool) if x is None else x.bool()  # type: ignore[arg-type]
        y = torch.zeros_like(x) if y is None else y.bool()
        inter += int((x & y).sum())
        union += int((x | y).sum())
    return inter / union if union else float("nan")


def per_site_iou(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """IoU of two masks site by site (NaN where both are empty)."""
    return {name: iou({name: a[name]}, {name: b[name]}) for name in a if name in b}
