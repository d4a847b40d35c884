"""Every name a package lists in ``__all__`` imports, and each object has one public name (STYLE.md 1)."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "tl_radiology",
    "tl_radiology.io",
    "tl_radiology.transforms",
    "tl_radiology.data",
    "tl_radiology.backbones",
    "tl_radiology.models",
    "tl_radiology.training",
    "tl_radiology.search",
    "tl_radiology.evaluation",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_names_import(package):
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)
    assert names, f"{package} has no __all__"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{package}.__all__ lists names it does not define: {missing}"
    assert len(set(names)) == len(names), f"{package}.__all__ repeats names"
    objects = {}
    for n in names:
        obj = getattr(module, n)
        if callable(obj) or isinstance(obj, type):
            assert id(obj) not in objects, f"{package} exports one object as {objects.get(id(obj))} and {n}"
            objects[id(obj)] = n
