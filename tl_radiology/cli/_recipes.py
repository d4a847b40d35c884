"""``tl-radiology recipes [NAME]``: list the prebuilt recipes, or show one recipe's resolved fields."""

from __future__ import annotations

import json

from tl_radiology._errors import InputError
from tl_radiology.recipe import Recipe, copy_recipe, list_recipes, load_recipe, recipe_source

from ._run import parse_overrides

__all__ = ["add_arguments", "run", "format_recipe", "FIELD_GROUPS"]

HELP = "list the prebuilt recipes, or show the fields of one (with --set changes); --copy it to edit"

DESCRIPTION = """\
Without NAME: one line per prebuilt recipe (mode, task, backbone(s), what it does). With NAME (a prebuilt name,
a recipe .py file or a run's recipe.json): every field of the recipe as `tl-radiology run` would use it, after the
--set changes. --copy FILE writes the prebuilt recipe's source to FILE to edit; run it with
`tl-radiology run FILE ...`.
"""

EPILOG = """\
examples:
  tl-radiology recipes
  tl-radiology recipes liver_lesion_triphasic_ct --set image_columns=native,arterial
  tl-radiology recipes chest_xray --copy my_cxr.py && tl-radiology run my_cxr.py --manifest m.csv --out runs/a
"""


def add_arguments(p, common) -> None:
    """The ``recipes`` command's arguments (its parser is made from HELP, DESCRIPTION and EPILOG)."""
    p.add_argument("name", nargs="?", default=None, metavar="NAME", help="a recipe name or file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a field before showing it (repeatable)")
    p.add_argument("--json", action="store_true", help="print the recipe as JSON (as recipe.json holds it)")
    p.add_argument("--copy", default=None, metavar="FILE", help="write the prebuilt recipe's .py source to FILE")


def run(args) -> int:
    """Run ``recipes`` with parsed arguments; returns the exit status."""
    if args.name is None:
        if args.overrides or args.json or args.copy:
            raise InputError("--set, --json and --copy need a recipe NAME, e.g. `tl-radiology recipes chest_xray "
                             "--json`.")
        names = list_recipes()
        width = max(len(n) for n in names)
        print(f"{'recipe':<{width}}  {'mode':<9} {'task':<11} {'backbone(s)':<28} description")
        for name in names:
            print(f"{name:<{width}}  {load_recipe(name).summary_line()}")
        print("\nShow one: tl-radiology recipes NAME   Run one: tl-radiology run NAME --manifest CSV --out DIR")
        return 0
    if args.copy:
        path = copy_recipe(args.name, args.copy)
        print(f"Wrote {path}: edit it, then run it with `tl-radiology run {path} --manifest CSV --out DIR`.")
        return 0
    recipe = load_recipe(args.name)
    overrides = parse_overrides(args.overrides)
    if overrides:
        recipe = recipe.replace_from_strings(overrides)
    if args.json:
        print(json.dumps(recipe.to_dict(), indent=2))
        return 0
    print(format_recipe(recipe))
    if args.name in list_recipes():
        print(f"\nsource: {recipe_source(args.name)} (copy it with --copy FILE to edit)")
    return 0


#: How ``tl-radiology recipes NAME`` groups the fields (every field appears in one group).
FIELD_GROUPS = (
    ("recipe", ("name", "description", "task", "ordinal", "class_names", "positive_class")),
    ("manifest columns", ("patient_column", "label_columns", "image_columns", "center_columns", "split_column",
                          "allow_outside_root")),
    ("reading", ("expect", "frame", "voi")),
    ("model input", ("intensity", "windows", "value_range", "percentiles", "input_size", "resize_mode",
                     "plane_size", "plane_spacing_mm", "check_geometry")),
    ("mode", ("mode", "backbones")),
    ("fine-tuning (FineTuneConfig)", ("backbone", "weights", "adapter", "pooling", "dropout", "dense_units", "l2",
                                      "optimizer", "momentum", "head_learning_rate", "finetune_learning_rate",
                                      "learning_rate_spread", "head_epochs", "finetune_epochs", "unfreeze",
                                      "train_batchnorm", "batch_size", "augmentation", "flip", "class_weighting",
                                      "early_stopping_patience", "monitor", "seed", "precision")),
    ("search", ("search_space", "tuner", "max_trials", "executions_per_trial", "objective", "cv_folds",
                "tuner_options", "classifiers", "classifier_spaces", "final_seeds")),
    ("split", ("val_fraction", "test_fraction", "split_seed", "split_group", "stratify", "resplit")),
    ("evaluation", ("threshold_method", "threshold_target", "n_bootstrap", "gradcam_samples", "tta")),
)


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "(none)"
    if isinstance(value, dict):
        return json.dumps(value) if value else "{}"
    if value is None:
        return "none"
    return str(value)


def format_recipe(recipe: Recipe) -> str:
    """Every field of ``recipe`` as ``key = value`` lines, grouped, in the spelling ``--set`` takes.

    Example:
        >>> from tl_radiology.recipe import load_recipe
        >>> print(format_recipe(load_recipe("chest_xray")).splitlines()[1])
        name                     = chest_xray
    """
    lines = []
    for heading, fields in FIELD_GROUPS:
        lines.append(f"[{heading}]")
        lines.extend(f"{name:<24} = {_show(getattr(recipe, name))}" for name in fields)
    return "\n".join(lines)
