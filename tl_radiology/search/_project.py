"""The skeleton both searches share: argument counts, the project folder (prepared, resumed, locked), the
keras-tuner run in local or chief / worker mode, and the finished summary and :class:`SearchResult`.

:func:`~tl_radiology.search.run_search` (fine-tuning) and :func:`~tl_radiology.search.feature_search` (fixed
features) differ only in what a trial does; everything around the trials is here, written once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import numbers
import re
import shutil
from pathlib import Path
from typing import Callable

import pandas as pd

from .._atomic import RunLock, ensure_writable_dir
from .._errors import InputError
from .._progress import status
from ._distributed import distributed_environment
from ._results import (SearchResult, check_settings, count_statuses, raise_if_all_failed, summary_path_for,
                       trial_records, trials_frame, write_summary)
from ._tuner import make_oracle, quiet_stdout, reload_project, trial_tracebacks

__all__ = ["check_count", "check_project_name", "data_fingerprint", "finish_search", "prepare_project",
           "conduct_search"]


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


def conduct_search(make_tuner: Callable, *, mode: str, label: str, settings: dict, tuner_name: str,
                   tuner_options, objective: str, direction: str, max_trials: int, seed: int,
                   max_consecutive_failed_trials, max_epochs=None, directory, project_name: str, overwrite: bool,
                   distributed, verbose: int, resume_note: Callable, base_summary: Callable,
                   best_config_of: Callable) -> SearchResult:
    """Run a search's trials in its project folder and return its :class:`SearchResult`.

    Prepares the project (``overwrite``), checks ``settings`` against a project being resumed (and records
    them, not on a worker), holds the project's lock (not on a worker), builds the oracle and the tuner
    (``make_tuner(oracle, directory=..., project_name=..., overwrite=False)``), reloads a resumed project,
    runs the trials under the distributed environment, then writes the summary (:func:`finish_search`).

    Args:
        make_tuner: ``(oracle, **tuner_kwargs) -> tuner``, the search's own keras-tuner tuner.
        mode, label: the summary's mode and the name of the search in status lines and the lock.
        settings: what must match when a project is resumed.
        tuner_name, tuner_options, objective, direction, max_trials, seed, max_consecutive_failed_trials,
            max_epochs: the oracle's arguments (see :func:`~tl_radiology.search.make_oracle`).
        directory, project_name, overwrite, distributed, verbose: as for :func:`~tl_radiology.search.run_search`.
        resume_note: ``tuner -> str``, what the status line of a resumed search says after the project.
        base_summary: ``() -> dict``, the search's own summary fields, asked for after the trials.
        best_config_of: ``hyperparameter values -> best configuration``.

    Returns:
        The search's :class:`SearchResult`.

    Raises:
        SearchFailedError: no trial completed.
        InputError: a project started with other settings, ``overwrite`` on a worker.
    """
    project_dir, summary_path = prepare_project(directory, project_name, overwrite=overwrite,
                                                 distributed=distributed)
    worker = distributed is not None and not distributed.is_chief
    resumed = check_settings(project_dir, settings, write=not worker)
    lock = RunLock(project_dir, label) if not worker else contextlib.nullcontext()
    with lock, distributed_environment(distributed):
        with quiet_stdout():
            oracle = make_oracle(tuner_name, objective=objective, direction=direction, max_trials=max_trials,
                                 seed=seed, max_consecutive_failed_trials=max_consecutive_failed_trials,
                                 options=tuner_options, max_epochs=max_epochs)
            search_tuner = make_tuner(oracle, directory=str(Path(directory)), project_name=project_name,
                                      overwrite=False)
        if resumed and not worker:
            reload_project(search_tuner, project_dir)
            if verbose:
                status(f"{label}: resuming {project_dir}: {resume_note(search_tuner)}")
        with trial_tracebacks(verbose >= 2):
            search_tuner.search()
    return finish_search(search_tuner, mode=mode, label=label, objective=objective, direction=direction,
                         project_dir=project_dir, summary_path=summary_path, distributed=distributed,
                         base_summary=base_summary(), best_config_of=best_config_of)
