"""The ``sc-interp demo``: the paper's experiment end to end on a tiny model, on CPU.

1. generate a synthetic compound task (odd-one-out among 4; "+A/-B" and "-A/+B" sets),
2. train a tiny model on it from scratch,
3. learn a mask per subroutine (several seeds) and test structural compositionality with
   the random-init and random-subnetwork controls,
4. print the table and the verdicts, and write the report (markdown, PNG, CSV).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sc_interp._optional import require
from sc_interp.analysis import test_compositionality
from sc_interp.data import Subtask
from sc_interp.masks import MaskConfig
from sc_interp.report import CompositionalityReport
from sc_interp.train import TrainConfig

DEFAULT_TASK = "sva"


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run (``quick`` for CI)."""

    n_train: int
    n_test: int
    seeds: int
    mask_epochs: int
    n_random: int
    n_boot: int


FULL = DemoSettings(n_train=1000, n_test=400, seeds=3, mask_epochs=10, n_random=10, n_boot=1000)
QUICK = DemoSettings(n_train=200, n_test=60, seeds=1, mask_epochs=2, n_random=10, n_boot=200)
# L0 weight on the raw sum of weight-mask entries, per task family (picked on held-out
# subtask accuracy and density of the trained model, never on the compositionality outcome)
L0 = {"language": 1e-4, "vision": 1e-5}


def run_demo(
    task_name: str = DEFAULT_TASK,
    out: str | Path = "sc_interp_demo",
    quick: bool = False,
    seed: int = 0,
    unit: str = "weight",
    arm: str = "scratch",
) -> Iterator[str | CompositionalityReport]:
    """Yield printable lines as the demo runs; the last item is the report."""
    from sc_interp.tasks import build_task_model, make_task, task_accuracy

    for module in ("pandas", "matplotlib.pyplot"):  # the report needs both: fail before training
        require(module, "the demo's report")
    settings = QUICK if quick else FULL
    start = time.perf_counter()
    task = make_task(task_name, n_train=settings.n_train, n_test=settings.n_test, seed=seed)
    yield (
        f"task {task.name!r} ({task.kind}): odd-one-out among 4; subroutines "
        f"A={task.a.name!r}, B={task.b.name!r}; {settings.n_train} train / {settings.n_test} test each"
    )
    model = build_task_model(task, arm=arm, seed=seed, quick=quick, progress=True)  # type: ignore[arg-type]
    accs = {p: task_accuracy(model, task.part(p)) for p in ("a", "b", "compound")}
    yield (
        f"trained a tiny {task.kind} model ({arm}) ({time.perf_counter() - start:.0f} s): "
        f"test accuracy {task.a.name} {accs['a']:.2f}, {task.b.name} {accs['b']:.2f}, "
        f"compound {accs['compound']:.2f} (chance 0.25)"
    )
    a = Subtask(task.a.name, task.a.train, task.a.test, chance=0.25)
    b = Subtask(task.b.name, task.b.train, task.b.test, chance=0.25)
    yield (
        f"learning {unit} masks for each subroutine ({settings.seeds} seed(s)), on the trained "
        "model and on a randomly initialised copy, with size-matched random subnetworks ..."
    )
    report = test_compositionality(
        model,
        a,
        b,
        mask=MaskConfig(unit=unit),
        train=TrainConfig(
            epochs=settings.mask_epochs, lr=0.05, l0=L0[task.kind], l0_mean=False, progress=False
        ),
        seeds=settings.seeds,
        n_random=settings.n_random,
        n_boot=settings.n_boot,
        seed=seed,
        progress=True,
    )
    yield ""
    yield repr(report)
    yield ""
    for name, verdict in report.verdict.items():
        yield f"verdict for {name!r}: {verdict}"
    path = report.save(out)
    yield f"report written to {path} ({time.perf_counter() - start:.0f} s in all)"
    yield report
