"""Check the built sdist and wheel: files, version and metadata (run by .ci/run).

Usage: ``python tests/install/check_dist.py dist/sc_interp-*.whl dist/sc_interp-*.tar.gz``
from the repository root. Not collected by pytest (pyproject ``--ignore=tests/install``).
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WHEEL_FILES = ("sc_interp/__init__.py", "sc_interp/py.typed", "sc_interp/circuits/__init__.py")
SDIST_FILES = (
    "LICENSE",
    "README.md",
    "CHANGELOG.md",
    "pyproject.toml",
    "sc_interp/py.typed",
    "tests/conftest.py",
    "docs/release.md",
)
CLASSIFIERS = (
    "Programming Language :: Python :: 3.10",
    "Programming Language :: Python :: 3.11",
    "Programming Language :: Python :: 3.12",
    "Topic :: Scientific/Engineering :: Artificial Intelligence",
    "Typing :: Typed",
)
URLS = ("Homepage", "Documentation", "Issues", "Changelog")
EXTRAS = ("tl", "nnsight", "plot", "docs", "bench", "dev", "all")


def source_version() -> str:
    text = (ROOT / "sc_interp" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([^"]+)"$', text, flags=re.M)
    assert found, "no __version__ in sc_interp/__init__.py"
    return found.group(1)


def check_wheel(path: Path, version: str) -> None:
    assert path.name == f"sc_interp-{version}-py3-none-any.whl", path.name
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        info = f"sc_interp-{version}.dist-info"
        missing = [n for n in (*WHEEL_FILES, f"{info}/licenses/LICENSE") if n not in names]
        assert not missing, f"wheel lacks {missing}"
        stray = sorted({n.split("/")[0] for n in names} - {"sc_interp", info})
        assert not stray, f"wheel ships more than the package: {stray}"
        meta = HeaderParser().parsestr(wheel.read(f"{info}/METADATA").decode())
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert meta["Name"] == "sc-interp" and meta["Version"] == version, (meta["Name"], version)
    assert meta["License-Expression"] == "MIT", meta["License-Expression"]
    assert meta["Requires-Python"] == ">=3.10", meta["Requires-Python"]
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "## Quick start" in (meta.get_payload() or ""), "README is not the long description"
    classifiers = meta.get_all("Classifier") or []
    assert not [c for c in CLASSIFIERS if c not in classifiers], classifiers
    urls = [u.split(",")[0] for u in meta.get_all("Project-URL") or []]
    assert not [u for u in URLS if u not in urls], urls
    assert meta["Keywords"], "no keywords"
    extras = meta.get_all("Provides-Extra") or []
    assert not [e for e in EXTRAS if e not in extras], extras
    assert "sc-interp = sc_interp.cli:main" in entry_points, entry_points


def check_sdist(path: Path, version: str) -> None:
    assert path.name == f"sc_interp-{version}.tar.gz", path.name
    prefix = f"sc_interp-{version}/"
    with tarfile.open(path) as sdist:
        names = {n.removeprefix(prefix) for n in sdist.getnames()}
    missing = [n for n in SDIST_FILES if n not in names]
    assert not missing, f"sdist lacks {missing}"
    stray = sorted(n for n in names if n.startswith((".venv", "dist/", "sc_interp_demo")))
    assert not stray, f"sdist ships build leftovers: {stray[:5]}"


def main(paths: list[str]) -> None:
    version = source_version()
    wheels = [Path(p) for p in paths if p.endswith(".whl")]
    sdists = [Path(p) for p in paths if p.endswith(".tar.gz")]
    assert len(wheels) == 1 and len(sdists) == 1, paths
    check_wheel(wheels[0], version)
    check_sdist(sdists[0], version)
    print(f"{wheels[0].name} and {sdists[0].name}: files and metadata ok")


if __name__ == "__main__":
    main(sys.argv[1:])
