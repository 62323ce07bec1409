"""The documentation covers the public API: every public name has a docstring and an entry in
the API reference (docs/api/), every error class a troubleshooting entry, and the example
notebooks are stored without outputs."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

import sc_interp
import sc_interp.circuits
import sc_interp.errors
import sc_interp.plot
import sc_interp.tasks

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# the installed-wheel CI run copies only tests/, README and pyproject: nothing to check there
pytestmark = pytest.mark.skipif(not (DOCS / "api").is_dir(), reason="no docs/ next to tests/")

MODULES = {
    "sc_interp": sc_interp,
    "sc_interp.circuits": sc_interp.circuits,
    "sc_interp.tasks": sc_interp.tasks,
    "sc_interp.plot": sc_interp.plot,
}


def _public() -> list[tuple[str, str, object]]:
    return [
        (mod, name, getattr(module, name))
        for mod, module in MODULES.items()
        for name in module.__all__
    ]


def _reference() -> set[str]:
    """Every ``::: dotted.name`` directive in the API reference."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((DOCS / "api").glob("*.md")))
    return set(re.findall(r"^::: *([\w.]+) *$", text, flags=re.M))


def _documented_in_source(module: str, name: str) -> bool:
    """A module attribute (a constant) documented by a string literal right after it."""
    path = Path(inspect.getfile(MODULES[module]))
    candidates = [path, *sorted(path.parent.glob("*.py"))] if path.name == "__init__.py" else [path]
    for source in candidates:
        text = source.read_text(encoding="utf-8")
        found = re.search(rf"^{re.escape(name)}(?:: [^=\n]+)? = ", text, flags=re.M)
        if found and text[_statement_end(text, found.start()) :].lstrip().startswith('"""'):
            return True
    return False


def _statement_end(text: str, start: int) -> int:
    """Where the assignment starting at ``start`` ends (brackets balanced, end of line)."""
    depth = 0
    for i in range(start, len(text)):
        char = text[i]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "\n" and depth == 0:
            return i + 1
    return len(text)


@pytest.mark.parametrize(("module", "name", "obj"), _public(), ids=lambda v: str(v)[:40])
def test_public_name_has_a_docstring_and_a_reference_entry(module, name, obj) -> None:
    reference = _reference()
    # a name re-exported by sc_interp from a subpackage may be documented under either path
    qualified = {f"{module}.{name}"}
    if inspect.ismodule(obj):
        qualified.add(obj.__name__)
    assert qualified & reference, f"{module}.{name} has no '::: {module}.{name}' in docs/api/"
    if inspect.ismodule(obj) or inspect.isclass(obj) or callable(obj):
        doc = inspect.getdoc(obj)
        assert doc and len(doc) > 20, f"{module}.{name} has no docstring"
        if not inspect.ismodule(obj):
            assert "Example" in doc or ">>>" in doc, f"{module}.{name}'s docstring has no example"
    else:
        assert _documented_in_source(module, name), (
            f"{module}.{name} (a {type(obj).__name__}) needs a docstring: a string literal "
            "right after its assignment"
        )


def _error_classes() -> list[type]:
    return [
        obj
        for _, obj in inspect.getmembers(sc_interp.errors, inspect.isclass)
        if issubclass(obj, sc_interp.ScInterpError)
    ]


def test_every_error_class_is_public() -> None:
    assert {c.__name__ for c in _error_classes()} <= set(sc_interp.__all__)


@pytest.mark.parametrize("error", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_has_a_troubleshooting_entry(error: type) -> None:
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    section = re.search(rf"^## {error.__name__}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert section, f"docs/troubleshooting.md has no '## {error.__name__}' section"
    body = section.group(1)
    assert "**What to do.**" in body and ("**Causes.**" in body or "**What it is.**" in body), (
        f"the {error.__name__} entry must say what causes it and what to do"
    )


def test_every_subclass_anywhere_is_in_errors_module() -> None:
    """Errors defined outside sc_interp/errors.py would escape the troubleshooting check."""
    pattern = re.compile(
        r"^class \w+\([^)]*(ScInterpError|ConfigError|DataError|TargetError)", re.M
    )
    stray = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "sc_interp").rglob("*.py")
        if p.name != "errors.py" and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert not stray, f"error classes defined outside sc_interp/errors.py: {stray}"


def _notebooks() -> list[Path]:
    return sorted((ROOT / "examples").glob("*.ipynb"))


def test_notebooks_are_in_the_site() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [nb.name for nb in _notebooks() if f"examples/{nb.name}" not in nav]
    assert _notebooks() and not missing, f"notebooks not in mkdocs.yml's nav: {missing}"


@pytest.mark.parametrize("notebook", _notebooks(), ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(notebook: Path) -> None:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    dirty = [
        i
        for i, cell in enumerate(cells)
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"{notebook.name}: cells {dirty} keep outputs; strip them before committing"
