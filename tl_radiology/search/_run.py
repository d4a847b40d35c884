"""``run_search``: keras-tuner over a fine-tuning space, judged on validation data only, resumable, distributable.

The project folder, resumption, chief / worker mode and the summary are :func:`conduct_search`'s (shared with
``feature_search``); this module owns what is particular to fine-tuning: the checks of the space against the
base configuration, Hyperband's epoch budget, the data a trial trains on and the fine-tuning summary fields.
"""

from __future__ import annotations

import numbers

import numpy as np

from .._errors import InputError
from .._options import look_up_option
from ..data import encode_labels
from ._distributed import resolve_distributed, resolve_strategy
from ._folds import describe_folds, patient_folds
from ._hypermodel import TransferHyperModel, objective_direction
from ._progress import SearchClock
from ._project import check_count, conduct_search, data_fingerprint
from ._results import SearchResult
from ._space import SearchSpace
from ._tuner import TUNERS, SearchTuner

__all__ = ["run_search"]


def _checked_counts(max_trials, executions_per_trial, seed, max_consecutive_failed_trials, verbose) -> tuple:
    """``run_search``'s integer arguments, checked (the error names the argument)."""
    max_trials = check_count("max_trials", max_trials)
    executions_per_trial = check_count("executions_per_trial", executions_per_trial)
    seed = check_count("seed", seed, minimum=0)
    if max_consecutive_failed_trials is not None:
        max_consecutive_failed_trials = check_count("max_consecutive_failed_trials", max_consecutive_failed_trials,
                                                    minimum=0)
    if not isinstance(verbose, (bool, numbers.Integral)):
        raise InputError(f"Expected verbose to be 0, 1 or 2; received {verbose!r}.")
    return max_trials, executions_per_trial, seed, max_consecutive_failed_trials, int(verbose)


def _hyperband_epochs(tuner_name: str, space: SearchSpace, base_config):
    """Hyperband's largest epoch budget (the base schedule's epochs), or ``None`` for the other tuners."""
    if tuner_name != "hyperband":
        return None
    searched = [k for k in ("head_epochs", "finetune_epochs") if k in space]
    if searched:
        raise InputError(f"tuner='hyperband' sets each trial's epochs itself; remove {', '.join(searched)} from "
                         "the search space (or use tuner='random' / 'bayesian').")
    return base_config.head_epochs + (base_config.finetune_epochs if base_config.has_finetune_phase else 0)


def _check_validation_classes(hm: TransferHyperModel, val_cases, objective: str) -> None:
    """Refuse validation cases without every class: the objective could not judge the trials."""
    present = set(np.asarray(encode_labels(val_cases["label"], hm.task, hm.classes)).astype(int).tolist())
    missing = [c for i, c in enumerate(hm.classes) if i not in present]
    if missing:
        raise InputError(
            f"The validation cases hold no case of class {', '.join(map(repr, missing))}, so {objective} cannot "
            "judge the trials. Make a split with every class in validation, or use cv_folds."
        )


def _prepare_trial_data(hm: TransferHyperModel, train_cases, val_cases, *, loader, cache, space, hypermodel):
    """Fill the case cache and check the cached images' size against ``base_config.input_size``."""
    if cache is not None:
        cache.fill(train_cases, loader)
        cache.fill(val_cases, loader)
    shape = hm.data_shape()
    size = hm.base_config.input_size
    if hypermodel is None and "input_size" not in space and size is not None and (size, size) != shape[:2]:
        raise InputError(
            f"base_config.input_size={size} but the cached cases are {shape[0]}x{shape[1]}. Resize in the "
            f"loader (Resize({size})), set input_size=None, or search input_size in the space."
        )


def _resume_note(search_tuner, max_trials: int) -> str:
    done = sum(1 for t in search_tuner.oracle.trials.values() if t.status == "COMPLETED")
    return f"{len(search_tuner.oracle.trials)} trials recorded, {done} completed; up to {max_trials} in all"


# Over 100 lines for its docstring only (the public reference of the search); the body is about 60 lines.
def run_search(
    train_cases,
    val_cases,
    *,
    loader,
    cache,
    base_config,
    space,
    task,
    classes=None,
    tuner="random",
    max_trials=10,
    objective=None,
    directory,
    project_name="search",
    seed=0,
    executions_per_trial=1,
    cv_folds=None,
    strategy=None,
    distributed=None,
    hypermodel=None,
    tuner_options=None,
    max_consecutive_failed_trials=3,
    overwrite=False,
    verbose=1,
) -> SearchResult:
    """Search fine-tuning hyperparameters with keras-tuner, judging every trial on the validation cases only.

    Each trial builds the network of ``base_config.replace(**sampled values)`` and trains both fine-tuning
    phases (:class:`TransferHyperModel`); its objective is the best epoch's value of a validation metric.

    **No test data.** There is deliberately no parameter for test cases: hyperparameters chosen by looking at
    data are fitted to that data (the review's warning: a test set used for tuning no longer measures
    generalisation), so the sealed test set is opened once, later, by ``evaluate``. Passing test cases by
    keyword is a ``TypeError``.

    **Tuners.** ``"random"`` (RandomSearch), ``"bayesian"`` (BayesianOptimization; ``tuner_options``:
    ``num_initial_points``, ``alpha``, ``beta``), ``"hyperband"`` (Hyperband; ``tuner_options``: ``factor``,
    ``hyperband_iterations``). Hyperband gives each trial an epoch budget (``tuner/epochs``, at most the base
    schedule's ``head_epochs + finetune_epochs``) spread over the two phases in proportion, head first (see
    ``hyperband_schedule``); a promoted configuration is trained again from the start with its larger budget
    rather than resumed from the earlier checkpoint, because a shorter schedule's fine-tuning phase cannot
    continue as a longer schedule's head phase (with ``factor`` 3 that costs at most half again the promoted
    trials' epochs). The space must not search ``head_epochs`` / ``finetune_epochs`` under Hyperband.
    ``max_trials`` caps every tuner, Hyperband included.

    **Resuming.** The project lives in ``directory/project_name`` (keras-tuner's files). Calling again with
    ``overwrite=False`` and the same settings continues it: completed and failed trials are kept and not
    trained again, a trial interrupted by a kill is run again, and raising ``max_trials`` runs only the new
    trials. Resuming with other settings (space, objective, tuner, data, base configuration, folds) is refused.

    **Records.** Every trial's status and objective are kept by keras-tuner; ``<project_name>_summary.json``
    beside the project (``search_summary.json`` by default) is rewritten atomically after the search with the
    counts, the best trial and every trial (errors of failed trials included). A search in which no trial
    completed raises :class:`~tl_radiology._errors.SearchFailedError` with the trials' errors (keras-tuner
    itself only records them). After ``max_consecutive_failed_trials`` failures in a row the search stops early.

    Args:
        train_cases: training case table (``RunDir(...).cases("train")``).
        val_cases: validation case table (``RunDir(...).cases("val")``).
        loader: the ``CaseLoader`` (the recipe's preprocessing, at the recipe's input size).
        cache: a ``CaseCache`` for train and validation cases (filled before the first trial), or ``None``.
        base_config: the ``FineTuneConfig`` every trial starts from.
        space: a :class:`SearchSpace` or its dict.
        task: ``"binary"``, ``"multiclass"``, ``"multilabel"`` or ``"regression"``.
        classes: class names in index order (``Manifest.classes``); default: from the labels.
        tuner: ``"random"``, ``"bayesian"`` or ``"hyperband"``.
        max_trials: the most trials the project holds (counting those of earlier calls).
        objective: ``"val_auc"`` (default, maximised) / ``"val_loss"`` / ``"val_accuracy"`` for classification;
            ``"val_loss"`` (default, minimised) / ``"val_mae"`` / ``"val_rmse"`` for regression. It is also each
            trial's early-stopping monitor unless ``base_config.monitor`` is set.
        directory: the folder of the project (a run directory).
        project_name: the project's folder name inside ``directory``.
        seed: seed of the tuner's sampling and of the cross-validation folds.
        executions_per_trial: trainings per trial from different initial weights (seed + 0, 1, ...), averaged.
        cv_folds: ``K`` for patient-grouped, stratified K-fold cross-validation over train + validation cases
            (the objective is the mean over folds; each fold's value is in the trial), or ``None`` for the one
            validation split.
        strategy: ``None``, ``"mirrored"`` or a ``tf.distribute.Strategy``: each trial trains under it (keras-
            tuner's ``distribution_strategy``), e.g. ``MirroredStrategy`` over several GPUs.
        distributed: a :class:`DistributedConfig` for keras-tuner's chief / worker mode, or ``None`` (then the
            ``KERASTUNER_*`` environment variables are honoured if set).
        hypermodel: a ``build(hp)`` function or ``keras_tuner.HyperModel`` that builds the network instead of
            ``build_for_config`` (see :class:`TransferHyperModel`).
        tuner_options: the oracle's own arguments (see Tuners).
        max_consecutive_failed_trials: stop after this many failed trials in a row (``None`` or 0: never).
        overwrite: delete the project and its summary and start over.
        verbose: 0 silent, 1 a status line per trial (standard error), 2 also one per epoch.

    Returns:
        A :class:`SearchResult`; ``result.best_config`` is the FineTuneConfig to train the final model with.

    Raises:
        SearchFailedError: no trial completed (the message gives their errors).
        InputError, OptionError: bad arguments (named, with the fix), a project started with other settings,
            cases that cannot be loaded.

    Example:
        >>> result = run_search(run.cases("train"), run.cases("val"), loader=loader, cache=cache,
        ...                     base_config=FineTuneConfig(backbone="densenet121", weights="imagenet"),
        ...                     space={"dropout": [0.0, 0.3, 0.5], "head_learning_rate": {"min": 1e-4,
        ...                            "max": 1e-2, "log": True}},
        ...                     task="binary", max_trials=10, directory=run.path)  # doctest: +SKIP
        >>> result.best_config.dropout, result.best_objective  # doctest: +SKIP
        (0.3, 0.91)
    """
    tuner_name = look_up_option(tuner, list(TUNERS), what="tuner")
    max_trials, executions_per_trial, seed, max_consecutive_failed_trials, verbose = _checked_counts(
        max_trials, executions_per_trial, seed, max_consecutive_failed_trials, verbose)
    space = space if isinstance(space, SearchSpace) else SearchSpace(space if space is not None else {})
    hm = TransferHyperModel(train_cases, val_cases, loader=loader, cache=cache, base_config=base_config,
                            space=space, task=task, classes=classes, objective=objective, build=hypermodel,
                            verbose=verbose)
    hm.clock = SearchClock(max_trials)
    objective = hm.objective
    direction = objective_direction(objective)
    if hypermodel is None:
        space.validate(hm.base_config)
    max_epochs = _hyperband_epochs(tuner_name, space, hm.base_config)
    if cv_folds is None and hm.task in ("binary", "multiclass"):
        _check_validation_classes(hm, val_cases, objective)
    distributed = resolve_distributed(distributed)
    strategy = resolve_strategy(strategy)
    folds = patient_folds(hm.pooled_cases, cv_folds, task=hm.task, seed=seed) if cv_folds is not None else None
    if distributed is None or not distributed.is_chief:  # the chief only hands out hyperparameters
        _prepare_trial_data(hm, train_cases, val_cases, loader=loader, cache=cache, space=space,
                            hypermodel=hypermodel)

    settings = {
        "mode": "fine_tune", "tuner": tuner_name, "tuner_options": dict(tuner_options or {}),
        "objective": objective, "task": hm.task, "classes": list(hm.classes), "space": space.to_dict(),
        "base_config": base_config.to_dict(), "cv_folds": cv_folds, "seed": seed,
        "executions_per_trial": executions_per_trial,
        "hypermodel": None if hypermodel is None else getattr(hypermodel, "__name__", type(hypermodel).__name__),
        "data": {"train": data_fingerprint(train_cases), "val": data_fingerprint(val_cases)},
    }

    def make_tuner(oracle, **kwargs):
        return SearchTuner(oracle, hm, folds=folds, distributed=distributed, verbose=verbose, objective=objective,
                           executions_per_trial=executions_per_trial, distribution_strategy=strategy, **kwargs)

    def base_summary():
        return {
            "mode": "fine_tune", "tuner": tuner_name, "max_trials": max_trials, "cv_folds": cv_folds,
            "folds": describe_folds(hm.pooled_cases, folds),
            "executions_per_trial": executions_per_trial, "task": hm.task, "classes": list(hm.classes),
            "space": space.to_dict(), "base_config": hm.base_config.to_dict(),
            "strategy": None if strategy is None else {"name": type(strategy).__name__,
                                                       "replicas": int(strategy.num_replicas_in_sync)},
        }

    def best_config_of(values):
        return space.apply(hm.base_config, values) if hypermodel is None or len(space) else hm.base_config

    return conduct_search(
        make_tuner, mode="fine_tune", label="search", settings=settings, tuner_name=tuner_name,
        tuner_options=tuner_options, objective=objective, direction=direction,
        max_trials=max_trials, seed=seed, max_consecutive_failed_trials=max_consecutive_failed_trials,
        max_epochs=max_epochs, directory=directory, project_name=project_name, overwrite=overwrite,
        distributed=distributed, verbose=verbose, resume_note=lambda t: _resume_note(t, max_trials),
        base_summary=base_summary, best_config_of=best_config_of)
