"""The core install works on its own: run by .ci/run in a venv with only the wheel's core
dependencies (``pip install torch==2.13.0 sc_interp-*.whl``, no extras), from outside the
source tree. Not collected by pytest (pyproject ``--ignore=tests/install``).

Checks that the venv really lacks every optional package, that attach / train / evaluate /
ablate / isolate / save / load / bake work on plain torch models, that the command line
runs, and that each feature needing an extra raises ``MissingDependencyError`` naming it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import sc_interp as sc
from sc_interp.toy import planted_mlp, planted_tasks

OPTIONAL = ("pandas", "matplotlib", "transformer_lens", "nnsight", "transformers")


def check_environment() -> None:
    present = [m for m in OPTIONAL if importlib.util.find_spec(m) is not None]
    assert not present, f"not a core-only venv: {present} installed"
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert Path(sc.__file__).resolve().is_relative_to(site), f"{sc.__file__} not under {site}"
    assert sc.__version__ == importlib.metadata.version("sc-interp")


def check_core(tmp: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    task = sc.Subtask("sign", train=(x, y), test=(x, y), chance=0.5)

    assert [s.name for s in sc.list_sites(model, unit="neuron")] == ["0", "2"]
    with sc.attach_masks(model, sc.MaskConfig(unit="weight")) as masks:
        masks.eval()
        masks.logits["0.weight"].data[:4] = -1.0
        model(x)
        path = masks.save(tmp / "masks.safetensors")
        baked = sc.bake(model, masks)
        assert torch.count_nonzero(baked[0].weight[:4]) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    loaded = sc.load_masks(model, path)
    assert torch.equal(loaded.hard()["0.weight"][:4], torch.zeros(4, 4, dtype=torch.bool))
    loaded.detach()

    planted, (task_a, task_b) = planted_mlp(), planted_tasks()
    cfg = sc.MaskConfig(unit="neuron", targets=["0"])
    sub = sc.train_masks(
        planted, cfg, task_a, sc.TrainConfig(epochs=8, lr=0.05, l0=1e-2, progress=False)
    )
    assert sub.masks["0"][:8].all() and not sub.masks["0"][8:].any(), sub.masks
    with sc.ablate(planted, sub):
        assert sc.evaluate(planted, task_a).accuracy < 0.7
        assert sc.evaluate(planted, task_b).accuracy > 0.95
    with sc.isolate(planted, sub):
        assert sc.evaluate(planted, task_a).accuracy > 0.95
    saved = sub.save(tmp / "sub.safetensors")
    assert torch.equal(sc.Subnetwork.load(saved).masks["0"], sub.masks["0"])
    sc.evaluate(model, task)
    sc.circuits.load(["a0.h0"])


def raises_naming(extra: str, call: Callable[[], object]) -> None:
    try:
        call()
    except sc.MissingDependencyError as exc:
        assert f"pip install 'sc-interp[{extra}]'" in str(exc), str(exc)
        return
    raise AssertionError(f"{call} did not raise MissingDependencyError")


def check_missing_extras() -> None:
    from sc_interp import _optional
    from sc_interp.demo import run_demo
    from sc_interp.tasks.models import build_bridge
    from sc_interp.toy import planted_bridge

    planted, (task_a, task_b) = planted_mlp(), planted_tasks()
    cfg, train = (
        sc.MaskConfig(unit="neuron", targets=["0"]),
        sc.TrainConfig(epochs=2, progress=False),
    )
    sub = sc.train_masks(planted, cfg, task_a, train)
    raises_naming("plot", lambda: sub.history)
    raises_naming("plot", lambda: sc.test_compositionality(planted, task_a, task_b, seeds=1))
    raises_naming("plot", lambda: sc.compare(["a0.h0"], ["a0.h0"]))
    raises_naming("plot", lambda: sc.plot.compare(["a0.h0"], ["a0.h0"]))
    raises_naming("plot", lambda: sc.CompositionalityReport(None, None, {}, None, {}).plot())
    raises_naming("plot", lambda: next(run_demo("number-contact", quick=True)))
    raises_naming("tl", planted_bridge)
    raises_naming("tl", lambda: build_bridge(20))
    raises_naming("nnsight", lambda: _optional.require("nnsight"))


def check_cli(tmp: Path) -> None:
    exe = Path(sys.executable).with_name("sc-interp")
    out = subprocess.run(
        [exe, "train", "--toy", "--epochs", "4", "--out", tmp / "cli.safetensors"],
        capture_output=True, text=True, cwd=tmp,
    )  # fmt: skip
    assert out.returncode == 0 and "wrote" in out.stdout, out.stdout + out.stderr
    out = subprocess.run([exe, "demo", "--quick"], capture_output=True, text=True, cwd=tmp)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "sc-interp[plot]" in out.stderr and "Traceback" not in out.stderr, out.stderr


def main() -> None:
    check_environment()
    with tempfile.TemporaryDirectory() as tmp:
        check_core(Path(tmp))
        check_missing_extras()
        check_cli(Path(tmp))
    print(f"core-only install of sc-interp {sc.__version__}: ok")


if __name__ == "__main__":
    main()
