"""mkdocs hook: render the notebooks in ``examples/`` as pages under ``examples/``.

The notebooks live in ``examples/`` at the repository root (CI executes them there with
nbmake); this adds them to the site's files before mkdocs-jupyter converts them, so no
copy is kept in docs/.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]


@event_priority(100)  # before mkdocs-jupyter's on_files, which wraps .ipynb files
def on_files(files: Files, config) -> Files:
    for notebook in sorted((ROOT / "examples").glob("*.ipynb")):
        files.append(
            File(
                f"examples/{notebook.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files
