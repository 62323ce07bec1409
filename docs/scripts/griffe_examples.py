"""Griffe extension: read a Google-style ``Example:`` section as ``Examples:``.

sc-interp's docstrings title their doctests ``Example:``. Griffe's Google parser reads only
``Examples:`` as an examples section (code blocks); ``Example:`` becomes an admonition whose
``>>>`` lines render as nested block quotes. This renames the heading before parsing.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_HEADING = re.compile(r"^(\s*)Example:\s*$", flags=re.M)


class ExampleSections(Extension):
    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _HEADING.sub(r"\1Examples:", obj.docstring.value)
