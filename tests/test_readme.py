"""The README's Python examples run as written (in a temporary directory)."""

from __future__ import annotations

import linecache
import re
from pathlib import Path

from conftest import needs_tl4

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples() -> None:
    assert len(_python_blocks()) >= 3


@needs_tl4
def test_readme_examples_run_in_order(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for index, code in enumerate(_python_blocks()):  # later blocks use names from earlier ones
        filename = f"README python block {index}"
        # nnsight reads a trace's `with` body back from its source: register the block's
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        exec(compile(code, filename, "exec"), namespace)
    assert namespace["report"].verdict == {"A": "compositional", "B": "compositional"}  # type: ignore[attr-defined]
    assert (tmp_path / "report" / "report.md").exists() and (tmp_path / "heads.json").exists()
