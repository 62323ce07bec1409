"""Calibration of the compositionality intervals: coverage by simulation, known truth.

Each simulated study draws per-example 0/1 correctness for mask seeds (and base models)
from a model whose true delta we set: examples have their own difficulty, seeds a small
accuracy offset, and seeds share most of their errors ("correlated seeds"). The 95% CI
must cover the true delta in 92-98% of the studies.
"""

from __future__ import annotations

import numpy as np
import pytest

from sc_interp import stats

N_STUDIES = 500
N_EXAMPLES = 200
CHANCE = 0.25


def _scores(rng: np.random.Generator, p: float, seeds: int, rho: float, tau: float) -> np.ndarray:
    """``[seeds, N_EXAMPLES]`` correctness with population accuracy ``p``.

    Example difficulty spreads uniformly over p +- 0.1; each seed shifts the accuracy by
    N(0, tau); a seed reuses the examples' shared uniform draw with probability ``rho``
    (its errors then coincide with the other seeds').
    """
    difficulty = rng.uniform(p - 0.1, p + 0.1, N_EXAMPLES)
    shared = rng.uniform(size=N_EXAMPLES)
    out = np.empty((seeds, N_EXAMPLES))
    for s in range(seeds):
        own = rng.uniform(size=N_EXAMPLES)
        u = np.where(rng.uniform(size=N_EXAMPLES) < rho, shared, own)
        out[s] = u < np.clip(difficulty + rng.normal(0.0, tau), 0.0, 1.0)
    return out


def _coverage(
    truth: float, models: int, seeds: int, rho: float, tau: float, model_sd: float, seed: int
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    p_other = 0.6
    covered, widths = 0, []
    for study in range(N_STUDIES):
        per_model = {}
        for m in range(models):
            p_target = p_other + truth + rng.normal(0.0, model_sd)
            arm = stats.Arm(
                _scores(rng, p_target, seeds, rho, tau),
                _scores(rng, p_other, seeds, rho, tau),
                CHANCE,
                CHANCE,
            )
            per_model[m] = [arm]
        ci = stats.interval(per_model, greater=True, n_boot=600, seed=study)
        covered += ci.lo <= truth <= ci.hi
        widths.append(ci.hi - ci.lo)
    return covered / N_STUDIES, float(np.mean(widths))


@pytest.mark.slow
@pytest.mark.parametrize("truth", [0.0, 0.2])
@pytest.mark.parametrize(
    ("label", "models", "seeds", "rho", "tau", "model_sd"),
    [
        ("one model x 3 correlated seeds", 1, 3, 0.9, 0.02, 0.0),
        ("one model x 3 identical seeds", 1, 3, 1.0, 0.0, 0.0),
        ("3 models x 3 seeds", 3, 3, 0.9, 0.02, 0.04),
        ("5 models x 2 seeds", 5, 2, 0.9, 0.02, 0.04),
    ],
)
def test_ci_covers_the_true_delta(
    truth: float, label: str, models: int, seeds: int, rho: float, tau: float, model_sd: float
) -> None:
    coverage, width = _coverage(truth, models, seeds, rho, tau, model_sd, seed=int(truth * 10))
    assert 0.92 <= coverage <= 0.98, (
        f"{label}, truth {truth}: coverage {coverage:.3f} (width {width:.3f})"
    )


def test_identical_seeds_do_not_narrow_the_interval() -> None:
    """Three copies of one seed carry no more information than the seed itself."""
    rng = np.random.default_rng(1)
    target, other = _scores(rng, 0.8, 1, 1.0, 0.0), _scores(rng, 0.6, 1, 1.0, 0.0)
    one = stats.interval({0: [stats.Arm(target, other, CHANCE, CHANCE)]}, True, 2000, seed=3)
    three = stats.interval(
        {0: [stats.Arm(np.repeat(target, 3, 0), np.repeat(other, 3, 0), CHANCE, CHANCE)]},
        True,
        2000,
        seed=3,
    )
    width_one, width_three = one.hi - one.lo, three.hi - three.lo
    assert abs(width_three - width_one) <= 0.15 * width_one


def test_varying_seeds_widen_the_interval() -> None:
    """Seeds that disagree add their variance (as a t draw) on top of the example noise."""
    rng = np.random.default_rng(2)
    other = _scores(rng, 0.6, 3, 1.0, 0.0)
    same = np.repeat(_scores(rng, 0.8, 1, 1.0, 0.0), 3, 0)
    differ = same.copy()
    differ[1, :40] = 0  # seed 1 loses 0.2 accuracy
    differ[2, 100:140] = 1
    narrow = stats.interval({0: [stats.Arm(same, other, CHANCE, CHANCE)]}, True, 2000, seed=0)
    wide = stats.interval({0: [stats.Arm(differ, other, CHANCE, CHANCE)]}, True, 2000, seed=0)
    assert wide.hi - wide.lo > 1.5 * (narrow.hi - narrow.lo)
