"""Statistics for compositionality: floored deltas, confidence intervals, mask IoU.

Intervals must have honest coverage (DESIGN.md §2), which decides their construction:

- **One base model.** Every mask seed is scored on the same test examples, so the examples
  are resampled once per bootstrap replicate and the same indices serve every seed (and
  every arm scored on that test set). Seeds are not resampled as such: with 2-5 seeds a
  resample of them is little more than their range. Instead the seed-to-seed variance left
  after removing what example noise explains (a method-of-moments estimate) is added as a
  ``t`` draw with ``seeds - 1`` degrees of freedom. Identical seeds therefore give the same
  interval as one seed, and real seed variation widens it as much as a ``t`` interval would.
- **Several base models.** The base models are the independent units, so the interval is a
  ``t`` interval over the per-model means (``models - 1`` degrees of freedom, via
  ``scipy.stats``). A bootstrap over 2-5 clusters covers far less than its nominal level.

``tests/test_stats_calibration.py`` checks coverage by simulation (studies with a known
true delta).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as _scipy_stats

from sc_interp.errors import DataError

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval and a one-sided p-value.

    Attributes:
        estimate: the point estimate (mean over seeds, then over base models).
        lo, hi: bounds of the confidence interval.
        p: one-sided p-value against 0 in the direction the hypothesis predicts.
        method: how the interval was made, in words (the report quotes it).
    """

    estimate: float
    lo: float
    hi: float
    p: float
    method: str

    def above(self, value: float = 0.0) -> bool:
        """Whether the whole interval lies above ``value``."""
        return self.lo > value

    def below(self, value: float = 0.0) -> bool:
        """Whether the whole interval lies below ``value``."""
        return self.hi < value

    def __str__(self) -> str:
        return f"{self.estimate:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}]"


@dataclass(frozen=True)
class Arm:
    """Per-example scores of one arm of one base model, for one delta.

    Attributes:
        target: ``[seeds, n_target]`` scores (0/1 correctness) on the target's test set.
        other: ``[seeds, n_other]`` scores on the other subtask's test set.
        chance_target, chance_other: chance levels (each subtask floors at its own).
        weight: +1, or -1 for an arm that is subtracted (a control in a contrast).
    """

    target: np.ndarray
    other: np.ndarray
    chance_target: float
    chance_other: float
    weight: float = 1.0

    def deltas(self) -> np.ndarray:
        """Observed floored delta per seed."""
        return floored(self.target.mean(1), self.chance_target) - floored(
            self.other.mean(1), self.chance_other
        )


def floored(accuracy: np.ndarray | float, chance: float) -> np.ndarray:
    """Accuracies floored at chance (below chance carries no information; the paper's rule)."""
    return np.maximum(accuracy, chance)


def floored_accuracy(correct: np.ndarray, chance: float) -> float:
    """Accuracy of a 0/1 correctness vector, floored at chance."""
    return max(float(np.mean(correct)), chance)


def delta(
    acc_target: float, acc_other: float, chance: float, chance_other: float | None = None
) -> float:
    """Difference of two accuracies after flooring each at its subtask's chance level."""
    other_chance = chance if chance_other is None else chance_other
    return max(acc_target, chance) - max(acc_other, other_chance)


def _resampled_means(scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``[boot, seeds]`` means of ``scores [seeds, n]`` under bootstrap ``counts [boot, n]``."""
    return counts @ scores.T / scores.shape[1]


def single_model_draws(
    arms: Sequence[Arm], n_boot: int = 2000, seed: int = 0
) -> tuple[float, np.ndarray, str]:
    """Bootstrap draws of ``sum_k weight_k * mean_seeds(delta)`` over arms of one base model.

    All arms must share the target and the other test sets (the same examples, in the same
    order); each replicate resamples those examples once, for every seed and arm alike, then
    adds each arm's seed variance as a ``t`` draw (see the module docstring).

    Returns:
        The point estimate, ``n_boot`` draws, and the method in words.

    Example:
        >>> arm = Arm(np.ones((3, 50)), np.zeros((3, 50)), 0.25, 0.25)
        >>> estimate, draws, _ = single_model_draws([arm], n_boot=20)
        >>> estimate, bool(np.allclose(draws, 0.75))
        (0.75, True)
    """
    first = arms[0]
    n_t, n_o = first.target.shape[1], first.other.shape[1]
    for arm in arms:
        if arm.target.shape[1] != n_t or arm.other.shape[1] != n_o:
            raise DataError("every arm of one base model must be scored on the same test sets")
    rng = np.random.default_rng(seed)
    uniform_t, uniform_o = np.full(n_t, 1.0 / n_t), np.full(n_o, 1.0 / n_o)
    draws = np.zeros(n_boot)
    # the example part, in chunks so that [chunk, n] count matrices stay small
    chunk = max(1, min(n_boot, 4_000_000 // max(n_t, n_o)))
    per_arm: list[list[np.ndarray]] = [[] for _ in arms]
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        counts_t = rng.multinomial(n_t, uniform_t, size=size).astype(float)
        counts_o = rng.multinomial(n_o, uniform_o, size=size).astype(float)
        for k, arm in enumerate(arms):
            d = floored(_resampled_means(arm.target, counts_t), arm.chance_target) - floored(
                _resampled_means(arm.other, counts_o), arm.chance_other
            )
            per_arm[k].append(d)
    described = []
    for arm, parts in zip(arms, per_arm, strict=True):
        d = np.concatenate(parts)  # [boot, seeds]
        draws += arm.weight * d.mean(1)
        n_seeds = d.shape[1]
        if n_seeds > 1:
            # between-seed variance on fixed examples = seed variance + example-by-seed noise;
            # the bootstrap spread of each seed's deviation from the seed mean estimates the latter
            noise = float((d - d.mean(1, keepdims=True)).var(0).mean()) * n_seeds / (n_seeds - 1)
            seed_var = max(0.0, float(np.var(arm.deltas(), ddof=1)) - noise)
            if seed_var > 0:
                draws += (
                    arm.weight * np.sqrt(seed_var / n_seeds) * rng.standard_t(n_seeds - 1, n_boot)
                )
            described.append(n_seeds)
    estimate = float(sum(arm.weight * arm.deltas().mean() for arm in arms))
    method = "bootstrap over test examples (shared by all seeds)"
    if described:
        method += f" + seed variance as a t draw ({min(described) - 1} df)"
    return estimate, draws, method


def from_draws(
    estimate: float, draws: np.ndarray, method: str, greater: bool, level: float = LEVEL
) -> Interval:
    """Percentile interval and one-sided p-value from bootstrap draws."""
    lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2])
    p = float(np.mean(draws <= 0) if greater else np.mean(draws >= 0))
    return Interval(estimate, float(lo), float(hi), p, method)


def t_interval(
    values: Sequence[float] | np.ndarray, greater: bool, level: float = LEVEL
) -> Interval:
    """``t`` interval over independent per-model values (``len(values) - 1`` df).

    Example:
        >>> ci = t_interval([0.2, 0.3, 0.4], greater=True)
        >>> round(ci.estimate, 3), round(ci.lo, 3), round(ci.hi, 3)
        (0.3, 0.052, 0.548)
    """
    arr = np.asarray(values, dtype=float)
    n = len(arr)
    if n < 2:
        raise DataError("a t interval needs at least two base models")
    mean = float(arr.mean())
    sem = float(arr.std(ddof=1)) / float(np.sqrt(n))
    method = f"t interval over {n} per-model means ({n - 1} df)"
    if sem == 0:
        p = 0.0 if (mean > 0 if greater else mean < 0) else 1.0
        return Interval(mean, mean, mean, p, method)
    dist = _scipy_stats.t(n - 1)
    half = float(dist.ppf(1 - (1 - level) / 2)) * sem
    p = float(dist.sf(mean / sem) if greater else dist.cdf(mean / sem))  # one-sided t test
    return Interval(mean, mean - half, mean + half, p, method)


def interval(
    per_model: Mapping[int, Sequence[Arm]],
    greater: bool,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = LEVEL,
) -> Interval:
    """The interval of a (possibly contrasted) delta: one model, or several (see module doc).

    Args:
        per_model: for every base model, its arms (one for a plain delta; trained and
            control, weights +1/-1, for a contrast).
        greater: the direction the hypothesis predicts (for the p-value).
    """
    if len(per_model) == 1:
        (arms,) = per_model.values()
        estimate, draws, method = single_model_draws(arms, n_boot, seed)
        return from_draws(estimate, draws, method, greater, level)
    values = [sum(a.weight * a.deltas().mean() for a in arms) for arms in per_model.values()]
    return t_interval(values, greater, level)


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
