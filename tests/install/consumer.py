"""A user's script, type-checked by pyright against the *installed* wheel (see .ci/run).

CI runs pyright in strict mode with ``useLibraryCodeForTypes = false``: a package without
``py.typed`` would make every name below Unknown, and each ``assert_type`` fails when a
public name loses its type. It also runs the script, so the types are checked against
what the calls return. Not collected by pytest (pyproject ``--ignore=tests/install``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn
from typing_extensions import assert_type

import sc_interp as sc
from sc_interp.toy import planted_mlp, planted_tasks


def main() -> None:
    assert_type(sc.__version__, str)

    model: nn.Sequential = planted_mlp()
    task_a, task_b = planted_tasks()
    assert_type(task_a, sc.Subtask)

    sites = sc.list_sites(model, unit="neuron")
    assert_type(sites, list[sc.Site])
    assert_type(sites[0].name, str)
    assert_type(sites[0].shape, tuple[int, ...])

    cfg = sc.MaskConfig(unit="neuron", targets=["0"])
    with sc.attach_masks(model, cfg) as masks:
        assert_type(masks, sc.MaskSet)
        assert_type(masks.logits, dict[str, nn.Parameter])
        assert_type(masks.hard(), dict[str, Tensor])
        assert_type(masks.density(), float)
        with tempfile.TemporaryDirectory() as tmp:
            saved = masks.save(Path(tmp) / "masks.safetensors")
            assert_type(saved, Path)
            masks.detach()
            loaded = sc.load_masks(model, saved)
            assert_type(loaded, sc.MaskSet)
            assert_type(sc.bake(model, loaded), nn.Module)
            loaded.detach()

    train = sc.TrainConfig(epochs=2, lr=0.05, l0=1e-2, progress=False)
    sub = sc.train_masks(model, cfg, task_a, train)
    assert_type(sub, sc.Subnetwork)
    assert_type(sub.masks, dict[str, Tensor])
    assert_type(sub.sparsity(), float)

    evaluation = sc.evaluate(model, task_b)
    assert_type(evaluation, sc.Evaluation)
    assert_type(evaluation.accuracy, float)

    with sc.ablate(model, sub, method="zero") as removed:
        assert_type(removed, sc.MaskSet)
        assert_type(sc.evaluate(model, task_a).floored, float)
    with sc.isolate(model, sub) as kept:
        assert_type(kept, sc.MaskSet)

    circuit = sc.circuits.load(["a0.h0", "m1"])
    assert_type(circuit, sc.circuits.Circuit)
    assert_type(circuit.nodes, frozenset[str])

    error: type[sc.ScInterpError] = sc.MissingDependencyError
    assert issubclass(error, ImportError)
    assert isinstance(torch.zeros(1), Tensor)


def study(model: nn.Module, a: sc.Subtask, b: sc.Subtask) -> None:
    """Never called (the study takes minutes): only its types are checked."""
    report = sc.test_compositionality(model, a, b, seeds=2)
    assert_type(report, sc.CompositionalityReport)
    assert_type(report.verdict, dict[str, str])


def remote(lm: object, sub: sc.Subnetwork, task: sc.Subtask) -> None:
    """Never called (needs an nnsight LanguageModel): with ``remote=`` the block yields a plan."""
    with sc.isolate(lm, sub, "mean", data=task, remote=True) as plan:
        assert_type(plan, sc.TracePlan)
        assert_type(sc.evaluate(lm, task), sc.Evaluation)
    with sc.ablate(lm, sub, remote="local") as plan:
        assert_type(plan, sc.TracePlan)
    with sc.ablate(lm, sub, remote=False) as masks:
        assert_type(masks, sc.MaskSet)


if __name__ == "__main__":
    main()
    print("consumer: ok")
