"""The search step: the recipe's search on train / validation, resumable, with a progress line per finished trial."""

from __future__ import annotations

import contextlib

from .._errors import RunDirError
from .._progress import status
from ..data import RunDir
from ..recipe import Recipe
from ..search import (
    feature_search,
    read_summary,
    run_search,
    summary_path_for,
    trial_progress,
    write_ensemble_summary,
)
from ._context import describe_change
from ._result import SEARCH_PROJECT, SUMMARY_FILE

__all__ = ["project_names", "check_search_change", "search_step", "read_searches"]


def project_names(recipe: Recipe) -> dict:
    """``{member or None: project name}``: ``search`` for one search, ``search_<backbone>`` per ensemble member."""
    if recipe.mode == "ensemble":
        return {b: f"{SEARCH_PROJECT}_{b}" for b in recipe.backbones}
    return {None: SEARCH_PROJECT}


def check_search_change(run, recipe: Recipe, previous: Recipe | None, restart: bool) -> None:
    if previous is None or restart:
        return
    changed = recipe.differences(previous, list(recipe.search_fields))
    started = [name for name in project_names(previous).values() if (run.path / name).is_dir()]
    if changed and started:
        raise RunDirError(
            f"The search in {run.path / started[0]} was started with another recipe ({describe_change(previous, recipe, changed)}). "
            "Resume it with the same settings, pass --restart-search to discard its trials and start over, or use a "
            "new --out folder."
        )


def _classifier_argument(recipe: Recipe) -> dict:
    return {name: recipe.classifier_spaces.get(name) for name in recipe.classifiers}


def search_step(run: RunDir, recipe: Recipe, train, val, task, classes, loader, cache, *, restart, distributed,
                strategy, verbose):
    """Search the recipe's space on train / validation (resumable): one search, a feature search, or one per
    ensemble member. Returns a :class:`~tl_radiology.search.SearchResult` (``{backbone: result}`` for an
    ensemble)."""
    common = dict(loader=loader, cache=cache, task=task, classes=classes, tuner=recipe.tuner,
                  max_trials=recipe.max_trials, objective=recipe.objective, directory=run.path, seed=recipe.seed,
                  cv_folds=recipe.cv_folds, distributed=distributed, tuner_options=recipe.tuner_options or None,
                  overwrite=restart, verbose=verbose)
    if recipe.mode == "features":
        status(f"run: feature search over {', '.join(recipe.backbones)} x {', '.join(recipe.classifiers)} "
               f"({recipe.max_trials} trials at most)")
        with trial_progress(run.path / SEARCH_PROJECT, recipe.max_trials, "feature search"):
            return feature_search(train, val, backbones=list(recipe.backbones),
                                  classifiers=_classifier_argument(recipe), weights=recipe.weights, input_size=None,
                                  adapter=recipe.adapter, pooling=recipe.pooling, project_name=SEARCH_PROJECT,
                                  **common)
    results = {}
    for member, project in project_names(recipe).items():
        config = recipe.fine_tune_config(**({"backbone": member} if member else {}))
        status(f"run: search{' for ' + member if member else ''} ({recipe.tuner}, {recipe.max_trials} trials at "
               f"most, {config.backbone})")
        watch = (trial_progress(run.path / project, recipe.max_trials, f"search{' (' + member + ')' if member else ''}")
                 if distributed is None or distributed.is_chief else contextlib.nullcontext())
        with watch:
            results[member] = run_search(train, val, base_config=config, space=recipe.search_space,
                                         executions_per_trial=recipe.executions_per_trial, strategy=strategy,
                                         project_name=project, **common)
    if recipe.mode != "ensemble":
        return results[None]
    if distributed is None or distributed.is_chief:
        write_ensemble_summary(run.path / SUMMARY_FILE, results, tuner=recipe.tuner, max_trials=recipe.max_trials,
                               project_prefix=SEARCH_PROJECT)
    return results


def read_searches(run, recipe: Recipe):
    """The search results of a finished run, read from the summaries (without loading keras-tuner projects)."""
    out = {member: read_summary(summary_path_for(run.path, project), run.path / project)
           for member, project in project_names(recipe).items()}
    return out if recipe.mode == "ensemble" else out[None]
