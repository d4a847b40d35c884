"""The split step: a new patient-level split that seals the test set, or the existing one checked against the recipe.

A run directory's split is made once. Running again reuses it; a recipe whose split settings, label or image
columns disagree with it is refused naming the field (a new split would re-seal the test set over cases a model
has seen), and so is a different manifest file.
"""

from __future__ import annotations

import time
import warnings

from .._errors import InputError, RunDirError
from .._progress import status
from ..data import Manifest, RunDir
from ..recipe import Recipe
from ._result import RECIPE_JSON

__all__ = ["check_existing_split", "check_classes", "read_manifest", "make_split", "wait_for_split", "split_counts",
           "check_not_evaluated"]


def check_existing_split(run: RunDir, recipe: Recipe, manifest) -> None:
    """Refuse a recipe or manifest that disagrees with the run directory's sealed split, naming the field."""
    run.check_compatible(
        {"val_fraction": recipe.val_fraction, "test_fraction": recipe.test_fraction, "split_seed": recipe.split_seed,
         "split_group": recipe.split_group, "stratify": recipe.stratify},
        patient_column=recipe.patient_column, label_columns=recipe.label_columns,
        image_columns=recipe.image_columns, task=recipe.task, manifest=manifest,
    )
    check_classes(run, recipe)


def check_classes(run: RunDir, recipe: Recipe) -> None:
    """The recipe's ``class_names`` and ``positive_class`` against the classes ``split.json`` records.

    Unknown labels are refused with close matches (exit 2). The positive class is fixed with the split (the order
    of ``classes`` in ``split.json``, which the models of the run are trained on); ``positive_class=None`` accepts
    the recorded one, another class is refused, naming the fix.
    """
    info = run.info
    classes = list(info.get("classes") or [])
    if not recipe.class_names and recipe.positive_class is None:
        return
    task = info.get("task")
    recorded = dict(info.get("class_names") or {})
    names = {**{c: n for c, n in recorded.items() if n != c}, **recipe.class_names}
    ordered, _ = Manifest.resolve_classes(classes, task,
                                          positive_class=recipe.positive_class, class_names=names,
                                          source=f"Recipe {recipe.name!r} (classes of {run.split_json})")
    if recipe.positive_class is not None and task == "binary" and list(ordered) != classes:
        raise RunDirError(
            f"Run directory {run.path} was split with positive class {classes[1]!r} (split.json lists the classes "
            f"{', '.join(classes)}, positive last) but the recipe says positive_class={recipe.positive_class!r}. The "
            f"models of this run score {classes[1]!r}: keep positive_class={classes[1]} (or none), or use a new --out "
            "folder (`run` splits it there with the recipe's positive class, or `tl-radiology split --positive-class "
            "NAME`; the same manifest and split_seed give the same split)."
        )


def read_manifest(run: RunDir, recipe: Recipe, manifest):
    """The validated manifest for a new split (read before the run directory is created, so bad input writes
    nothing)."""
    if manifest is None:
        raise InputError(f"--manifest CSV is needed: run directory {run.path} has no split yet. Give the manifest "
                         f"(e.g. --manifest data/manifest.csv).")
    labels = list(recipe.label_columns)
    status(f"run: reading and checking the manifest {manifest}")
    table = Manifest.from_csv(manifest, patient_column=recipe.patient_column,
                              label_column=labels[0] if len(labels) == 1 else labels,
                              image_columns=recipe.image_columns, split_column=recipe.split_column,
                              allow_outside_root=recipe.allow_outside_root, task=recipe.task,
                              positive_class=recipe.positive_class, class_names=recipe.class_names or None)
    if recipe.mode == "features" and table.task not in ("binary", "multiclass"):
        raise InputError(f"Recipe {recipe.name!r}: mode='features' feeds classical classifiers (binary or multiclass); "
                         f"the manifest's task is {table.task}. Use mode=finetune.")
    return table


def make_split(run: RunDir, recipe: Recipe, table) -> str:
    """Split ``table`` by patient with the recipe's settings and seal the test set; returns the split's state."""
    group = "patient" if recipe.split_group in ("patient", recipe.patient_column) else recipe.split_group
    status(f"run: splitting {len(table)} cases of {table.num_patients} patients by {group} and sealing the test set")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run.create_split(table, val=recipe.val_fraction, test=recipe.test_fraction, seed=recipe.split_seed,
                                  group=group, stratify=recipe.stratify, resplit=recipe.resplit,
                                  test_loader=recipe.loader())
    for w in caught:
        if issubclass(w.category, UserWarning):
            status(f"warning: {w.message}")
    if result.leakage.duplicate_groups:
        status(f"warning: {len(result.leakage.duplicate_groups)} group(s) of identical images across splits "
               f"(see {run.split_json})")
    return result.state


def wait_for_split(run: RunDir, seconds: float) -> None:
    """A distributed worker waits for the chief's split and recipe.json."""
    deadline = time.monotonic() + seconds
    said = False
    while not (run.has_split() and (run.path / RECIPE_JSON).is_file()):
        if time.monotonic() > deadline:
            raise RunDirError(
                f"Run directory {run.path} has no split and recipe.json after {seconds:.0f} s. Start the chief "
                "(tl-radiology search ... --distributed chief) first; it makes the split the workers use."
            )
        if not said:
            status(f"search worker: waiting for the chief to make the split in {run.path}")
            said = True
        time.sleep(0.5)


def split_counts(run: RunDir) -> dict:
    """Cases per split (``train``, ``val``, ``test``)."""
    counts = (run.info.get("counts") or {})
    return {k: int(counts.get(k, 0)) for k in ("train", "val", "test")}


def check_not_evaluated(run: RunDir, what: str) -> None:
    """Refuse to search or train once ``evaluate`` has used the test set (it would become a validation set)."""
    if not run.has_split():
        return
    done = run.sealed_test().completed_evaluations()
    if done:
        raise RunDirError(
            f"The sealed test set of {run.path} was already used by `tl-radiology evaluate` ({done[-1].get('time')}). "
            f"{what} here now would choose a model after seeing test results, which turns the test set into a "
            "validation set. Use a new --out folder (and, to be honest about it, new test data)."
        )
