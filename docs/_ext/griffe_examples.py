"""Griffe extensions for the API reference.

``ExampleSections``: read ``Example:`` sections as ``Examples:``.

The package's Google-style docstrings head their doctest blocks ``Example:``. Griffe takes that singular word as
an admonition and hands its ``>>>`` lines to Markdown as plain text, where ``result["a"]["b"]`` reads as a
reference link. As an examples section the lines are rendered as Python code, which is what they are.
"""

from __future__ import annotations

import ast
import re

from griffe import Alias, Extension

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.M)


class ExampleSections(Extension):
    """Rename ``Example:`` section headers to ``Examples:`` before the docstring is parsed."""

    def on_instance(self, *, obj, **kwargs) -> None:  # noqa: D102 - griffe's hook
        docstring = getattr(obj, "docstring", None)
        if docstring is not None and "Example:" in docstring.value:
            docstring.value = _EXAMPLE.sub(r"\1Examples:", docstring.value)


class LazyNames(Extension):
    """Show the names a package loads on first use (its ``_LAZY`` table, see ``tl_radiology._lazy``).

    Griffe reads the source without importing it, so a name that the package's ``__getattr__`` provides is not a
    member it can see. This adds each one as an alias of the object in the private module that defines it, and
    spells out the package's ``__all__``, whose ``*lazy_exports(_LAZY)`` griffe cannot evaluate.
    """

    def on_module_members(self, *, mod, **kwargs) -> None:  # noqa: D102 - griffe's hook
        table = mod.members.get("_LAZY")
        if table is None or getattr(table, "value", None) is None:
            return
        try:
            names = ast.literal_eval(str(table.value))
        except (ValueError, SyntaxError):
            return
        for submodule, provided in names.items():
            for name in provided:
                if name in mod.members:
                    continue
                mod.set_member(name, Alias(name, f"{mod.path}.{submodule}.{name}", parent=mod))
        mod.exports = _literal_all(mod.filepath) + [name for provided in names.values() for name in provided]


def _literal_all(path) -> list:
    """The string entries of the ``__all__ = [...]`` list in the module at ``path`` (starred entries skipped)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []
