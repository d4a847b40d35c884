"""Running a recipe end to end, up to (and not including) the sealed test set, as named steps.

``run_recipe`` is what ``tl-radiology run`` does; ``search_recipe`` is ``tl-radiology search``. The steps:

1. **Prepare** (:func:`_prepare`), before anything is written: the recipe is resolved with its ``--set``
   overrides, and every early check runs (weights files available offline, all named at once; a new split's
   manifest read and validated; the loaded image size against every backbone; the distributed setting).
2. **Split** (:func:`_split`), holding the run-directory lock: a new patient-level split seals the test set, or
   the existing one is checked against the recipe (a disagreeing recipe is refused, naming the field).
3. **Context** (:func:`_context`): task, classes, train and validation cases, the recipe's loader, the case cache.
4. **Record** (:func:`_record`): the run is refused if ``evaluate`` has used its test set, or if a started search
   would change; ``recipe.json`` (and the user's recipe file, for later commands) are written.
5. **Search** (:func:`~tl_radiology.run._search.search_step`): resumable; a finished trial is never trained again.
6. **Final training** (:func:`_final_model`) from the best configuration, unless the same search already gave it.
7. **Finalisation on validation**: the threshold, ``val_metrics.json``, Grad-CAM of validation cases.

The search and training steps (``_search``, ``_final``) import TensorFlow; they are imported when a step runs,
so that ``import tl_radiology`` stays cheap.

Then it stops: the sealed test set is opened only by ``tl-radiology evaluate``. Running the same command again
on a finished run does nothing but report it; after ``evaluate`` has used the test set, training another model
in the same run directory is refused (it would make the test set a validation set).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from .._atomic import RunLock, atomic_write_json, ensure_writable_dir
from .._errors import InputError, RunDirError
from .._progress import status
from ..data import CaseCache, RunDir
from ..evaluation import record_recipe_file
from ..recipe import Recipe
from ..training import TrainedModel
from ._context import (
    check_loaded_shape,
    check_weights,
    describe_change,
    previous_recipe,
    check_search_settings,
    check_validation_cases,
    resolve_distributed,
    resolve_recipe,
)
from ._result import FINAL_WORK_DIR, RECIPE_JSON, RunResult
from ._split import (
    check_existing_split,
    check_not_evaluated,
    make_split,
    read_manifest,
    split_counts,
    wait_for_split,
)

__all__ = ["run_recipe", "search_recipe"]

#: How long a distributed worker waits for the chief to make the split and write recipe.json.
WORKER_WAIT_SECONDS = 300.0


@dataclasses.dataclass
class _Run:
    """Everything the steps share, filled in as they go."""

    run: RunDir
    recipe: Recipe
    source: Any  # the recipe as the user gave it (a name, a file, a Recipe)
    manifest: Any
    cache: Any
    restart_search: bool
    distributed: Any
    strategy: Any
    verbose: int
    final: bool
    role: str
    recipe_arg: str | None
    table: Any = None
    split_state: str = "existing"
    task: str | None = None
    classes: list | None = None
    train: Any = None
    val: Any = None
    loader: Any = None
    case_cache: CaseCache | None = None

    @property
    def worker(self) -> bool:
        return self.role == "worker"


def _prepare(recipe, manifest, out, *, overrides, cache, restart_search, distributed, strategy, verbose,
             final) -> _Run:
    """Resolve the recipe and run every check that needs nothing written (step 1)."""
    recipe_arg = str(recipe) if isinstance(recipe, (str, Path)) and not overrides else None
    source = recipe
    recipe = resolve_recipe(recipe, overrides)
    distributed = resolve_distributed(distributed, recipe)
    check_weights(recipe)
    if not isinstance(verbose, (bool, int)):
        raise InputError(f"Expected verbose to be 0, 1 or 2; received {verbose!r}.")
    role = "local" if distributed is None else distributed.role
    if role == "worker" and restart_search:
        raise InputError("--restart-search is for the chief (or a search in one process); a worker joins the "
                         "chief's search.")
    state = _Run(run=RunDir(Path(out)), recipe=recipe, source=source, manifest=manifest, cache=cache,
                 restart_search=restart_search, distributed=distributed, strategy=strategy, verbose=int(verbose),
                 final=final, role=role, recipe_arg=recipe_arg)
    check_search_settings(recipe)
    if not state.worker and not state.run.has_split():
        state.table = read_manifest(state.run, recipe, manifest)
        check_validation_cases(recipe, state.table)
        check_loaded_shape(recipe, recipe.loader(), state.table.cases)  # before anything is written
    return state


def _split(state: _Run) -> None:
    """Make the split and seal the test set, or check the existing one against the recipe (step 2)."""
    run, recipe = state.run, state.recipe
    if state.worker:
        wait_for_split(run, WORKER_WAIT_SECONDS)
        previous = previous_recipe(run.path)
        changed = recipe.differences(previous, list(recipe.search_fields))
        if changed:
            raise RunDirError(
                f"This worker's recipe differs from the chief's {run.path / RECIPE_JSON} "
                f"({describe_change(previous, recipe, changed)}). Start every process with the same recipe and "
                "--set options.")
        check_existing_split(run, recipe, None)
    elif run.has_split():
        check_existing_split(run, recipe, state.manifest)
    else:
        table = state.table if state.table is not None else read_manifest(run, recipe, state.manifest)
        made = make_split(run, recipe, table)
        state.split_state = "created" if made in ("created", "resealed") else "existing"


def _context(state: _Run) -> None:
    """Task, classes, the train and validation cases, the loader and the case cache (step 3)."""
    run, recipe = state.run, state.recipe
    info = run.info
    state.task = info.get("task")
    state.classes = list(info.get("classes") or []) or None
    if recipe.mode == "features" and state.task not in ("binary", "multiclass"):
        raise InputError(f"Recipe {recipe.name!r}: mode='features' feeds classical classifiers (binary or "
                         f"multiclass); the run's task is {state.task}. Use mode=finetune.")
    state.train, state.val = run.cases("train"), run.cases("val")
    if len(state.val) == 0 and recipe.cv_folds is None:
        raise InputError(f"Run directory {run.path} has no validation cases, so nothing can judge the search, stop "
                         "training early or choose the threshold. Split with val_fraction > 0.")
    state.loader = recipe.loader()
    if not state.worker and state.split_state == "existing":
        check_loaded_shape(recipe, state.loader, state.val if len(state.val) else state.train)
    state.case_cache = CaseCache(Path(state.cache) if state.cache is not None else run.path / "cache")


def _reuse(state: _Run, result: RunResult) -> bool:
    """Whether the final model and its validation results are already there for this recipe and search."""
    from ._final import up_to_date  # deferred: _final and _search import TensorFlow (see the module docstring)
    from ._search import read_searches

    run, recipe = state.run, state.recipe
    if not state.final or state.restart_search or not up_to_date(run, recipe):
        return False
    status("run: the final model and its validation results are up to date; nothing to train")
    result.search = read_searches(run, recipe)
    result.trained = TrainedModel.load(run.path)
    result.validation = json.loads((run.path / "val_metrics.json").read_text(encoding="utf-8"))
    result.up_to_date = True
    return True


def _record(state: _Run, previous: Recipe | None) -> None:
    """Refuse a run after the test set was used or a changed started search; write recipe.json (step 4)."""
    from ._search import check_search_change  # deferred: it imports TensorFlow

    run, recipe = state.run, state.recipe
    check_not_evaluated(run, "Searching or training")
    check_search_change(run, recipe, previous, state.restart_search)
    atomic_write_json(run.path / RECIPE_JSON, recipe.to_dict())
    record_recipe_file(run.path, state.source)  # later commands (explain) import the user's recipe file again


def _final_model(state: _Run, search):
    """The final model of this search: reused if the same search and data already gave it, else trained (step 6)."""
    from ._final import best_repr, final_key, model_record, train_final  # deferred: it imports TensorFlow

    run, recipe = state.run, state.recipe
    best = best_repr(recipe, search)
    key = final_key(recipe, state.loader, best, state.task, state.classes, state.train, state.val)
    for name in ("val_metrics.json", "val_predictions.csv"):
        (run.path / name).unlink(missing_ok=True)
    record = model_record(run)
    if record is not None and (record.get("training_config") or {}).get("run_final_key") == key:
        status("run: the final model of this search is already trained; reusing it")
        return TrainedModel.load(run.path)
    trained = train_final(run, recipe, search, state.train, state.val, state.task, state.classes, state.loader,
                          state.case_cache, state.verbose)
    shutil.rmtree(run.path / "explain", ignore_errors=True)  # overlays of an earlier model
    trained.training_config["run_final_key"] = key
    trained.save(run.path)
    shutil.rmtree(run.path / FINAL_WORK_DIR, ignore_errors=True)
    return trained


def _steps(state: _Run) -> RunResult:
    """Steps 2 to 7, holding the run-directory lock (a worker holds none: it only adds trial folders)."""
    from ._final import finalise_on_validation, finalize_key  # deferred: _final and _search import TensorFlow
    from ._search import search_step

    run, recipe = state.run, state.recipe
    previous = previous_recipe(run.path) if (run.path / RECIPE_JSON).is_file() else None
    _split(state)
    _context(state)
    result = RunResult(run_dir=run.path, recipe=recipe, split_state=state.split_state,
                       split_counts=split_counts(run), role=state.role, recipe_arg=state.recipe_arg)
    if _reuse(state, result):
        return result
    if not state.worker:
        _record(state, previous)
    result.search = search_step(run, recipe, state.train, state.val, state.task, state.classes, state.loader,
                                state.case_cache, restart=state.restart_search, distributed=state.distributed,
                                strategy=state.strategy, verbose=state.verbose)
    if not state.final:
        return result
    trained = _final_model(state, result.search)
    trained.training_config["run_recipe_fingerprint"] = recipe.fingerprint(exclude=("description",))
    trained.training_config["run_finalize_key"] = finalize_key(recipe)
    if recipe.ordinal:
        trained.training_config["ordinal"] = True
    result.validation = finalise_on_validation(run, recipe, trained, state.case_cache)
    result.trained = trained
    status(f"run: done; the test set of {run.path} is still sealed")
    return result


def _execute(recipe, manifest, out, **options) -> RunResult:
    state = _prepare(recipe, manifest, out, **options)
    path = state.run.path
    created = not state.worker and not path.exists()
    if state.worker:
        lock = contextlib.nullcontext()  # the chief holds the run directory; workers only add trial folders
    else:
        ensure_writable_dir(path)
        lock = RunLock(path, "run" if state.final else "search")
    try:
        with lock:
            return _steps(state)
    except BaseException:
        if created and not state.run.has_split():
            _remove_empty_run_dir(path)  # refused before the split: leave no folder behind
        raise


def _remove_empty_run_dir(path: Path) -> None:
    """Remove a run directory this command created if it holds nothing but the lock file."""
    try:
        if {p.name for p in path.iterdir()} <= {".lock"}:
            (path / ".lock").unlink(missing_ok=True)
            path.rmdir()
    except OSError:
        pass


def run_recipe(recipe, manifest=None, out=None, *, overrides=None, cache=None, restart_search: bool = False,
               strategy=None, verbose: int = 1) -> RunResult:
    """Run a recipe up to the sealed test set: split, search, final training, validation finalisation.

    See the module docstring for the steps. Nothing here opens the sealed test set; afterwards run
    ``tl-radiology evaluate OUT`` (``evaluation.evaluate_run``) once, and ``tl-radiology report OUT``.

    Args:
        recipe: a :class:`Recipe`, a prebuilt name (``"chest_xray"``), a recipe ``.py`` file or a ``recipe.json``.
        manifest: the manifest CSV; needed when ``out`` has no split yet (otherwise checked against the split).
        out: the run directory.
        overrides: recipe fields to change, ``{"dropout": "0.3", "image_columns": "native,arterial"}`` (text is
            parsed as ``--set`` does; other values are used as given).
        cache: the case cache folder (default ``OUT/cache``); share one between runs on the same images.
        restart_search: discard the search project(s) and start the search over.
        strategy: ``"mirrored"`` or a ``tf.distribute.Strategy`` for each trial and the final training's search.
        verbose: 0 silent, 1 progress lines (standard error), 2 also a line per epoch inside each trial.

    Returns:
        A :class:`RunResult` (``result.format()`` is what ``tl-radiology run`` prints).

    Raises:
        InputError / OptionError: a bad recipe or override (named), a bad manifest, a run directory whose split or
            search disagrees with the recipe.
        RunDirError: the run directory is busy, or its test set was already used by ``evaluate``.
        WeightsNotAvailableError: ImageNet weights asked for but not available offline.
        SearchFailedError: no trial of the search completed.

    Example:
        >>> result = run_recipe("liver_lesion_triphasic_ct", "phantoms/manifest.csv", "runs/liver",
        ...                     overrides={"weights": "none", "input_size": "64", "max_trials": "3"})
        ... # doctest: +SKIP
        >>> print(result.format())  # doctest: +SKIP
    """
    if out is None:
        raise InputError("run_recipe needs out= (the run directory, --out DIR).")
    return _execute(recipe, manifest, out, overrides=overrides, cache=cache, restart_search=restart_search,
                    distributed=None, strategy=strategy, verbose=verbose, final=True)


def search_recipe(recipe, manifest=None, out=None, *, overrides=None, cache=None, restart_search: bool = False,
                  distributed=None, strategy=None, verbose: int = 1) -> RunResult:
    """Split (unless done) and search only: no final training. ``run_recipe`` on the same ``out`` later reuses
    the finished search and only trains the final model.

    With ``distributed`` (a :class:`~tl_radiology.search.DistributedConfig`), this process is keras-tuner's chief
    (it makes the split, writes ``recipe.json``, serves the oracle and writes ``search_summary.json`` counting
    every trial once) or a worker (it waits for the chief's split, checks its recipe against the chief's
    ``recipe.json`` and runs trials in the shared project). Start every process with the same recipe and
    overrides on the same ``out`` (a shared folder across machines).

    Args:
        recipe, manifest, out, overrides, cache, restart_search, strategy, verbose: as for :func:`run_recipe`.
        distributed: ``None`` (one process), a ``DistributedConfig``, or its dict.

    Returns:
        A :class:`RunResult` with ``search`` set and no model.

    Example:
        >>> from tl_radiology.search import DistributedConfig
        >>> search_recipe("chest_xray", "data/manifest.csv", "runs/cxr",
        ...               distributed=DistributedConfig("chief", "10.0.0.5:8000"))  # doctest: +SKIP
    """
    if out is None:
        raise InputError("search_recipe needs out= (the run directory, --out DIR).")
    return _execute(recipe, manifest, out, overrides=overrides, cache=cache, restart_search=restart_search,
                    distributed=distributed, strategy=strategy, verbose=verbose, final=False)
