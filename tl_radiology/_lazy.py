"""Names a package loads on first use, so that importing it (and ``tl-radiology --help``) stays cheap.

The parts that need TensorFlow are imported when one of their names is first looked up (PEP 562's module
``__getattr__``), not when the package is imported.
"""

from __future__ import annotations

import importlib

__all__ = ["lazy_names", "lazy_exports"]


def lazy_names(package: str, namespace: dict, table: dict[str, tuple[str, ...]]):
    """The ``__getattr__`` and ``__dir__`` of a package whose ``table`` names load on first use.

    Args:
        package: the package's ``__name__``.
        namespace: the package's ``globals()`` (a loaded name is stored there, so it is looked up once).
        table: ``{submodule: (name, ...)}``, each submodule relative to the package (``"_finetune"``,
            ``"run._demo"``) with the names it provides.

    Returns:
        ``(__getattr__, __dir__)`` to assign in the package's ``__init__``.

    Example:
        >>> __getattr__, __dir__ = lazy_names(__name__, globals(), {"_finetune": ("fine_tune",)})  # doctest: +SKIP
    """
    home = {name: submodule for submodule, names in table.items() for name in names}

    def __getattr__(name):
        if name in home:
            value = getattr(importlib.import_module(f".{home[name]}", package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(home))

    return __getattr__, __dir__


def lazy_exports(table: dict[str, tuple[str, ...]]) -> list[str]:
    """The names of a lazy ``table`` in its order, for the package's ``__all__`` (each name is written once)."""
    return [name for names in table.values() for name in names]
