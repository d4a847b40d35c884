"""A griffe extension for the API reference: read ``Example:`` sections as ``Examples:``.

The package's Google-style docstrings head their doctest blocks ``Example:``. Griffe takes that singular word as
an admonition and hands its ``>>>`` lines to Markdown as plain text, where ``result["a"]["b"]`` reads as a
reference link. As an examples section the lines are rendered as Python code, which is what they are.
"""

from __future__ import annotations

import re

from griffe import Extension

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.M)


class ExampleSections(Extension):
    """Rename ``Example:`` section headers to ``Examples:`` before the docstring is parsed."""

    def on_instance(self, *, obj, **kwargs) -> None:  # noqa: D102 - griffe's hook
        docstring = getattr(obj, "docstring", None)
        if docstring is not None and "Example:" in docstring.value:
            docstring.value = _EXAMPLE.sub(r"\1Examples:", docstring.value)
