"""Finding recipes: the prebuilt ones (the repository's top-level ``recipes/`` folder), a user's ``.py`` file, or a
run's ``recipe.json``.

The prebuilt recipes are modules holding one module-level ``RECIPE``. Installed, the ``recipes/`` folder is the
package ``tl_radiology.recipes``; from a plain checkout that is not installed (``python -m tl_radiology recipes``
in the repository), the same folder is found beside the package and loaded from there.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import pkgutil
import sys
from pathlib import Path

from .._atomic import atomic_write_text
from .._errors import InputError, TLRadiologyError
from .._options import look_up_option
from ._schema import Recipe

__all__ = ["list_recipes", "recipe_source", "load_recipe", "copy_recipe"]

_PACKAGE = "tl_radiology.recipes"


def _recipes_folder() -> Path:
    """The folder of the prebuilt recipes: the installed package, else the checkout's top-level ``recipes/``."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    checkout = Path(__file__).resolve().parents[2] / "recipes"
    if (checkout / "__init__.py").is_file():
        return checkout
    raise InputError(
        "The prebuilt recipes are not found: tl_radiology.recipes is not installed and there is no recipes/ folder "
        "beside the package. Install the toolkit (pip install -e .) or run from the repository."
    )


def _import_prebuilt(name: str):
    """Import ``tl_radiology.recipes.NAME``, from the checkout's folder when the package is not installed."""
    if importlib.util.find_spec(_PACKAGE) is not None:
        return importlib.import_module(f"{_PACKAGE}.{name}")
    folder = _recipes_folder()
    module_name = f"{_PACKAGE}.{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def list_recipes() -> list[str]:
    """The names of the prebuilt recipes (modules of ``tl_radiology.recipes``), sorted.

    Example:
        >>> "chest_xray" in list_recipes()
        True
    """
    return sorted(m.name for m in pkgutil.iter_modules([str(_recipes_folder())]) if not m.name.startswith("_"))


def recipe_source(name: str) -> Path:
    """The file of a prebuilt recipe (to copy and edit).

    Raises:
        OptionError: an unknown recipe name (with close matches and the list).
    """
    name = look_up_option(name, list_recipes(), what="recipe", fix="List them with `tl-radiology recipes`.")
    return _recipes_folder() / f"{name}.py"


def load_recipe(name_or_path) -> Recipe:
    """A recipe by prebuilt name, from a recipe file (``.py``) or from a ``recipe.json``.

    Args:
        name_or_path: a :class:`Recipe` (returned as is); a prebuilt name (``"chest_xray"``); the path of a
            Python file defining a module-level ``RECIPE`` (e.g. a prebuilt recipe copied and edited); or the
            path of a ``recipe.json`` written by a run.

    Returns:
        The :class:`Recipe`.

    Raises:
        OptionError: an unknown name ("Did you mean ...? Available: ...").
        InputError: a file that does not exist, cannot be run, has no ``RECIPE``, or holds an invalid recipe.

    Example:
        >>> load_recipe("chest_xray").backbone
        'efficientnet_lite0'
    """
    if isinstance(name_or_path, Recipe):
        return name_or_path
    if not isinstance(name_or_path, (str, Path)):
        raise InputError(f"Expected a recipe name, a recipe file or a Recipe; received {type(name_or_path).__name__}.")
    text = str(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = isinstance(name_or_path, Path) or "/" in text or text.endswith((".py", ".json"))
    if path.is_file():
        if path.suffix == ".json":
            return _recipe_from_json(path)
        if path.suffix == ".py":
            return _recipe_from_file(path)
        raise InputError(f"Recipe file {path} is neither a .py recipe file nor a recipe.json. Give a prebuilt "
                         "recipe name, a .py file defining RECIPE, or a run's recipe.json.")
    if looks_like_path:
        raise InputError(f"Recipe file {path} not found. Give a prebuilt recipe name (tl-radiology recipes) or the "
                         "path of an existing .py / recipe.json file.")
    name = look_up_option(text, list_recipes(), what="recipe",
                          fix="List them with `tl-radiology recipes`, or give the path of a recipe file.")
    return _module_recipe(_import_prebuilt(name), f"prebuilt recipe {name}")


def _module_recipe(module, where: str) -> Recipe:
    recipe = getattr(module, "RECIPE", None)
    if not isinstance(recipe, Recipe):
        raise InputError(f"{where} defines no module-level RECIPE = Recipe(...) (found "
                         f"{type(recipe).__name__ if recipe is not None else 'nothing'}). Define RECIPE in it.")
    return recipe


def _recipe_from_json(path: Path) -> Recipe:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"Recipe file {path} is not readable JSON ({exc}). Give a run's recipe.json.") from None
    try:
        return Recipe.from_dict(values)
    except TLRadiologyError as exc:
        raise type(exc)(f"Recipe file {path}: {exc}") from None


def _recipe_from_file(path: Path) -> Recipe:
    path = path.resolve()
    module_name = "tl_radiology_user_recipe_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except TLRadiologyError as exc:
        sys.modules.pop(module_name, None)
        raise type(exc)(f"Recipe file {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a user's file: one line naming it and the error
        sys.modules.pop(module_name, None)
        where = ""
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == str(path):
                where = f" (line {tb.tb_lineno})"
            tb = tb.tb_next
        if isinstance(exc, SyntaxError):
            where = f" (line {exc.lineno})"
        raise InputError(f"Recipe file {path} could not be run{where}: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())}. Fix the file.") from None
    return _module_recipe(module, f"Recipe file {path}")


def copy_recipe(name: str, destination) -> Path:
    """Write a prebuilt recipe's source file to ``destination`` (a new ``.py`` file) to edit and run by path.

    Raises:
        OptionError: an unknown recipe name.
        InputError: the destination exists or is not a ``.py`` file name.

    Example:
        >>> copy_recipe("chest_xray", "my_cxr.py")  # doctest: +SKIP
        PosixPath('my_cxr.py')
    """
    source = recipe_source(name)
    destination = Path(destination)
    if destination.suffix != ".py":
        raise InputError(f"--copy {destination}: expected a .py file name (a recipe file is Python), e.g. my_recipe.py.")
    if destination.exists():
        raise InputError(f"--copy {destination} exists; choose a new file name (nothing is overwritten).")
    return atomic_write_text(destination, source.read_text(encoding="utf-8"))
