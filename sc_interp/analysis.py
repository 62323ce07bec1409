"""test_compositionality: the paper's experiment as one call.

For every base model, subroutine (A, then B) and mask seed: learn a mask for the
subroutine, measure the subnetwork alone (``isolate``) and the model without it
(``ablate``) on both subtasks, and compare with two controls: the same analysis on a
randomly initialised copy of the architecture (``random_init``) and size-matched random
subnetworks ablated (``random_subnetwork``). Statistics and the verdict rule are in
:mod:`sc_interp.stats`; the report object in :mod:`sc_interp.report`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from sc_interp._run import forward
from sc_interp.ablate import ablate, isolate
from sc_interp.adapters import resolve
from sc_interp.data import Subtask
from sc_interp.errors import ConfigError
from sc_interp.masks import MaskConfig
from sc_interp.report import CompositionalityReport
from sc_interp.subnetwork import Subnetwork
from sc_interp.train import TrainConfig, train_masks

log = logging.getLogger(__name__)
CONTROLS = ("random_init", "random_subnetwork")
# a subnetwork "solves" its subtask when it keeps this share of the full model's accuracy above chance
SOLVES = 0.8


@torch.no_grad()
def correctness(model: object, task: Subtask) -> np.ndarray:
    """Per-example 0/1 correctness of ``model`` on ``task``'s test split."""
    root = resolve(model)
    flags = {m: m.training for m in root.modules()}
    root.eval()
    try:
        out = []
        for x, y in task.batches("test"):
            logits = task.logits(forward(model, x))
            out.append((logits.argmax(-1) == y.to(logits.device)).cpu().numpy())
    finally:
        for m, flag in flags.items():
            m.training = flag
    return np.concatenate(out).astype(float)


def reinitialize(model: nn.Module, seed: int = 0) -> nn.Module:
    """A randomly initialised, untrained copy of ``model`` (same architecture).

    Modules with ``reset_parameters`` (Linear, Conv, norms, embeddings) use their own
    initialisation; any other parameter is drawn from a normal with its current std.
    """
    clone = copy.deepcopy(resolve(model))
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        covered = set()
        for module in clone.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
                covered.update(id(p) for p in module.parameters(recurse=False))
        for p in clone.parameters():
            if id(p) not in covered:
                std = float(p.float().std()) if p.numel() > 1 else 0.02
                p.copy_(torch.randn(p.shape, generator=gen) * (std or 0.02))
    return clone


def _random_masks(sub: Subnetwork, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A random mask with the same number of kept units at every site."""
    out = {}
    for name, mask in sub.masks.items():
        flat = torch.zeros(mask.numel(), dtype=torch.bool)
        flat[torch.randperm(mask.numel(), generator=gen)[: int(mask.sum())]] = True
        out[name] = flat.view(mask.shape)
    return out


def _rows_for(
    model: object, kind: str, model_id: int, tasks: tuple[Subtask, Subtask], mask: MaskConfig,
    train: TrainConfig, seeds: Sequence[int], controls: Sequence[str], n_random: int, method: str,
) -> tuple[list[dict[str, Any]], dict[tuple[int, str, str, int], Subnetwork], dict]:  # fmt: skip
    rows, subs, examples = [], {}, {}
    full = {t.name: correctness(model, t) for t in tasks}
    # mean/resample ablations draw on the training inputs of both subtasks alike
    data = None
    if method in ("mean", "resample"):
        data = torch.cat([x for t in tasks for x, _ in t.batches("train")])
    for target, other in (tasks, tasks[::-1]):
        for seed in seeds:
            sub = train_masks(model, mask, target, replace(train, seed=seed))
            subs[(model_id, kind, target.name, seed)] = sub
            with isolate(model, sub, method, data=data, seed=seed):
                sub_t, sub_o = correctness(model, target), correctness(model, other)
            with ablate(model, sub, method, data=data, seed=seed):
                abl_t, abl_o = correctness(model, target), correctness(model, other)
            chance = target.chance
            acc = {k: float(v.mean()) for k, v in
                   {"full_target": full[target.name], "full_other": full[other.name], "sub_target": sub_t,
                    "sub_other": sub_o, "abl_target": abl_t, "abl_other": abl_o}.items()}  # fmt: skip
            fl = {k: max(v, chance) for k, v in acc.items()}
            effect = (fl["full_target"] - fl["abl_target"]) - (fl["full_other"] - fl["abl_other"])
            row = {
                "model": model_id, "kind": kind, "subroutine": target.name, "other": other.name,
                "seed": seed, "chance": chance, **acc, "sub_delta": fl["sub_target"] - fl["sub_other"],
                "abl_delta": fl["abl_target"] - fl["abl_other"], "density": sub.density(),
                "selective_effect": effect,
                # a subnetwork that cannot do its own subtask says nothing about modularity
                "solves_target": fl["sub_target"] - chance >= SOLVES * (fl["full_target"] - chance),
            }  # fmt: skip
            if kind == "trained" and not row["solves_target"]:
                log.warning(
                    "the %s mask (seed %d) keeps %.2f accuracy on its own subtask (full model %.2f, "
                    "chance %.2f): mask training failed; try a lower l0 or a higher lr",
                    target.name, seed, acc["sub_target"], acc["full_target"], chance,
                )  # fmt: skip
            if "random_subnetwork" in controls:
                gen = torch.Generator().manual_seed(10_000 + seed)
                draws = []
                for _ in range(n_random):
                    with ablate(model, _random_masks(sub, gen), method, data=data, seed=seed):
                        rt, ro = correctness(model, target).mean(), correctness(model, other).mean()
                    draws.append(
                        (fl["full_target"] - max(rt, chance)) - (fl["full_other"] - max(ro, chance))
                    )
                row["random_effect_p95"] = float(np.quantile(draws, 0.95))
                row["beats_random"] = bool(effect > row["random_effect_p95"])
            rows.append(row)
            examples[(model_id, kind, target.name, seed)] = (sub_t, sub_o, abl_t, abl_o)
    return rows, subs, examples


def test_compositionality(
    models: object | Sequence[object],
    a: Subtask,
    b: Subtask,
    mask: MaskConfig | None = None,
    train: TrainConfig | None = None,
    seeds: int | Sequence[int] = 3,
    controls: Sequence[str] = CONTROLS,
    *,
    method: str = "zero",
    n_random: int = 10,
    margin: float = 0.1,
    n_boot: int = 1000,
    random_init: Callable[[nn.Module, int], nn.Module] = reinitialize,
    seed: int = 0,
    progress: bool = False,
) -> CompositionalityReport:
    """Test structural compositionality of subroutines ``a`` and ``b``.

    Args:
        models: one trained model, or several independently trained ones (the clusters of
            the statistics).
        a, b: the two subtasks ("+A/-B" and "-A/+B" data sets).
        mask: what to mask (default: neuron masks on every neuron site).
        train: mask training hyper-parameters.
        seeds: number of mask seeds (or the seeds themselves).
        controls: any of ``"random_init"`` and ``"random_subnetwork"``.
        method: ablation method for isolate/ablate.
        n_random: random subnetworks per learned mask (at least 10 for the verdict).
        margin: equivalence margin of the "not compositional" verdict.
        n_boot: bootstrap draws.
        random_init: builds the untrained copy for the random-init control.
        seed: seeds the bootstrap.
        progress: show a progress bar over (model, arm) analyses.

    Returns:
        A :class:`CompositionalityReport` (``.table``, ``.summary``, ``.verdict``,
        ``.overlap``, ``.plot()``, ``.save(dir)``).
    """
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise ConfigError(f"unknown control(s) {unknown}; allowed: {list(CONTROLS)}")
    if a.name == b.name:
        raise ConfigError(f"the two subtasks need different names, both are {a.name!r}")
    model_list = list(models) if isinstance(models, list | tuple) else [models]
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not model_list or not seed_list:
        raise ConfigError("need at least one model and one seed")
    mask = mask or MaskConfig(unit="neuron")
    train = train or TrainConfig(progress=False)
    rows, subs, examples = [], {}, {}
    arm_names = ["trained"] + (["random_init"] if "random_init" in controls else [])
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(model_list) * len(arm_names), desc="compositionality", unit="model")
    for i, model in enumerate(model_list):
        arms = [("trained", model)]
        if "random_init" in controls:
            arms.append(("random_init", random_init(resolve(model), seed + i)))
        for kind, m in arms:
            if bar is not None:
                bar.set_postfix(model=i, arm=kind)
            r, s, e = _rows_for(
                m, kind, i, (a, b), mask, train, seed_list, controls, n_random, method
            )
            rows += r
            subs.update(s)
            examples.update(e)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return CompositionalityReport.build(
        rows, subs, examples, chance={a.name: a.chance, b.name: b.chance},
        margin=margin, n_boot=n_boot, seed=seed,
    )  # fmt: skip


test_compositionality.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
