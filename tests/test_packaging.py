"""Packaging: one version, the extras each optional feature names, lazy optional imports.

What the built wheel contains and that it works on its own (core only, and with its
extras) is checked by ``.ci/run`` against a fresh install; these tests run in any venv.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.resources
import re
import sys
from pathlib import Path

import pytest
import torch

import sc_interp as sc
from sc_interp import _optional
from sc_interp._persist import version
from sc_interp.toy import planted_mlp, planted_tasks

PACKAGE = Path(sc.__file__).resolve().parent
ROOT = Path(__file__).resolve().parents[1]
# optional top-level package -> the distribution its extra pins
DISTRIBUTION_OF = {
    "transformer_lens": "transformer-lens",
    "nnsight": "nnsight",
    "matplotlib": "matplotlib",
    "pandas": "pandas",
    "transformers": "transformers",
    "neurosurgeon": "neurosurgeon",
}


def test_version_is_the_distribution_metadata() -> None:
    assert sc.__version__ == importlib.metadata.version("sc-interp")
    assert version() == sc.__version__  # what mask files record


def test_py_typed_marker_is_in_the_package() -> None:
    assert importlib.resources.files("sc_interp").joinpath("py.typed").is_file()


def _extras() -> dict[str, set[str]]:
    """Extra name -> distribution names it requires, from the installed metadata."""
    meta = importlib.metadata.metadata("sc-interp")
    extras: dict[str, set[str]] = {name: set() for name in meta.get_all("Provides-Extra") or []}
    for req in meta.get_all("Requires-Dist") or []:
        found = re.search(r"""extra\s*==\s*["']([\w-]+)["']""", req)
        if found:
            name = re.match(r"[A-Za-z0-9_.-]+", req)
            assert name is not None, req
            extras[found.group(1)].add(name.group(0).lower().replace("_", "-"))
    return extras


def test_every_extra_named_in_errors_installs_that_package() -> None:
    extras = _extras()
    assert {"tl", "nnsight", "plot", "all"} <= set(extras)
    for module, extra in _optional.EXTRA_OF.items():
        assert DISTRIBUTION_OF[module] in extras[extra], (module, extra, extras[extra])


def _imports_of_optional_packages(tree: ast.AST) -> list[tuple[ast.AST, str, ast.AST | None]]:
    """(import node, top-level package, enclosing function) for optional packages."""
    found: list[tuple[ast.AST, str, ast.AST | None]] = []

    def visit(node: ast.AST, func: ast.AST | None) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:  # the TYPE_CHECKING body never runs
                visit(child, func)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                top = (name or "").split(".")[0]
                if top in _optional.EXTRA_OF:
                    found.append((node, top, func))
        inner = node if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else func
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, None)
    return found


def _required_in(func: ast.AST) -> set[str]:
    """Top-level packages passed to ``require(...)`` anywhere in ``func``."""
    out = set()
    for node in ast.walk(func):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "require"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            out.add(str(node.args[0].value).split(".")[0])
    return out


def test_optional_packages_are_imported_only_through_require() -> None:
    """A bare ``import pandas`` would give core-only users a ModuleNotFoundError."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, top, func in _imports_of_optional_packages(tree):
            if func is None or top not in _required_in(func):
                bad.append(f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', '?')} {top}")
    assert not bad, f"import these through sc_interp._optional.require: {bad}"


# --------------------------------------------------------------------------- missing packages


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import module`` fail as if the package were not installed."""
    for name in list(sys.modules):
        if name.split(".")[0] in modules:
            monkeypatch.delitem(sys.modules, name)
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def _trained() -> sc.Subnetwork:
    model, (task_a, _) = planted_mlp(), planted_tasks()
    cfg = sc.MaskConfig(unit="neuron", targets=["0"])
    return sc.train_masks(model, cfg, task_a, sc.TrainConfig(epochs=8, lr=0.05, progress=False))


def _report() -> sc.CompositionalityReport:
    return sc.CompositionalityReport(None, None, {}, None, {})


def _test_compositionality() -> None:
    task_a, task_b = planted_tasks()
    sc.test_compositionality(planted_mlp(), task_a, task_b, seeds=1)


def _demo() -> None:
    from sc_interp.demo import run_demo

    next(run_demo("sva", quick=True))


def _planted_bridge() -> None:
    from sc_interp.toy import planted_bridge

    planted_bridge()


def _language_model() -> None:
    from sc_interp.tasks.models import build_bridge

    build_bridge(20)


FEATURES = {
    "Subnetwork.history": (("pandas",), "plot", lambda: _trained().history),
    "test_compositionality": (("pandas",), "plot", _test_compositionality),
    "report.plot": (("matplotlib",), "plot", lambda: _report().plot()),
    "sc.plot.compare": (("matplotlib",), "plot", lambda: sc.plot.compare(["a0.h0"], ["a0.h0"])),
    "sc.plot.report": (("matplotlib",), "plot", lambda: sc.plot.report(_report())),
    "sc.compare": (("pandas",), "plot", lambda: sc.compare(["a0.h0"], ["a0.h0"])),
    "demo without matplotlib": (("matplotlib",), "plot", _demo),
    "toy.planted_bridge": (("transformer_lens",), "tl", _planted_bridge),
    "language task model": (("transformer_lens",), "tl", _language_model),
    "nnsight": (("nnsight",), "nnsight", lambda: _optional.require("nnsight")),
}


@pytest.mark.parametrize("feature", list(FEATURES))
def test_missing_optional_package_names_its_extra(monkeypatch, feature) -> None:
    modules, extra, call = FEATURES[feature]
    _hide(monkeypatch, *modules)
    with pytest.raises(sc.MissingDependencyError) as info:
        call()
    message = str(info.value)
    assert f"pip install 'sc-interp[{extra}]'" in message, message
    assert any(repr(m) in message or f"'{m}." in message for m in modules), message
    assert isinstance(info.value, ImportError)  # `except ImportError` keeps working


def test_test_compositionality_fails_before_training(monkeypatch) -> None:
    _hide(monkeypatch, "pandas")
    calls = []
    monkeypatch.setattr("sc_interp.analysis.train_masks", lambda *a, **k: calls.append(a))
    with pytest.raises(sc.MissingDependencyError):
        _test_compositionality()
    assert calls == []


def test_core_features_work_without_optional_packages(monkeypatch, tmp_path) -> None:
    _hide(monkeypatch, "pandas", "matplotlib", "transformer_lens", "nnsight")
    model, (task_a, task_b) = planted_mlp(), planted_tasks()
    sub = _trained()
    with sc.ablate(model, sub):
        assert sc.evaluate(model, task_a).accuracy < 0.8
        assert sc.evaluate(model, task_b).accuracy > 0.9
    path = sub.save(tmp_path / "sub.safetensors")
    assert torch.equal(sc.Subnetwork.load(path).masks["0"], sub.masks["0"])


def test_cli_prints_a_missing_extra_without_traceback(monkeypatch, capsys, tmp_path) -> None:
    from sc_interp.cli import main

    circuit = tmp_path / "heads.json"
    circuit.write_text("[[0, 0], [1, 2]]")
    _hide(monkeypatch, "pandas")
    monkeypatch.setattr(sys, "argv", ["sc-interp", "compare", str(circuit), str(circuit)])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "sc-interp[plot]" in err and "Traceback" not in err


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")))
def test_benchmark_scripts_import_what_exists(script: str) -> None:
    """Every sc_interp name a benchmark script imports exists (modules move; scripts are
    not run by the tests)."""
    import importlib.util

    tree = ast.parse((ROOT / "benchmarks" / script).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sc_interp"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(
                    f"{node.module}.{alias.name}"
                ), f"{script}: {node.module} has no {alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sc_interp"):
                    importlib.import_module(alias.name)
