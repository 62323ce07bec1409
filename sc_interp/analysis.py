"""test_compositionality: the paper's experiment as one call.

For every base model, subroutine (A, then B) and mask seed: learn a mask for the
subroutine, measure the subnetwork alone (``isolate``) and the model without it
(``ablate``) on both subtasks, and compare with two controls: the same analysis on a
randomly initialised copy of the architecture (``random_init``, drawn by
:mod:`sc_interp.reinit`) and size-matched random subnetworks ablated
(``random_subnetwork``). Intervals are in :mod:`sc_interp.stats`, the verdict rule in
:mod:`sc_interp.verdict`, the report object in :mod:`sc_interp.report`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from sc_interp import _validate
from sc_interp._optional import require
from sc_interp._random_draws import ablated_scores
from sc_interp._run import forward
from sc_interp._state import preserved
from sc_interp.ablate import METHODS, ablate, isolate
from sc_interp.adapters import resolve
from sc_interp.data import Subtask, as_subtask, cat_inputs
from sc_interp.errors import ConfigError
from sc_interp.masks import MaskConfig
from sc_interp.prompts import pad_alike
from sc_interp.reinit import reinitialize
from sc_interp.report import CompositionalityReport
from sc_interp.subnetwork import Subnetwork
from sc_interp.train import TrainConfig, finite_logits, train_masks

log = logging.getLogger(__name__)
CONTROLS = ("random_init", "random_subnetwork")
# a subnetwork "solves" its subtask when it keeps this share of the full model's accuracy above chance
SOLVES = 0.8
MIN_RANDOM = 10


@torch.no_grad()
def correctness(model: object, task: Subtask, split: str = "test") -> np.ndarray:
    """Per-example scores of ``model`` on ``task``'s ``split`` (0/1 correctness by default).

    A Subtask with a custom ``metric`` must return one score per example (see
    :meth:`Subtask.example_scores`).
    """
    root = resolve(model)
    with preserved(root):
        root.eval()
        out = []
        for x, y in task.batches(split):
            logits = finite_logits(task, forward(model, x), split, x)
            out.append(task.example_scores(logits, y).cpu().numpy())
    return np.concatenate(out).astype(float)


def _solves(sub: float, full: float, chance: float) -> bool:
    """The subnetwork keeps SOLVES of the full model's accuracy above chance (both floored)."""
    return max(sub, chance) - chance >= SOLVES * (max(full, chance) - chance)


def _random_masks(sub: Subnetwork, gen: torch.Generator) -> dict[str, torch.Tensor] | Subnetwork:
    """A random mask with the same number of kept units at every site."""
    out = {}
    for name, mask in sub.masks.items():
        flat = torch.zeros(mask.numel(), dtype=torch.bool)
        flat[torch.randperm(mask.numel(), generator=gen)[: int(mask.sum())]] = True
        out[name] = flat.view(mask.shape)
    if sub.config.unit == "edge":  # edge sites may hold only the targeted edges: keep them
        logits = {k: torch.where(v, 1.0, -1.0) for k, v in out.items()}
        return Subnetwork(logits, sub.config, fingerprint=sub.fingerprint, edges=sub.edges)
    return out


@dataclass
class _Collected:
    """Everything the report is built from."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    subs: dict[tuple[int, str, str, int], Subnetwork] = field(default_factory=dict)
    examples: dict[tuple[int, str, str, int], dict[str, np.ndarray]] = field(default_factory=dict)
    random: dict[tuple[int, str, str, int], np.ndarray] = field(default_factory=dict)


def _analyse(
    model: object, kind: str, model_id: int, tasks: tuple[Subtask, Subtask], mask: MaskConfig,
    train: TrainConfig, seeds: Sequence[int], controls: Sequence[str], n_random: int,
    method: str, out: _Collected,
) -> None:  # fmt: skip
    full = {t.name: correctness(model, t) for t in tasks}
    # solves_target is judged on the val split when a subtask has one, else on test
    judge = {t.name: "val" if t.has_split("val") else "test" for t in tasks}
    full_judge = {t.name: correctness(model, t, judge[t.name]).mean() for t in tasks}
    # mean/resample ablations draw on the training inputs of both subtasks alike
    data = None
    if method in ("mean", "resample"):
        data = cat_inputs([x for t in tasks for x, _ in t.batches("train")])
    for target, other in (tasks, tasks[::-1]):
        ch_t, ch_o = target.chance, other.chance
        for seed in seeds:
            key = (model_id, kind, target.name, seed)
            sub = train_masks(model, mask, target, replace(train, seed=seed))
            out.subs[key] = sub
            with isolate(model, sub, method, data=data, seed=seed):
                sub_t, sub_o = correctness(model, target), correctness(model, other)
                sub_judge = (
                    sub_t.mean()
                    if judge[target.name] == "test"
                    else correctness(model, target, "val").mean()
                )
            with ablate(model, sub, method, data=data, seed=seed):
                abl_t, abl_o = correctness(model, target), correctness(model, other)
            acc = {"full_target": full[target.name].mean(), "full_other": full[other.name].mean(),
                   "sub_target": sub_t.mean(), "sub_other": sub_o.mean(),
                   "abl_target": abl_t.mean(), "abl_other": abl_o.mean()}  # fmt: skip
            acc = {k: float(v) for k, v in acc.items()}
            # every accuracy is floored at its own subtask's chance level
            fl = {k: max(v, ch_t if k.endswith("target") else ch_o) for k, v in acc.items()}
            effect = (fl["full_target"] - fl["abl_target"]) - (fl["full_other"] - fl["abl_other"])
            row = {
                "model": model_id, "kind": kind, "subroutine": target.name, "other": other.name,
                "seed": seed, "chance_target": ch_t, "chance_other": ch_o, **acc,
                "sub_delta": fl["sub_target"] - fl["sub_other"],
                "abl_delta": fl["abl_target"] - fl["abl_other"], "density": sub.density(),
                "selective_effect": effect,
                # a subnetwork that cannot do its own subtask says nothing about modularity
                "solves_target": _solves(float(sub_judge), float(full_judge[target.name]), ch_t),
                "solves_on": judge[target.name],
                "full_judged": float(full_judge[target.name]), "sub_judged": float(sub_judge),
            }  # fmt: skip
            if kind == "trained" and not row["solves_target"]:
                log.warning(
                    "the %s mask (seed %d) keeps %.2f accuracy on its own subtask's %s split (full "
                    "model %.2f, chance %.2f): mask training failed; try a lower l0 or a higher lr",
                    target.name, seed, sub_judge, judge[target.name], full_judge[target.name], ch_t,
                )  # fmt: skip
            if "random_subnetwork" in controls:
                gen = torch.Generator().manual_seed(10_000 + seed)
                random_subs = [_random_masks(sub, gen) for _ in range(n_random)]
                draws = []
                for st, so in ablated_scores(
                    model, sub.config.unit, random_subs, (target, other), method, data, seed
                ):
                    rt, ro = st.mean(), so.mean()
                    draws.append(
                        (fl["full_target"] - max(rt, ch_t)) - (fl["full_other"] - max(ro, ch_o))
                    )
                out.random[key] = np.asarray(draws)
                row["random_effect_p95"] = float(np.quantile(draws, 0.95))
                row["beats_random"] = bool(effect > row["random_effect_p95"])
            out.rows.append(row)
            out.examples[key] = {"sub_t": sub_t, "sub_o": sub_o, "abl_t": abl_t, "abl_o": abl_o}


def test_compositionality(
    models: object | Sequence[object],
    a: Subtask | Any,
    b: Subtask | Any,
    mask: MaskConfig | None = None,
    train: TrainConfig | None = None,
    seeds: int | Sequence[int] = 3,
    controls: Sequence[str] = CONTROLS,
    *,
    method: str = "zero",
    n_random: int = 10,
    margin: float = 0.1,
    n_boot: int = 2000,
    random_init: Callable[[nn.Module, int], nn.Module] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> CompositionalityReport:
    """Test structural compositionality of subroutines ``a`` and ``b``.

    The verdict per subroutine follows the rule in :mod:`sc_interp.verdict`; the report
    states it with its reason in words (``report.verdict``, ``report.reasons``).

    Args:
        models: one trained model, or several independently trained ones (the units of the
            statistics: with several, intervals are ``t`` intervals over per-model means).
        a: the first subtask (:class:`Subtask`, or :class:`~sc_interp.tasks.TaskData`
            used for train, test and, if present, val). As in the paper, a subtask may train
            its mask on its "+A/-B" set and be scored (``test``) on the compound task's
            partition where only A decides; ``solves_target`` is judged on ``val`` when
            present (else ``test``). The report names each number's data (``report.data``).
        b: the second subtask, in the same forms as ``a``.
        mask: what to mask (default: neuron masks on every neuron site).
        train: mask training hyper-parameters.
        seeds: number of mask seeds (or the seeds themselves).
        controls: any of ``"random_init"`` and ``"random_subnetwork"``. Without
            ``random_init`` the verdict is uncontrolled; without ``random_subnetwork`` it
            cannot be "compositional".
        method: ablation method for isolate/ablate.
        n_random: random subnetworks per learned mask (at least 10).
        margin: the smallest effect that counts, for both "compositional" and "not
            compositional".
        n_boot: bootstrap draws (one base model).
        random_init: builds the untrained copy for the random-init control from the model
            and a seed (default: :func:`sc_interp.reinit.reinitialize`, the architecture's
            own initialisation).
        seed: seeds the bootstrap and the random-init copies.
        progress: show a progress bar over (model, arm) analyses.

    Returns:
        A :class:`CompositionalityReport` (``.table``, ``.summary``, ``.verdict``,
        ``.reasons``, ``.overlap``, ``.plot()``, ``.save(dir)``).

    Raises:
        ConfigError: unknown control, equal subtask names, fewer than 10 random subnetworks,
            no model or no seed, a margin outside (0, 1).

    Example:
        >>> import sc_interp as sc
        >>> from sc_interp.toy import planted_mlp, planted_tasks
        >>> task_a, task_b = planted_tasks(n_train=128, n_test=128)
        >>> report = sc.test_compositionality(
        ...     planted_mlp(), task_a, task_b, mask=sc.MaskConfig(unit="neuron", targets=["0"]),
        ...     train=sc.TrainConfig(epochs=15, lr=0.05, progress=False), seeds=2, n_boot=200,
        ... )  # doctest: +SKIP
        >>> report.verdict  # doctest: +SKIP
        {'A': 'compositional', 'B': 'compositional'}
    """
    if isinstance(controls, str) or not isinstance(controls, list | tuple):
        raise ConfigError(
            f"controls={controls!r}: must be a list or tuple of control names, "
            f"any of {list(CONTROLS)} (e.g. controls=('random_init',))"
        )
    a, b = as_subtask(a), as_subtask(b)
    if method == "resample":  # donors and recipients must be padded alike
        a, b = pad_alike(a, b)
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise ConfigError(f"unknown control(s) {unknown}; allowed: {list(CONTROLS)}")
    for name, task in (("a", a), ("b", b)):
        _validate.instance(name, task, Subtask, "a Subtask")
    if a.name == b.name:
        raise ConfigError(f"the two subtasks need different names, both are {a.name!r}")
    n_random = _validate.integer("n_random", n_random, minimum=0, maximum=10_000)
    if "random_subnetwork" in controls and n_random < MIN_RANDOM:
        raise ConfigError(
            f"n_random={n_random}: the random-subnetwork control needs at least {MIN_RANDOM} "
            "random subnetworks per learned mask (its 95th percentile is the bar to beat)"
        )
    margin = _validate.number("margin", margin, above=0, below=1)
    n_boot = _validate.integer("n_boot", n_boot, minimum=10, maximum=1_000_000)
    seed = _validate.integer("seed", seed, minimum=0, maximum=2**31 - 1)
    _validate.choice("method", method, METHODS)
    progress = _validate.boolean("progress", progress)
    model_list = list(models) if isinstance(models, list | tuple) else [models]
    if isinstance(seeds, int | np.integer) and not isinstance(seeds, bool):
        seed_list = list(range(_validate.integer("seeds", seeds, minimum=1, maximum=1000)))
    elif isinstance(seeds, list | tuple):
        seed_list = [_validate.integer("seeds[i]", s, minimum=0, maximum=2**63 - 1) for s in seeds]
    else:
        raise ConfigError(f"seeds={seeds!r}: give a number of mask seeds or a list of seeds")
    if not model_list or not seed_list:
        raise ConfigError("need at least one model and one seed")
    roots = [resolve(m) for m in model_list]
    mask = MaskConfig(unit="neuron") if mask is None else mask
    _validate.instance("mask", mask, MaskConfig, "a MaskConfig or None")
    train = TrainConfig(progress=False) if train is None else train
    _validate.instance("train", train, TrainConfig, "a TrainConfig or None")
    require("pandas", "test_compositionality (the report's tables)")  # fail before training
    out = _Collected()
    arm_names = ["trained"] + (["random_init"] if "random_init" in controls else [])
    init_notes: list[str] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(model_list) * len(arm_names), desc="compositionality", unit="model")
    try:
        with contextlib.ExitStack() as stack:
            for root in roots:
                stack.enter_context(preserved(root))
            for i, model in enumerate(model_list):
                arms: list[tuple[str, object]] = [("trained", model)]
                if "random_init" in controls:
                    if random_init is None:
                        clone, record = reinitialize(roots[i], seed + i)
                        init_notes.append(record.describe())
                    else:
                        clone = random_init(roots[i], seed + i)
                        init_notes.append("user-supplied random_init")
                    arms.append(("random_init", clone))
                for kind, m in arms:
                    if bar is not None:
                        bar.set_postfix(model=i, arm=kind)
                    _analyse(
                        m, kind, i, (a, b), mask, train, seed_list, controls, n_random, method, out
                    )
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return CompositionalityReport.build(
        out.rows, out.subs, out.examples, out.random, margin=margin, n_boot=n_boot, seed=seed,
        init_method="; ".join(dict.fromkeys(init_notes)) or None, data=_data_sources(a, b),
    )  # fmt: skip


def _data_sources(a: Subtask, b: Subtask) -> list[dict[str, Any]]:
    """Which data each number of the report comes from, per subtask and split."""
    rows = []
    uses = {"train": "mask training", "val": "solves_target", "test": "accuracies, deltas"}
    for task in (a, b):
        for split in ("train", "val", "test"):
            if task.has_split(split):
                used = uses[split] if split != "test" or task.has_split("val") else (
                    "accuracies, deltas, solves_target")  # fmt: skip
                rows.append({"subtask": task.name, "split": split, "used for": used,
                             "source": task.describe(split)})  # fmt: skip
    return rows


test_compositionality.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
