"""The run's record of the user's recipe file, so that later commands (``explain``) register its backbones again.

A recipe file may register backbones of its own (``register_backbone``) before defining ``RECIPE``; ``run``
records the file in the run directory, and a command run later in another process imports it again.
"""

from __future__ import annotations

import json
from pathlib import Path

from .._atomic import atomic_write_json
from .._errors import InputError
from ..data import sha256_file
from ..recipe import load_recipe

__all__ = ["record_recipe_file", "load_run_recipe_file", "RECIPE_FILE_RECORD"]

#: In a run directory: the user's recipe file the run was started with (absolute path and sha256), so commands
#: run later (``explain``) can import it and know the backbones it registers, as ``run`` did.
RECIPE_FILE_RECORD = "recipe_file.json"


def record_recipe_file(run_dir, recipe):
    """Remember in ``RUN_DIR/recipe_file.json`` the user's recipe file a run was started with (no-op otherwise).

    A recipe file may register backbones of its own (``register_backbone``) before defining ``RECIPE``; a later
    command in another process (``explain``) imports it again with :func:`load_run_recipe_file` to know them.

    Args:
        run_dir: the run directory.
        recipe: what the run was given: a ``.py`` recipe file is recorded; a prebuilt name, a ``recipe.json``
            or a :class:`~tl_radiology.Recipe` are not (they register nothing).

    Returns:
        The record's path, or ``None`` when nothing was recorded.
    """
    if not isinstance(recipe, (str, Path)):
        return None
    path = Path(recipe).expanduser()
    if path.suffix != ".py" or not path.is_file():
        return None
    path = path.resolve()
    return atomic_write_json(Path(run_dir) / RECIPE_FILE_RECORD, {"path": str(path), "sha256": sha256_file(path)})


def load_run_recipe_file(run_dir, recipe_file=None):
    """Import the recipe file of a run (given, or recorded by :func:`record_recipe_file`), registering its backbones.

    Args:
        run_dir: the run directory.
        recipe_file: a ``.py`` recipe file to import instead of the recorded one (``explain --recipe``).

    Returns:
        The file imported, or ``None`` when none was given or recorded, or the recorded one is gone (then a
        backbone it registered is reported, with the fix, when it is needed).

    Raises:
        InputError: the given file does not exist or cannot be run; a recorded one that fails to run.
    """
    if recipe_file is not None:
        path = Path(recipe_file).expanduser()
        if path.suffix != ".py":
            raise InputError(f"--recipe {recipe_file}: expected the .py recipe file the run was started with "
                             "(the one that registers its backbone).")
        load_recipe(path)
        return path
    record = Path(run_dir) / RECIPE_FILE_RECORD
    try:
        recorded = Path(json.loads(record.read_text(encoding="utf-8"))["path"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not recorded.is_file():
        return None
    load_recipe(recorded)
    return recorded
