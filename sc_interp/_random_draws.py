"""The random-subnetwork control's evaluations, batched across the random draws.

``test_compositionality`` ablates at least ten size-matched random subnetworks per learned
mask and scores both subtasks each time. For neuron and head masks removed with ``zero``
this runs several draws in one forward: every test batch is repeated once per draw, and a
hook at each masked site multiplies the activation rows of copy ``r`` by draw ``r``'s
mask. The scores equal one ablation per draw (tested), with one forward per batch and
chunk of draws instead of one per draw, and no attaching and detaching per draw. This needs
every masked activation to hold the batch's rows first (``[batch, ...]``); a model that runs
a site sequence-first (``[positions, batch, ...]``) would mix the copies, so the first draw
is also run the ordinary way on the first batch and, if the scores differ, every draw runs as
its own ablation. Other units (weights differ per draw) and methods (``mean`` and
``resample`` replace removed units with recorded activations) run one ablation per draw.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sc_interp import _hooks
from sc_interp._run import forward
from sc_interp._state import preserved
from sc_interp.ablate import ablate
from sc_interp.adapters import find_sites, resolve
from sc_interp.data import Subtask, cat_inputs
from sc_interp.sites import Site, expand_to_activation
from sc_interp.train import finite_logits

log = logging.getLogger(__name__)
MAX_ROWS = 512  # inputs x draws in one batched forward (bounds the activations' memory)


def ablated_scores(
    model: object, unit: str, draws: Sequence[Any], tasks: Sequence[Subtask], method: str,
    data: Any, seed: int,
) -> list[list[np.ndarray]]:  # fmt: skip
    """Per draw, per task: the test-split example scores with that draw ablated."""
    if unit in ("neuron", "head") and method == "zero" and draws:
        try:
            return _batched_zero(model, unit, draws, tasks)
        except _NotBatchable as reason:
            log.info("random subnetworks evaluated one at a time: %s", reason)
    from sc_interp.analysis import correctness

    out = []
    for draw in draws:
        with ablate(model, draw, method, data=data, seed=seed):
            out.append([correctness(model, t) for t in tasks])
    return out


class _NotBatchable(Exception):
    """The model's activations do not split into one block of rows per copy of the batch."""


class _RowMasks:
    """Which draws the current forward holds, and each site's ``[draws, units]`` keep mask."""

    def __init__(self, keep: dict[str, Tensor], sites: dict[str, Site]):
        self.keep = keep
        self.sites = sites
        self.start = 0
        self.count = 1
        self.failed: str | None = None  # set by a hook, raised after the forward

    def apply(self, name: str, t: Tensor) -> Tensor:
        site, r = self.sites[name], self.count
        if t.shape[0] % r:
            # not raised here: the model's own code (an nnsight trace) may wrap exceptions
            self.failed = (
                f"site {name!r}: {t.shape[0]} activation rows do not split into {r} copies"
            )
            return t
        # each draw's mask broadcast as sites.expand_to_activation does it (groups, checks)
        per_draw = [
            expand_to_activation(m, site, t) for m in self.keep[name][self.start : self.start + r]
        ]
        mask = torch.stack(per_draw)  # [r, features, 1, ...]: features on the unit axis
        rows = t.reshape(r, t.shape[0] // r, *t.shape[1:])
        shape = [r] + [1] * (t.ndim - mask.ndim + 1) + list(mask.shape[1:])
        return (rows * mask.to(t.device, t.dtype).view(shape)).reshape(t.shape)


@torch.no_grad()
def _batched_zero(
    model: object, unit: str, draws: Sequence[Any], tasks: Sequence[Subtask]
) -> list[list[np.ndarray]]:
    root = resolve(model)
    names = list(draws[0])
    sites = {s.name: s for s in find_sites(root, unit) if s.name in names}
    # ablate removes the draw: the complement runs
    keep = {n: torch.stack([~draw[n].reshape(-1).bool() for draw in draws]).float() for n in names}
    rows = _RowMasks(keep, sites)
    scores: list[list[list[np.ndarray]]] = [[[] for _ in tasks] for _ in draws]
    # the check: draw 0 on the first batch, the ordinary way (hooks of a MaskSet)
    first_x, first_y = next(iter(tasks[0].batches("test")))
    with ablate(model, draws[0]):
        with preserved(root):
            root.eval()
            out = forward(model, first_x)
            check = tasks[0].example_scores(finite_logits(tasks[0], out, "test", first_x), first_y)
    handles = []
    with preserved(root):
        root.eval()
        try:
            for name, site in sites.items():
                module = root.get_submodule(site.module) if site.module else root
                handles.append(_hooks.transform(module, site, lambda t, n=name: rows.apply(n, t)))
            for i, task in enumerate(tasks):
                for x, y in task.batches("test"):
                    step = max(1, MAX_ROWS // max(1, len(y)))
                    for start in range(0, len(draws), step):
                        rows.start, rows.count = start, min(step, len(draws) - start)
                        xs = cat_inputs([x] * rows.count)
                        logits = finite_logits(task, forward(model, xs), "test", xs)
                        if rows.failed:
                            raise _NotBatchable(rows.failed)
                        for r, part in enumerate(logits.chunk(rows.count)):
                            scores[start + r][i].append(task.example_scores(part, y).cpu().numpy())
        finally:
            for handle in handles:
                handle.remove()
    if not np.allclose(scores[0][0][0], check.cpu().numpy(), rtol=1e-4, atol=1e-5):
        raise _NotBatchable(
            "the batched scores of the first draw differ from its own ablation (the model's "
            "activations are not batch-major at a masked site?)"
        )
    return [[np.concatenate(parts).astype(float) for parts in per_task] for per_task in scores]
