"""The tuners and oracles behind ``run_search`` and ``feature_search``.

keras-tuner's oracles (random search, Bayesian optimisation, Hyperband) are used unchanged except for two
things, both in :class:`_OracleMixin`:

- **Consecutive failures.** keras-tuner 1.4.8 stops a search after ``max_consecutive_failed_trials`` FAILED
  trials in a row by raising ``RuntimeError`` from ``Oracle.end_trial`` -- before that trial's file and the
  oracle's state are saved, so the failed trial stays RUNNING on disk. Its check also walks the whole history
  and fires whenever *any* run of that many failures exists, so a resumed project that once stopped this way
  stops again after its next trial. Here the check counts only the trailing failures of the current session
  and stops the search by answering ``STOPPED`` to the next request for a trial (which also tells distributed
  workers to stop), after everything is saved.
- **Saving after a trial ends.** keras-tuner saves ``oracle.json`` inside ``end_trial`` before it drops the
  trial from the ongoing ones; only a local tuner saves again afterwards. A chief's project therefore kept
  finished trials as ongoing, and resuming it trained them again. The oracle saves again after ``end_trial``.
- **Who ran a trial.** The oracle records the tuner id each trial was handed to (``trial_tuner_ids``, kept in
  ``oracle.json``), so the chief's summary can say which worker ran what.

Trials are trained by :class:`SearchTuner` (fine-tuning) or the feature tuner of ``_features.py``; both write
``trial_<id>/tl_radiology_trial.json`` beside keras-tuner's ``trial.json`` (start, duration, tuner id, the error
as one line, per-fold values) and print one status line per trial.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import io
import math
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

import keras_tuner
from keras_tuner.engine.trial import Trial, TrialStatus
from keras_tuner.src import config as tuner_config

from .._atomic import atomic_write_json, atomic_write_text
from .._errors import InputError
from .._options import look_up_option
from .._progress import status
from ._distributed import serve_oracle

__all__ = ["TUNERS", "make_oracle", "SearchTuner", "RecordingMixin", "short_error", "TRIAL_INFO_FILE",
           "mean_metrics", "quiet_stdout", "trial_record", "trial_tracebacks", "reload_project",
           "release_custom_gradients"]

TRIAL_INFO_FILE = "tl_radiology_trial.json"


class _OracleMixin:
    """Failure handling per session and tuner ids per trial, on top of a keras-tuner oracle."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.trial_tuner_ids: dict[str, str] = {}
        self._session_start = 0
        self.stop_reason: str | None = None

    def reload(self):
        super().reload()
        self._session_start = len(self.end_order)

    def get_state(self):
        state = super().get_state()
        state["tl_radiology"] = {"trial_tuner_ids": dict(self.trial_tuner_ids)}
        return state

    def set_state(self, state):
        super().set_state(state)
        self.trial_tuner_ids = dict((state.get("tl_radiology") or {}).get("trial_tuner_ids", {}))

    def _check_consecutive_failures(self):
        # Replaces keras-tuner's check, which raises inside end_trial (see the module docstring).
        limit = self.max_consecutive_failed_trials
        if not limit:
            return
        trailing = 0
        for trial_id in reversed(self.end_order[self._session_start:]):
            if self.trials[trial_id].status != TrialStatus.FAILED:
                break
            trailing += 1
        if trailing >= limit and self.stop_reason is None:
            self.stop_reason = (f"stopped after {trailing} consecutive failed trials "
                                f"(max_consecutive_failed_trials={limit})")

    @keras_tuner.synchronized
    def end_trial(self, trial):
        # keras-tuner saves the oracle inside end_trial *before* it removes the trial from the ongoing ones; a
        # local tuner saves again afterwards, but a chief does not, so its oracle.json kept each worker's last
        # trial as ongoing and a resumed project trained that finished trial again. Save once more here.
        super().end_trial(trial)
        self.save()

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        if self.stop_reason is not None and tuner_id not in self.ongoing_trials:
            self.tuner_ids.discard(tuner_id)
            return Trial(self.get_space(), status=TrialStatus.STOPPED)
        trial = super().create_trial(tuner_id)
        if trial.status == TrialStatus.RUNNING:
            self.trial_tuner_ids[trial.trial_id] = tuner_id
        return trial


class _RandomOracle(_OracleMixin, keras_tuner.oracles.RandomSearchOracle):
    pass


class _BayesianOracle(_OracleMixin, keras_tuner.oracles.BayesianOptimizationOracle):
    pass


class _HyperbandOracle(_OracleMixin, keras_tuner.oracles.HyperbandOracle):
    pass


#: Tuner names -> oracle classes.
TUNERS = {"random": _RandomOracle, "bayesian": _BayesianOracle, "hyperband": _HyperbandOracle}
# Oracle arguments the search sets itself; the rest of each oracle's arguments may be given as tuner_options.
_SET_BY_SEARCH = {"self", "objective", "max_trials", "seed", "hyperparameters", "allow_new_entries",
                  "tune_new_entries", "max_retries_per_trial", "max_consecutive_failed_trials", "max_epochs"}


def tuner_option_names(tuner: str) -> list[str]:
    base = TUNERS[tuner].__mro__[2]
    return [p for p in inspect.signature(base.__init__).parameters if p not in _SET_BY_SEARCH]


def make_oracle(tuner: str, *, objective: str, direction: str, max_trials: int, seed: int,
                max_consecutive_failed_trials: int | None, options: dict | None = None, max_epochs: int | None = None):
    """Build the oracle of a tuner name (``"random"``, ``"bayesian"``, ``"hyperband"``).

    ``options`` are the oracle's own arguments (``num_initial_points``, ``alpha``, ``beta`` for Bayesian
    optimisation; ``factor``, ``hyperband_iterations`` for Hyperband), checked by name. ``max_trials`` caps the
    number of trials for Hyperband too (its brackets otherwise decide it).
    """
    name = look_up_option(tuner, list(TUNERS), what="tuner")
    options = dict(options or {})
    allowed = tuner_option_names(name)
    for key in options:
        look_up_option(key, allowed or ["(none)"], what=f"option of tuner {name!r}",
                       fix="Pass only the oracle's own arguments in tuner_options.")
    kwargs = dict(objective=keras_tuner.Objective(objective, direction), max_consecutive_failed_trials=
                  max_consecutive_failed_trials or 0,
                  # keras-tuner treats seed=0 as "no seed" (``seed or random.randint(...)``): shift by one.
                  seed=int(seed) + 1, **options)
    if name == "hyperband":
        kwargs["max_epochs"] = int(max_epochs)
    else:
        kwargs["max_trials"] = int(max_trials)
    try:
        oracle = TUNERS[name](**kwargs)
    except (TypeError, ValueError) as exc:
        raise InputError(f"tuner {name!r}: {exc}. Check tuner_options.") from None
    if name == "hyperband":
        oracle.max_trials = int(max_trials)
    oracle.verbose = 0  # keras-tuner's own display prints tables to standard output; we print status lines
    return oracle


def short_error(message: str | None) -> str | None:
    """The exception line of a keras-tuner trial message (a traceback), without the module path.

    Example:
        >>> short_error("Traceback ...\\n  File x\\ntl_radiology._errors.InputError: bad dropout")
        'InputError: bad dropout'
    """
    if not message:
        return None
    lines = [line.rstrip() for line in str(message).strip().splitlines() if line.strip()]
    start = None
    for i, line in enumerate(lines):
        if not line.startswith(" ") and re.match(r"^[A-Za-z_][\w.]*(: |$)", line) and not line.startswith(
                ("Traceback", "During handling", "The above exception")):
            start = i
    text = " ".join(lines[start:] if start is not None else lines[-1:])
    text = re.sub(r"^(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*(?::|$))", "", text)
    return text if len(text) <= 600 else text[:597] + "..."


def _finite(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def trial_record(trial, info: dict, *, objective: str, tuner_id: str | None = None) -> dict:
    """One JSON-able record of a keras-tuner trial, merged with its ``tl_radiology_trial.json`` info."""
    status = trial.status
    error = short_error(trial.message) or info.get("error")
    if status == TrialStatus.FAILED and not error:
        error = (f"{objective} was not a finite number" if info.get("status") == TrialStatus.COMPLETED else
                 "failed on a worker; see its trial_<id>/tl_radiology_trial.json")
    record = {
        "trial_id": trial.trial_id,
        "status": status,
        "objective": _finite(trial.score) if status == TrialStatus.COMPLETED else None,
        "hyperparameters": dict(trial.hyperparameters.values),
        "error": error if status != TrialStatus.COMPLETED else None,
        "tuner_id": tuner_id or info.get("tuner_id"),
        "seconds": info.get("seconds"),
        "started": info.get("started"),
        "finished": info.get("finished"),
    }
    for key in ("fold_values", "epochs", "replicas", "config"):
        if key in info:
            record[key] = info[key]
    return record


def mean_metrics(runs: list[dict]) -> dict:
    """The mean of each metric over runs (NaN values ignored; NaN when none is finite)."""
    out = {}
    for name in dict.fromkeys(k for run in runs for k in run):
        values = [float(run[name]) for run in runs if name in run and np.isfinite(run[name])]
        out[name] = float(np.mean(values)) if values else math.nan
    return out


@contextlib.contextmanager
def quiet_stdout():
    """keras-tuner prints progress with ``print``; keep standard output for the command's results."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@contextlib.contextmanager
def trial_tracebacks(show: bool):
    """keras-tuner prints every failed trial's traceback (its ``config.DEBUG`` is on by default); the status
    line and ``trial.json`` already hold it, so print it only when asked (``verbose=2``)."""
    before = tuner_config.DEBUG
    tuner_config.DEBUG = bool(show)
    try:
        yield
    finally:
        tuner_config.DEBUG = before


@contextlib.contextmanager
def release_custom_gradients():
    """Forget the gradient functions TensorFlow registered while training one network of a trial.

    Memory grew by every trial's weights and optimizer state (about 200 MB per VGG16 trial with Adam, measured)
    although the Keras session was cleared and every model freed (keras-team/keras#17458). The cause is in
    TensorFlow: each traced training step goes through ``ReplicaContext.all_reduce`` (Keras' optimizer calls it
    even with the default strategy), whose ``tf.custom_gradient`` registers a gradient function under a unique
    name in TensorFlow's global gradient registry, and nothing ever removes it; the function keeps the traced
    graph, and so the variables it captured, alive. The entries added while a network trained are removed once
    it is gone; none is used again, since every trial builds and traces new networks.
    """
    try:
        from tensorflow.python.framework import ops  # deferred: guarded, a private TensorFlow module

        registry = ops._gradient_registry._registry
    except (ImportError, AttributeError):  # a TensorFlow without this registry: nothing to release
        yield
        return
    before = set(registry)
    try:
        yield
    finally:
        for name in [k for k in list(registry) if k not in before and k.startswith("CustomGradient-")]:
            registry.pop(name, None)


def reload_project(tuner, project_dir) -> None:
    """Load the project's trials when keras-tuner did not.

    keras-tuner reloads a project only if it finds this process's own tuner file (``<tuner_id>.json``), so a
    project run by a chief and resumed in one process (or the other way round) would start counting trials from
    0 again and overwrite ``trial_0``. Reload the oracle from ``oracle.json`` in that case.
    """
    if not tuner.oracle.trials and (Path(project_dir) / "oracle.json").is_file():
        tuner.oracle.reload()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _format_values(values: dict) -> str:
    parts = []
    for name, value in values.items():
        if name.startswith("tuner/") and name != "tuner/epochs":
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        parts.append(f"{'budget' if name == 'tuner/epochs' else name}={value}")
    return ", ".join(parts) or "base configuration"


class RecordingMixin:
    """What both tuners share: the chief's serving loop, a file and a status line per trial."""

    #: set by the subclass: "search" or "feature search" (the status lines' prefix)
    label = "search"

    def _init_recording(self, *, distributed, verbose: int, objective: str):
        self._distributed = distributed
        self._verbose = int(verbose)
        self._objective_name = objective
        self._started: dict[str, float] = {}
        self._extras: dict[str, dict] = {}
        self.session_trials: list[str] = []
        self.session_records: list[dict] = []

    def search(self, *args, **kwargs):
        if self._distributed is not None and self._distributed.is_chief:
            self.save()
            if self._verbose:
                status(f"{self.label}: chief serving the oracle at {self._distributed.oracle_address}; start the "
                       "workers with the same call and role='worker'")
            serve_oracle(self.oracle, self._distributed)
            return
        super().search(*args, **kwargs)

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._started[trial.trial_id] = time.monotonic()
        self._extras[trial.trial_id] = {"started": _now()}
        if self._verbose:
            status(f"{self.label}: trial {trial.trial_id} started: {_format_values(trial.hyperparameters.values)}")

    def on_trial_end(self, trial):
        seconds = time.monotonic() - self._started.pop(trial.trial_id, time.monotonic())
        extras = self._extras.pop(trial.trial_id, {})
        info = {
            "trial_id": trial.trial_id,
            "tuner_id": self.tuner_id,
            "started": extras.pop("started", None),
            "finished": _now(),
            "seconds": round(seconds, 3),
            "status": trial.status,
            "error": short_error(trial.message),
            **extras,
        }
        atomic_write_json(Path(self.get_trial_dir(trial.trial_id)) / TRIAL_INFO_FILE, info)
        super().on_trial_end(trial)
        self.session_trials.append(trial.trial_id)
        try:
            ended = self.oracle.get_trial(trial.trial_id)
        except Exception:  # noqa: BLE001 - the tuner's own copy is the fallback
            ended = trial
        if ended.message is None and trial.message is not None:
            ended.message = trial.message  # keras-tuner's gRPC copy of a trial drops its message
        self.session_records.append(trial_record(ended, info, objective=self._objective_name,
                                                 tuner_id=self.tuner_id))
        if self._verbose:
            if ended.status == TrialStatus.COMPLETED and ended.score is not None:
                best = self.oracle.get_best_trials(1)
                best_text = f" (best so far {best[0].score:.4g})" if best and best[0].score is not None else ""
                status(f"{self.label}: trial {trial.trial_id} COMPLETED in {seconds:.0f}s: {self._objective_name} "
                       f"{ended.score:.4g}{best_text}")
            else:
                status(f"{self.label}: trial {trial.trial_id} {ended.status} in {seconds:.0f}s: "
                       f"{info['error'] or 'no finite objective'}")


class SearchTuner(RecordingMixin, keras_tuner.Tuner):
    """keras-tuner's Keras ``Tuner`` with a ``run_trial`` that trains both phases, per fold when cross-validating.

    ``run_trial`` is overridden cleanly (the pattern keras-tuner's docs give): for each fold (or the one given
    validation split) and each execution, the Keras session is cleared, the network built (under the
    ``tf.distribute`` strategy's scope, if any) and trained in two phases; the objective is the mean over
    executions, then over folds, and each fold's value is recorded in the trial as ``<objective>_fold<k>``.
    keras-tuner has no cross-validation for Keras models (keras-team/keras-tuner#139, open since 2019; only
    its ``SklearnTuner`` takes a ``cv``), so this is where it lives.

    Trials do not write keras-tuner's per-epoch weight checkpoints (tens of MB per trial for a ResNet): the
    search's product is the best configuration, which ``run_recipe`` trains in full; each trial's history is
    written to ``trial_<id>/history.csv`` instead.
    """

    def __init__(self, oracle, hypermodel, *, folds=None, distributed=None, verbose=1, objective="val_auc",
                 **kwargs):
        self._folds = folds
        self._init_recording(distributed=distributed, verbose=verbose, objective=objective)
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)

    def _populate_initial_space(self):
        # The space is declared, not discovered: no need to build a network (keras-tuner builds one here).
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        if self.hypermodel.user_hypermodel is not None:
            self.hypermodel.user_hypermodel.build(hp)  # a user's build(hp) may declare more hyperparameters
        self.oracle.update_space(hp)

    def _build_network(self, config, hp):
        import keras  # deferred: Keras, only when a trial builds a network

        keras.backend.clear_session()  # what keras-tuner does before each build: no growth from trial to trial
        gc.collect()
        with keras_tuner.engine.tuner.maybe_distribute(self.distribution_strategy):
            model = self.hypermodel.build_config(config, hp)
        if not isinstance(model, keras.Model):
            raise keras_tuner.errors.FatalTypeError(
                f"The model-building function returned {type(model).__name__}; expected a keras.Model."
            )
        return model

    def run_trial(self, trial, *args, **kwargs):
        hypermodel = self.hypermodel
        hp = trial.hyperparameters
        objective = self.oracle.objective.name
        folds = self._folds or [None]
        fold_metrics, histories, epochs, replicas, config = [], [], [], 1, None
        for k, fold in enumerate(folds):
            runs = []
            for execution in range(self.executions_per_trial):
                config = hypermodel.trial_config(hp, execution=execution)
                with release_custom_gradients():
                    model = self._build_network(config, hp)
                    fit = hypermodel.fit_config(config, hp, model, fold=fold, strategy=self.distribution_strategy)
                    del model
                runs.append(fit.metrics)
                replicas = fit.replicas
                epochs.append(fit.epochs)
                if fit.history is not None:
                    histories.append(fit.history.assign(fold=k + 1 if self._folds else None, execution=execution))
            fold_metrics.append(mean_metrics(runs))
        gc.collect()
        result = mean_metrics(fold_metrics)
        extras = self._extras.setdefault(trial.trial_id, {})
        extras.update(replicas=replicas, epochs=epochs[0] if len(epochs) == 1 else epochs,
                      config=hypermodel.trial_config(hp).to_dict())
        if self._folds:
            fold_values = [m.get(objective, math.nan) for m in fold_metrics]
            result.update({f"{objective}_fold{k + 1}": v for k, v in enumerate(fold_values)})
            extras["fold_values"] = fold_values
        if histories:
            frame = pd.concat(histories, ignore_index=True)
            if not self._folds:
                frame = frame.drop(columns=["fold"])
            buffer = io.StringIO()
            frame.to_csv(buffer, index=False, float_format="%.6g")
            atomic_write_text(Path(self.get_trial_dir(trial.trial_id)) / "history.csv", buffer.getvalue())
        value = result.get(objective, math.nan)
        if not np.isfinite(value):
            raise InputError(f"The trial's {objective} is {value} (not a finite number); see history.csv of the "
                             "trial. A validation set with one class makes AUC undefined.")
        return result
