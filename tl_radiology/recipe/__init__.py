"""Recipes: a task as one flat, validated record (:class:`Recipe`), and finding the prebuilt ones.

Example:
    >>> from tl_radiology.recipe import list_recipes, load_recipe
    >>> "chest_xray" in list_recipes()
    True
    >>> load_recipe("chest_xray").dropout  # doctest: +SKIP
    0.2
"""

from ._loading import copy_recipe, list_recipes, load_recipe, recipe_source
from ._schema import EVALUATION_FIELDS, SPLIT_FIELDS, Recipe, finetune_field_names

__all__ = [
    "Recipe",
    "load_recipe",
    "list_recipes",
    "recipe_source",
    "copy_recipe",
    "finetune_field_names",
    "SPLIT_FIELDS",
    "EVALUATION_FIELDS",
]
