"""Before anything is written: the recipe resolved with its overrides, and every check that can fail early.

Each check here runs before the run directory is created or changed, so a recipe that cannot work fails at once
with one line (exit 2) instead of in every trial of a search: missing weights files (all named at once), images
the backbones cannot take, a distributed setting that does not fit the recipe. The backbone registry and the
search import TensorFlow, so they are imported inside the checks (``import tl_radiology`` stays cheap).
"""

from __future__ import annotations

import json
from pathlib import Path

from .._errors import InputError, RunDirError, TLRadiologyError
from .._options import listed
from ..backbones import check_input_shape, get_backbone, resolve_weights
from ..recipe import Recipe, load_recipe
from ._result import RECIPE_JSON

__all__ = ["resolve_recipe", "previous_recipe", "describe_change", "check_weights", "check_loaded_shape",
           "resolve_distributed", "check_search_settings", "check_validation_cases"]


def resolve_recipe(recipe, overrides=None) -> Recipe:
    """The recipe to run: :func:`load_recipe` of ``recipe``, with ``overrides`` applied.

    Args:
        recipe: a :class:`Recipe`, a prebuilt name, a recipe ``.py`` file or a ``recipe.json``.
        overrides: field -> value; text values are parsed by the field's type (as ``--set key=value``), other
            values are used as they are.

    Example:
        >>> resolve_recipe("chest_xray", {"dropout": "0.3", "weights": None}).dropout
        0.3
    """
    recipe = load_recipe(recipe)
    if overrides:
        if not isinstance(overrides, dict):
            raise InputError(f"Expected overrides to be a dict of recipe fields; received {type(overrides).__name__}.")
        text = {k: v for k, v in overrides.items() if isinstance(v, str)}
        other = {k: v for k, v in overrides.items() if not isinstance(v, str)}
        if text:
            recipe = recipe.replace_from_strings(text)
        if other:
            recipe = recipe.replace(**other)
    return recipe


def previous_recipe(path: Path) -> Recipe | None:
    file = path / RECIPE_JSON
    if not file.is_file():
        return None
    try:
        return Recipe.from_dict(json.loads(file.read_text(encoding="utf-8")))
    except (ValueError, OSError, InputError) as exc:
        raise RunDirError(f"{file} is not a readable recipe ({' '.join(str(exc).split())}); it was edited or "
                          "damaged. Restore it, or use a new --out folder.") from None


def describe_change(old: Recipe, new: Recipe, fields) -> str:
    a, b = old.to_dict(), new.to_dict()
    return listed([f"{name}: {json.dumps(a[name])} then, {json.dumps(b[name])} now" for name in fields], 4)


def resolve_distributed(distributed, recipe: Recipe):
    """The distributed setting as a ``DistributedConfig`` (or ``None``), refused for an ensemble recipe."""
    from ..search import DistributedConfig  # deferred, as every TensorFlow import of this module

    if distributed is None:
        return None
    if isinstance(distributed, dict):
        distributed = DistributedConfig(**distributed)
    if not isinstance(distributed, DistributedConfig):
        raise InputError("Expected distributed to be a tl_radiology.search.DistributedConfig (role, oracle_address, "
                         f"tuner_id) or None; received {type(distributed).__name__}.")
    if recipe.mode == "ensemble":
        raise InputError("A distributed search of an ensemble recipe is not supported (its members are searched one "
                         "after another). Search each member on its own: --set mode=finetune backbone=NAME, each "
                         "with its own --out.")
    return distributed


def check_weights(recipe: Recipe) -> None:
    """Every starting-weights file the run would use is available offline (else a one-line error now, exit 2,
    rather than a search whose every trial fails on it)."""

    backbones = list(recipe.member_backbones)
    weights = [recipe.weights]
    if recipe.mode != "features":
        choices = recipe.search_space.get("backbone")
        if isinstance(choices, list):
            backbones += [b for b in choices if isinstance(b, str)]
        elif isinstance(choices, str):
            backbones.append(choices)
        options = recipe.search_space.get("weights")
        if isinstance(options, list):
            weights = [w for w in options]
        elif isinstance(options, str):
            weights = [options]
    problems = []  # every missing file at once, so that one import session fixes them all
    for backbone in dict.fromkeys(backbones):
        for value in dict.fromkeys(weights):
            if value is None or (isinstance(value, str) and value.lower() == "none"):
                continue
            try:
                resolve_weights(backbone, value)
            except InputError as exc:
                problems.append((backbone, value, exc))
    if len(problems) == 1:
        exc = problems[0][2]
        raise type(exc)(f"Recipe {recipe.name!r}: {exc} On the command line: --set weights=none.") from None
    if problems:
        listed = ", ".join(
            f"{get_backbone(b).weights_file} ({b})" if isinstance(v, str) and v.lower() == "imagenet" else f"{v} ({b})"
            for b, v, _ in problems
        )
        raise type(problems[0][2])(
            f"Recipe {recipe.name!r}: {len(problems)} starting-weights files are not available offline: {listed}. "
            "Import each with `tl-radiology weights import FILE --backbone NAME`, or use backbones whose weights "
            "are installed (efficientnet_lite0/1/2; see `tl-radiology weights status`), or --set weights=none."
        ) from None


def check_loaded_shape(recipe: Recipe, loader, cases) -> None:
    """Load one case and check its size and channels against every backbone the run would build, so a recipe that
    cannot work fails now, naming the problem, rather than in every trial of the search."""

    if len(cases) == 0:
        return
    shape = tuple(int(v) for v in loader(cases.iloc[0]).shape)
    backbones = list(recipe.member_backbones)
    choices = recipe.search_space.get("backbone") if recipe.mode != "features" else None
    if isinstance(choices, list):
        backbones += [b for b in choices if isinstance(b, str)]
    for backbone in dict.fromkeys(backbones):
        try:
            check_input_shape(backbone, shape)
        except InputError as exc:
            raise type(exc)(f"Recipe {recipe.name!r} loads {shape[0]}x{shape[1]} images (input_size="
                            f"{recipe.input_size}): {exc}") from None
    channels = shape[-1]
    if recipe.adapter == "replicate" and channels not in (1, 3):
        raise InputError(f"Recipe {recipe.name!r} loads {channels}-channel images, but adapter='replicate' only copies "
                         "1 gray channel to 3 (or passes 3 through). Set adapter=stem or adapter=projection.")


def check_search_settings(recipe: Recipe) -> None:
    """The tuner takes the recipe's seed and ``tuner_options`` (names checked, with suggestions): a throwaway
    oracle is built now, so that a bad value fails before the split is sealed and the cache written."""
    from ..search import make_oracle  # deferred: keras-tuner imports TensorFlow

    epochs = recipe.head_epochs + recipe.finetune_epochs
    try:
        make_oracle(recipe.tuner, objective=recipe.objective or "val_loss", direction="min",
                    max_trials=recipe.max_trials, seed=recipe.seed, max_consecutive_failed_trials=None,
                    options=recipe.tuner_options or None, max_epochs=max(epochs, 1))
    except TLRadiologyError as exc:
        raise type(exc)(f"Recipe {recipe.name!r}: field tuner_options / seed: {exc}") from None


def check_validation_cases(recipe: Recipe, table) -> None:
    """A new split must give validation cases (the search, early stopping and the threshold need them)."""
    honoured = "split" in table.cases.columns and not recipe.resplit
    if recipe.cv_folds is None and recipe.val_fraction == 0.0 and not honoured:
        raise InputError(
            f"Recipe {recipe.name!r}: field val_fraction expects > 0 when the manifest has no split column; "
            "received 0.0. The search, early stopping and the threshold need validation cases: --set "
            "val_fraction=0.15 (or give the manifest a split column, or cv_folds)."
        )
