"""The verdict rule of structural compositionality: the one place it lives (DESIGN.md §2).

For one subroutine of the trained arm, **compositional** when all of these hold, checked in
this order (the first that fails is the reason given):

1. every trained mask solves its own subtask (``solves_target``);
2. the 95% CI of ``sub_delta`` lies above 0;
3. the 95% CI of ``abl_delta`` lies below 0;
4. ``sub_delta`` is at least ``margin`` (default 0.1);
5. ``abl_delta`` is at most ``-margin``;
6. the pooled selective effect of the learned masks (drop on the target minus drop on the
   other subtask when ablated) exceeds the 95th percentile of the pooled size-matched
   random subnetworks' effects;
7. when the random-init control was run: the CI of (trained ``abl_delta`` - random-init
   ``abl_delta``) lies below 0. Only ``abl_delta`` is contrasted: mask training finds a
   subnetwork that solves a subtask even in a random network, so an untrained model shows a
   large ``sub_delta`` too. Without this control the verdict is called *uncontrolled*.

**Not compositional** when the masks solve their subtasks and both deltas' CIs lie within
``±margin``, or either CI lies entirely on the wrong side of 0. Otherwise **inconclusive**,
with the first failed rule as the reason (a mask that fails its own subtask makes the
analysis uninformative, so rule 1 failing always gives *inconclusive*).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sc_interp.stats import Interval

Verdict = Literal["compositional", "not compositional", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = ("compositional", "not compositional", "inconclusive")


@dataclass(frozen=True)
class Evidence:
    """What the verdict of one subroutine rests on.

    Attributes:
        sub: interval of ``sub_delta`` (subnetwork alone: target minus other).
        abl: interval of ``abl_delta`` (subnetwork ablated: target minus other).
        n_masks: number of learned masks (base models x seeds).
        n_solving: how many of them solve their own subtask.
        effect: pooled selective effect of the learned masks (None: control not run).
        random_p95: 95th percentile of the pooled random-subnetwork effects.
        control: interval of trained minus random-init ``abl_delta`` (None: not run).
        is_control: the evidence is about the random-init arm itself (no contrast applies).
    """

    sub: Interval
    abl: Interval
    n_masks: int
    n_solving: int
    effect: float | None = None
    random_p95: float | None = None
    control: Interval | None = None
    is_control: bool = False


def decide(e: Evidence, margin: float = 0.1) -> tuple[Verdict, str]:
    """Apply the rule (module docstring); return the verdict and its reason in words.

    Example:
        >>> from sc_interp.stats import Interval
        >>> sub, abl = Interval(0.5, 0.4, 0.6, 0.0, ""), Interval(-0.4, -0.5, -0.3, 0.0, "")
        >>> ctl = Interval(-0.4, -0.5, -0.3, 0.0, "")
        >>> decide(Evidence(sub, abl, 3, 3, effect=0.4, random_p95=0.05, control=ctl))[0]
        'compositional'
        >>> decide(Evidence(sub, Interval(-0.05, -0.09, -0.01, 0.0, ""), 3, 3, 0.4, 0.05, ctl))[1]
        'abl_delta -0.050 is smaller in size than the 0.10 margin'
    """
    sub, abl = e.sub, e.abl
    failed = _first_failure(e, margin)
    if failed is None:
        reason = (
            f"sub_delta {sub} lies above 0 and abl_delta {abl} below 0, both beyond the "
            f"{margin:.2f} margin; all {e.n_masks} masks solve their subtask; the learned masks' "
            f"selective effect {e.effect:.3f} beats random subnetworks (95th percentile "
            f"{e.random_p95:.3f})"
        )
        if e.control is not None:
            reason += f"; abl_delta is lower than the untrained control's by {e.control}"
        elif not e.is_control:
            reason += "; uncontrolled: the random-init control was not run"
        return "compositional", reason
    if e.n_solving < e.n_masks:
        return "inconclusive", failed
    within = all(-margin <= x <= margin for x in (sub.lo, sub.hi, abl.lo, abl.hi))
    if within:
        return "not compositional", (
            f"both CIs lie within ±{margin:.2f}: sub_delta {sub}, abl_delta {abl}"
        )
    if sub.below(0):
        return "not compositional", (
            f"sub_delta {sub} lies below 0: the subnetwork does the other subtask better"
        )
    if abl.above(0):
        return "not compositional", (
            f"abl_delta {abl} lies above 0: ablating the subnetwork hurts the other subtask more"
        )
    return "inconclusive", failed


def _first_failure(e: Evidence, margin: float) -> str | None:
    sub, abl = e.sub, e.abl
    if e.n_solving < e.n_masks:
        return (
            f"{e.n_masks - e.n_solving} of {e.n_masks} masks do not solve their own subtask "
            "(mask training failed: try a lower l0 or a higher lr)"
        )
    if not sub.above(0):
        return f"the CI of sub_delta {sub} does not lie above 0"
    if not abl.below(0):
        return f"the CI of abl_delta {abl} does not lie below 0"
    if sub.estimate < margin:
        return f"sub_delta {sub.estimate:+.3f} is smaller than the {margin:.2f} margin"
    if abl.estimate > -margin:
        return f"abl_delta {abl.estimate:+.3f} is smaller in size than the {margin:.2f} margin"
    if e.effect is None or e.random_p95 is None:
        return "the random-subnetwork control was not run"
    if not e.effect > e.random_p95:
        return (
            f"the learned masks' selective effect {e.effect:.3f} does not beat the random "
            f"subnetworks' 95th percentile {e.random_p95:.3f}"
        )
    if e.control is not None and not e.control.below(0):
        return (
            "the untrained control shows the signature too: trained minus random-init "
            f"abl_delta is {e.control}, which does not lie below 0"
        )
    return None


def rule_text(margin: float = 0.1) -> str:
    """The rule in a few sentences, for reports.

    Example:
        >>> "margin" in rule_text(0.1)
        True
    """
    return (
        "Compositional when every trained mask solves its own subtask, the 95% CI of sub_delta "
        f"lies above 0 and that of abl_delta below 0, both estimates are at least the {margin:.2f} "
        "margin in size, the learned masks' pooled selective effect beats the 95th percentile "
        "of size-matched random subnetworks, and (when the random-init control ran) the CI of "
        "trained minus random-init abl_delta lies below 0. Not compositional when both CIs lie "
        f"within ±{margin:.2f} or one lies entirely on the wrong side of 0. Otherwise "
        "inconclusive, with the first rule that failed as the reason."
    )
