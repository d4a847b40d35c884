"""``tl-radiology run``: a recipe end to end up to the sealed test set (split, search, final training, threshold)."""

from __future__ import annotations

from tl_radiology._errors import InputError

HELP = "run a recipe: split, search, final training, threshold on validation (stops before the test set)"

DESCRIPTION = """\
Run RECIPE (a prebuilt name from `tl-radiology recipes`, a recipe .py file you copied and edited, or a run's
recipe.json) on MANIFEST into DIR:

  1. write DIR/recipe.json (the recipe with your --set changes);
  2. split the cases by patient and seal the test set (DIR/splits.csv, split.json, test.lock, audit.log), unless
     DIR already has a split, which is reused (a recipe whose split settings differ is refused);
  3. search the recipe's space on train/validation (DIR/search/, search_summary.json); resumable: the same
     command again continues the search and never retrains a finished trial;
  4. train the final model with the best trial's hyperparameters (DIR/model.json + model.keras or
     classifier.joblib or members/, history.csv, curves.png);
  5. choose the decision threshold on validation (DIR/val_predictions.csv, val_metrics.json, validation/) and
     draw Grad-CAM for a few validation cases (DIR/explain/val/).

It stops there: the sealed test set is opened only by `tl-radiology evaluate DIR`, once.
"""

EPILOG = """\
examples:
  tl-radiology import-medmnist ../shared/data/medmnist_pneumoniamnist/pneumoniamnist.npz --out data/pneumonia
  tl-radiology run chest_xray --manifest data/pneumonia/manifest.csv --out runs/pneumonia
  tl-radiology run chest_xray --manifest data/pneumonia/manifest.csv --out runs/quick \\
      --set weights=none --set input_size=64 --set max_trials=3 --set head_epochs=2 --set finetune_epochs=3
  tl-radiology run ./my_recipe.py --manifest data/study.csv --out runs/study --max-trials 20
  tl-radiology evaluate runs/pneumonia && tl-radiology report runs/pneumonia

--set KEY=VALUE changes one recipe field (repeatable): numbers, true/false, none, comma-separated lists
(image_columns=native,arterial), JSON for dicts (search_space='{"dropout": [0, 0.5]}'). `tl-radiology recipes
NAME` lists the fields and their values.
"""


def add_recipe_arguments(p) -> None:
    """The recipe, manifest, run directory and --set options shared by ``run`` and ``search``."""
    p.add_argument("recipe", metavar="RECIPE", help="prebuilt recipe name, recipe .py file or recipe.json")
    p.add_argument("--manifest", default=None, metavar="CSV",
                   help="the manifest CSV (needed when DIR has no split yet)")
    p.add_argument("--out", required=True, metavar="DIR", help="the run directory")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a recipe field (repeatable), e.g. --set dropout=0.3")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="case cache folder (default DIR/cache); share one between runs on the same images")
    p.add_argument("--restart-search", action="store_true",
                   help="discard the search project(s) in DIR and search again from the start")
    p.add_argument("--strategy", default=None, metavar="mirrored",
                   help="train each trial under tf.distribute.MirroredStrategy (several GPUs)")
    p.add_argument("--max-trials", default=None, metavar="N", help="trials in all (same as --set max_trials=N)")
    p.add_argument("--tuner", default=None, metavar="NAME",
                   help="random, bayesian or hyperband (same as --set tuner=NAME)")


def parse_overrides(items, args=None) -> dict:
    """``["dropout=0.3", "image_columns=a,b"]`` -> ``{"dropout": "0.3", "image_columns": "a,b"}``, plus
    ``--max-trials`` / ``--tuner`` of ``args`` when given."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected KEY=VALUE, e.g. --set dropout=0.3 (the fields are listed by "
                             "`tl-radiology recipes NAME`).")
        out[key.strip()] = value
    for option, field in (("max_trials", "max_trials"), ("tuner", "tuner")):
        value = getattr(args, option, None) if args is not None else None
        if value is not None:
            out[field] = value
    return out


def add_arguments(p, common) -> None:
    """The ``run`` command's arguments (its parser is made from HELP, DESCRIPTION and EPILOG)."""
    add_recipe_arguments(p)


def run(args) -> int:
    """Run ``run`` with parsed arguments; returns the exit status."""
    from tl_radiology import run_recipe  # deferred: --help must not import the parts

    result = run_recipe(args.recipe, args.manifest, args.out, overrides=parse_overrides(args.overrides, args),
                        cache=args.cache, restart_search=args.restart_search, strategy=args.strategy)
    print(result.format())
    return 0
