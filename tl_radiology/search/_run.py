"""``run_search``: keras-tuner over a fine-tuning space, judged on validation data only, resumable, distributable."""

from __future__ import annotations

import contextlib
import hashlib
import json
import numbers
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import RunLock, ensure_writable_dir
from .._errors import InputError
from .._options import look_up_option
from .._progress import status
from ._distributed import distributed_environment, resolve_distributed, resolve_strategy
from ._folds import describe_folds, patient_folds
from ._hypermodel import TransferHyperModel, objective_direction
from ._results import (SearchResult, check_settings, count_statuses, raise_if_all_failed, summary_path_for,
                       trial_records, trials_frame, write_summary)
from ._progress import SearchClock
from ._space import SearchSpace
from ._tuner import TUNERS, SearchTuner, make_oracle, quiet_stdout, reload_project, trial_tracebacks

__all__ = ["run_search", "check_count", "check_project_name", "data_fingerprint", "finish_search", "prepare_project"]


def check_count(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"Expected {name} to be an integer >= {minimum}; received {value!r}.")
    return int(value)


def check_project_name(project_name) -> str:
    if not isinstance(project_name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", project_name):
        raise InputError(f"Expected project_name to be a folder name (letters, digits, '_', '-', '.'); received "
                         f"{project_name!r}.")
    return project_name


def data_fingerprint(cases: pd.DataFrame) -> str:
    """A short hash of which cases (and labels) a search saw, so a resumed search can tell the data changed."""
    columns = [c for c in ("case_id", "label") if c in cases.columns] or list(cases.columns)
    rows = cases[columns].astype(str).values.tolist()
    return hashlib.sha256(json.dumps(rows).encode("utf-8")).hexdigest()[:16]


def prepare_project(directory, project_name, *, overwrite: bool, distributed) -> tuple[Path, Path]:
    directory = ensure_writable_dir(directory, option="directory")
    project_dir = directory / check_project_name(project_name)
    summary_path = summary_path_for(directory, project_name)
    if overwrite:
        if distributed is not None and not distributed.is_chief:
            raise InputError("overwrite=True is for the chief only: a worker joins the chief's project. Remove "
                             "overwrite from the workers' call.")
        if project_dir.exists():
            shutil.rmtree(project_dir)
        summary_path.unlink(missing_ok=True)
    return project_dir, summary_path


def finish_search(tuner, *, mode, label, objective, direction, project_dir, summary_path, distributed, base_summary,
                  best_config_of):
    """Read the trials, write the summary (not on a worker), build the :class:`SearchResult` and raise
    ``SearchFailedError`` when no trial completed."""
    worker = distributed is not None and not distributed.is_chief
    if worker:
        # The chief stops serving once the last worker has left: a worker reads only what it recorded.
        records = tuner.session_records
        stop_reason = None
    else:
        oracle = tuner.oracle
        records = trial_records(oracle.trials.values(), project_dir, objective=objective,
                                tuner_ids=oracle.trial_tuner_ids)
        stop_reason = oracle.stop_reason
    completed = [r for r in records if r["status"] == "COMPLETED" and r["objective"] is not None]
    best = None
    if completed:
        pick = max if direction == "max" else min
        best = pick(completed, key=lambda r: r["objective"])
    best_config = best_config_of(best["hyperparameters"]) if best else None
    summary = {
        **base_summary,
        "objective": {"name": objective, "direction": direction},
        "project": str(project_dir),
        "counts": count_statuses(records),
        "stopped_early": stop_reason,
        "best": None if best is None else {
            "trial_id": best["trial_id"], "objective": best["objective"],
            "hyperparameters": best["hyperparameters"],
            "config": best_config.to_dict() if hasattr(best_config, "to_dict") else best_config,
        },
        "this_run": {"role": "local" if distributed is None else distributed.role,
                     "tuner_id": tuner.tuner_id, "trials_run": list(tuner.session_trials)},
        "trials": records,
    }
    written = None
    if not worker:
        written = write_summary(summary_path, summary)
        if stop_reason:
            status(f"{label}: {stop_reason}")
    result = SearchResult(
        mode=mode, objective=objective, direction=direction,
        best_trial_id=best["trial_id"] if best else None, best_objective=best["objective"] if best else None,
        best_hyperparameters=dict(best["hyperparameters"]) if best else {}, best_config=best_config,
        trials=trials_frame(records, objective), summary=summary, summary_path=written, project_dir=project_dir,
    )
    if not worker or records:
        raise_if_all_failed(records, project_dir, stop_reason=stop_reason, label=label)
    return result


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
    max_trials = check_count("max_trials", max_trials)
    executions_per_trial = check_count("executions_per_trial", executions_per_trial)
    seed = check_count("seed", seed, minimum=0)
    if max_consecutive_failed_trials is not None:
        max_consecutive_failed_trials = check_count("max_consecutive_failed_trials", max_consecutive_failed_trials,
                                                    minimum=0)
    if not isinstance(verbose, (bool, numbers.Integral)):
        raise InputError(f"Expected verbose to be 0, 1 or 2; received {verbose!r}.")
    verbose = int(verbose)
    space = space if isinstance(space, SearchSpace) else SearchSpace(space if space is not None else {})
    hm = TransferHyperModel(train_cases, val_cases, loader=loader, cache=cache, base_config=base_config,
                            space=space, task=task, classes=classes, objective=objective, build=hypermodel,
                            verbose=verbose)
    hm.clock = SearchClock(max_trials)
    objective = hm.objective
    direction = objective_direction(objective)
    if hypermodel is None:
        space.validate(hm.base_config)
    max_epochs = None
    if tuner_name == "hyperband":
        searched = [k for k in ("head_epochs", "finetune_epochs") if k in space]
        if searched:
            raise InputError(f"tuner='hyperband' sets each trial's epochs itself; remove {', '.join(searched)} from "
                             "the search space (or use tuner='random' / 'bayesian').")
        config = hm.base_config
        max_epochs = config.head_epochs + (config.finetune_epochs if config.has_finetune_phase else 0)
    if cv_folds is None and hm.task in ("binary", "multiclass"):
        from ..data import encode_labels

        present = set(np.asarray(encode_labels(val_cases["label"], hm.task, hm.classes)).astype(int).tolist())
        missing = [c for i, c in enumerate(hm.classes) if i not in present]
        if missing:
            raise InputError(
                f"The validation cases hold no case of class {', '.join(map(repr, missing))}, so {objective} cannot "
                "judge the trials. Make a split with every class in validation, or use cv_folds."
            )
    distributed = resolve_distributed(distributed)
    chief = distributed is not None and distributed.is_chief
    strategy = resolve_strategy(strategy)
    folds = patient_folds(hm.pooled_cases, cv_folds, task=hm.task, seed=seed) if cv_folds is not None else None

    if not chief:  # the chief only hands out hyperparameters; the workers (or this process) train
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

    project_dir, summary_path = prepare_project(directory, project_name, overwrite=overwrite,
                                                 distributed=distributed)
    settings = {
        "mode": "fine_tune", "tuner": tuner_name, "tuner_options": dict(tuner_options or {}),
        "objective": objective, "task": hm.task, "classes": list(hm.classes), "space": space.to_dict(),
        "base_config": base_config.to_dict(), "cv_folds": cv_folds, "seed": seed,
        "executions_per_trial": executions_per_trial,
        "hypermodel": None if hypermodel is None else getattr(hypermodel, "__name__", type(hypermodel).__name__),
        "data": {"train": data_fingerprint(train_cases), "val": data_fingerprint(val_cases)},
    }
    worker = distributed is not None and not chief
    resumed = check_settings(project_dir, settings, write=not worker)
    lock = RunLock(project_dir, "search") if not worker else None
    label = "search"
    with (lock if lock is not None else contextlib.nullcontext()), distributed_environment(distributed):
        with quiet_stdout():
            oracle = make_oracle(tuner_name, objective=objective, direction=direction, max_trials=max_trials,
                                 seed=seed, max_consecutive_failed_trials=max_consecutive_failed_trials,
                                 options=tuner_options, max_epochs=max_epochs)
            search_tuner = SearchTuner(
                oracle, hm, folds=folds, distributed=distributed, verbose=verbose, objective=objective,
                directory=str(Path(directory)), project_name=project_name, executions_per_trial=executions_per_trial,
                distribution_strategy=strategy, overwrite=False,
            )
        if resumed and not worker:
            reload_project(search_tuner, project_dir)
        if verbose and resumed and not worker:
            done = sum(1 for t in search_tuner.oracle.trials.values() if t.status == "COMPLETED")
            status(f"{label}: resuming {project_dir}: {len(search_tuner.oracle.trials)} trials recorded, {done} "
                   f"completed; up to {max_trials} in all")
        with trial_tracebacks(verbose >= 2):
            search_tuner.search()

    base_summary = {
        "mode": "fine_tune", "tuner": tuner_name, "max_trials": max_trials, "cv_folds": cv_folds,
        "folds": describe_folds(hm.pooled_cases, folds),
        "executions_per_trial": executions_per_trial, "task": hm.task, "classes": list(hm.classes),
        "space": space.to_dict(), "base_config": hm.base_config.to_dict(),
        "strategy": None if strategy is None else {"name": type(strategy).__name__,
                                                   "replicas": int(strategy.num_replicas_in_sync)},
    }

    def best_config_of(values):
        return space.apply(hm.base_config, values) if hypermodel is None or len(space) else hm.base_config

    return finish_search(search_tuner, mode="fine_tune", label=label, objective=objective, direction=direction,
                         project_dir=project_dir, summary_path=summary_path, distributed=distributed,
                         base_summary=base_summary, best_config_of=best_config_of)
