"""``TransferHyperModel``: keras-tuner's HyperModel for two-phase fine-tuning, holding its own data.

``build(hp)`` is :func:`~tl_radiology.training.build_for_config` on ``base_config.replace(**sampled values)``;
``fit(hp, model)`` runs both fine-tuning phases (:func:`~tl_radiology.training.fit_two_phases`) inside the trial
and returns the best epoch's validation metrics, which is what keras-tuner records. Because ``batch_size``,
``augmentation`` and ``input_size`` may be hyperparameters, each trial builds its own ``tf.data`` sets from the
cases with ``make_dataset``; the case cache makes that cheap (cases are decoded once, then read back).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
import numpy as np
import pandas as pd

import keras_tuner

from .._errors import InputError
from .._options import look_up_option
from ..config import TASKS
from ..models import TaskSpec
from ..training import FineTuneConfig
from .. import _progress
from ._folds import label_text, pool_cases
from ._progress import TrialEpochProgress
from ._space import SearchSpace

__all__ = ["TransferHyperModel", "objective_direction", "available_objectives", "hyperband_schedule",
           "infer_classes", "TASKS"]

#: Validation metrics a fine-tuned model reports (TaskSpec's metrics with ``val_``), and their directions.
_DIRECTIONS = {"val_loss": "min", "val_accuracy": "max", "val_auc": "max", "val_mae": "min", "val_rmse": "min"}


def available_objectives(task: str) -> tuple[str, ...]:
    """The objectives a fine-tuning search can optimise for ``task`` (validation metrics only)."""
    if task == "regression":
        return ("val_loss", "val_mae", "val_rmse")
    return ("val_auc", "val_loss", "val_accuracy")


def objective_direction(name: str) -> str:
    """``"max"`` or ``"min"`` for one of the validation metrics."""
    return _DIRECTIONS[name]


def default_objective(task: str) -> str:
    return "val_loss" if task == "regression" else "val_auc"


def infer_classes(labels, task: str) -> tuple[str, ...]:
    """Class names in index order from labels (numerically when all are numbers, else as text)."""
    if task == "regression":
        return ()
    names = set()
    for value in labels:
        text = label_text(value)
        names.update(p.strip() for p in text.split("|") if p.strip()) if task == "multilabel" else names.add(text)
    try:
        numbers = {n: float(n) for n in names}
        return tuple(sorted(names, key=lambda n: (numbers[n], n)))
    except ValueError:
        return tuple(sorted(names))


def hyperband_schedule(config, budget: int):
    """Map Hyperband's epoch budget of a trial onto the two-phase schedule of ``config``.

    The budget is the trial's total number of epochs (Hyperband's ``tuner/epochs``); it is split between the
    phases in the proportion of the full schedule, head first: ``head = ceil(head_epochs * budget / total)``
    (at least 1 when the schedule has a head phase), the rest fine-tuning. A budget of the full schedule gives the
    full schedule back.

    Example:
        >>> from tl_radiology.training import FineTuneConfig
        >>> c = hyperband_schedule(FineTuneConfig(weights=None, head_epochs=2, finetune_epochs=4), 3)
        >>> c.head_epochs, c.finetune_epochs
        (1, 2)
    """
    head, finetune = config.head_epochs, (config.finetune_epochs if config.has_finetune_phase else 0)
    total = head + finetune
    budget = max(1, min(int(budget), total))
    new_head = min(head, max(1 if head else 0, math.ceil(head * budget / total)))
    return config.replace(head_epochs=new_head, finetune_epochs=budget - new_head if finetune else 0)


@dataclass
class TrialFit:
    """What one training run inside a trial gave: the metrics for the oracle and what the tuner records."""

    metrics: dict
    history: pd.DataFrame | None
    replicas: int
    epochs: dict


class TransferHyperModel(keras_tuner.HyperModel):
    """A keras-tuner HyperModel that fine-tunes a backbone in two phases on cases it holds.

    ``build(hp)``: the trial's configuration is ``base_config.replace(**space values)`` (see
    :meth:`trial_config`) and the network is ``build_for_config`` of it. ``fit(hp, model)``: builds the trial's
    training and validation sets with ``make_dataset`` (the trial's ``batch_size``; augmentation and class
    weights are applied by ``fit_two_phases`` from the configuration), trains both phases and returns the best
    epoch's validation metrics (``{"val_auc": ..., "val_loss": ..., ...}``), the best epoch being chosen on the
    search objective.

    **Input size as a hyperparameter.** The cases are cached at the loader's size (the recipe's input size). A
    trial whose ``input_size`` differs is fed the cached images resized to ``input_size x input_size`` by
    ``tf.image.resize`` (bilinear, antialiased, clipped to [0, 1]) in that trial's input pipeline, and its model
    is built for that size; the best configuration then names the size the final model is trained at (resize in
    the loader then). A larger size only interpolates: it adds no detail. Only a searched ``input_size`` is
    resampled; a ``base_config.input_size`` that disagrees with the cached cases is refused, as in training.

    **Your own model.** ``build`` may be a ``build(hp)`` function or a ``keras_tuner.HyperModel`` (as keras-tuner's
    ``get_hypermodel`` accepts): it builds the network instead of ``build_for_config``. A function's model must
    come from ``build_model`` / ``build_for_config`` (the two phases unfreeze its ``"backbone"`` layer). A
    HyperModel that overrides ``fit`` is called as ``fit(hp, model, train, validation_data=val,
    callbacks=[...])`` with the trial's ``tf.data`` sets, and returns a History, a metrics dict or a number.

    Args:
        train_cases: the training case table (``RunDir(...).cases("train")``).
        val_cases: the validation case table. There is no test data here, by design.
        loader: the ``CaseLoader``.
        cache: a ``CaseCache`` (recommended) or ``None`` (every batch is decoded from the files).
        base_config: the ``FineTuneConfig`` every trial starts from.
        space: a :class:`SearchSpace` or its dict (default: empty, the base configuration only).
        task: ``"binary"``, ``"multiclass"``, ``"multilabel"`` or ``"regression"``.
        classes: class names in index order (``Manifest.classes``); default: from the labels.
        objective: the validation metric trials are judged on (default ``"val_auc"``, ``"val_loss"`` for
            regression); it is also the configuration's ``monitor`` unless ``base_config.monitor`` is set.
        build: a ``build(hp)`` function or a ``keras_tuner.HyperModel`` to build the network instead.
        verbose: 2 prints a line per epoch; less prints nothing.

    Example:
        >>> hypermodel = TransferHyperModel(run.cases("train"), run.cases("val"), loader=loader, cache=cache,
        ...                                 base_config=FineTuneConfig(weights=None), task="binary",
        ...                                 space={"dropout": [0.0, 0.5]})  # doctest: +SKIP
        >>> tuner = keras_tuner.RandomSearch(hypermodel, objective="val_auc", max_trials=3)  # doctest: +SKIP
        >>> tuner.search()  # doctest: +SKIP
    """

    def __init__(self, train_cases, val_cases, *, loader, cache, base_config, space=None, task, classes=None,
                 objective=None, build=None, verbose=0, name="transfer"):
        super().__init__(name=name)
        # deferred: the data part (pydicom, scikit-image) loads when a hypermodel is made
        from ..data import CaseCache, CaseLoader

        for what, cases in (("train_cases", train_cases), ("val_cases", val_cases)):
            if not isinstance(cases, pd.DataFrame):
                raise InputError(f"Expected {what} to be a case table (a pandas DataFrame from RunDir(...).cases"
                                 f"(split)); received {type(cases).__name__}.")
            if len(cases) == 0:
                raise InputError(f"{what} is empty; the search needs training and validation cases.")
        if not isinstance(loader, CaseLoader):
            raise InputError(f"Expected loader to be a tl_radiology.data.CaseLoader; received {type(loader).__name__}.")
        if cache is not None and not isinstance(cache, CaseCache):
            raise InputError(f"Expected cache to be a tl_radiology.data.CaseCache or None; received "
                             f"{type(cache).__name__}.")
        if not isinstance(base_config, FineTuneConfig):
            raise InputError(f"Expected base_config to be a FineTuneConfig; received {type(base_config).__name__}.")
        self.task = look_up_option(task, TASKS, what="task")
        self.train_cases = train_cases
        self.val_cases = val_cases
        self.loader = loader
        self.cache = cache
        self.space = space if isinstance(space, SearchSpace) else SearchSpace(space or {})
        self.classes = tuple(classes) if classes is not None else infer_classes(
            pd.concat([train_cases["label"], val_cases["label"]]), self.task)
        if self.task == "binary" and len(self.classes) != 2:
            raise InputError(f"task='binary' needs 2 classes; the labels give {len(self.classes)}: "
                             f"{', '.join(self.classes)}. Pass classes=manifest.classes or task='multiclass'.")
        objective = objective or default_objective(self.task)
        self.objective = look_up_option(objective, available_objectives(self.task), what="objective",
                                        fix="The search judges trials on validation metrics only.")
        if base_config.monitor is None:
            base_config = base_config.replace(monitor=self.objective)
        self.base_config = base_config
        self.verbose = int(verbose)
        self.clock = None  # a SearchClock, set by run_search (for the first ETA after the first epoch)
        self.user_hypermodel = None
        if build is not None:
            if isinstance(build, keras_tuner.HyperModel):
                self.user_hypermodel = build
            elif callable(build):
                self.user_hypermodel = _FunctionHyperModel(build)
            else:
                raise InputError("Expected build to be a build(hp) function or a keras_tuner.HyperModel; received "
                                 f"{type(build).__name__}.")
        self._data_shape = None
        self._pooled = None

    # ------------------------------------------------------------------------------------------------ facts
    @property
    def task_spec(self):
        if self.task == "binary":
            return TaskSpec("binary")
        if self.task == "regression":
            return TaskSpec("regression", 1)
        return TaskSpec(self.task, len(self.classes))

    @property
    def pooled_cases(self) -> pd.DataFrame:
        """Train and validation cases in one table (for cross-validation)."""
        if self._pooled is None:
            self._pooled = pool_cases(self.train_cases, self.val_cases)
        return self._pooled

    @property
    def user_fit(self) -> bool:
        """Whether a user HyperModel trains the network itself (it overrides ``fit``)."""
        hm = self.user_hypermodel
        return hm is not None and type(hm).fit is not keras_tuner.HyperModel.fit

    def data_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of the loaded (cached) cases."""
        if self._data_shape is None:
            with _quiet(self.verbose < 2):
                dataset = self._make_dataset(self.val_cases, batch_size=1, shuffle=False, seed=0)
            self._data_shape = tuple(int(v) for v in dataset.element_spec[0].shape[1:])
        return self._data_shape

    def model_shape(self, config) -> tuple[int, int, int]:
        """The input shape of a trial's model: the data's, or ``input_size`` when the space searches it."""
        height, width, channels = self.data_shape()
        if "input_size" in self.space and config.input_size is not None:
            return (config.input_size, config.input_size, channels)
        return (height, width, channels)

    # ------------------------------------------------------------------------------------------------ keras-tuner
    def declare_hyperparameters(self, hp):
        self.space.declare(hp)
        if self.user_hypermodel is not None:
            self.user_hypermodel.declare_hyperparameters(hp)

    def trial_config(self, hp, *, execution: int = 0):
        """The FineTuneConfig of a trial: ``base_config`` with the space's values from ``hp``.

        ``execution`` (0, 1, ... for keras-tuner's ``executions_per_trial``) is added to the seed, so repeated
        executions start from different initialisations. Under Hyperband, the trial's epoch budget
        (``tuner/epochs``) is spread over the two phases by :func:`hyperband_schedule`.
        """
        config = self.base_config.replace(**self.space.declare(hp))
        if execution:
            config = config.replace(seed=config.seed + int(execution))
        budget = getattr(hp, "values", {}).get("tuner/epochs")
        if budget:
            config = hyperband_schedule(config, budget)
        return config

    def build(self, hp):
        """Build the network of the trial ``hp`` describes (uncompiled)."""
        return self.build_config(self.trial_config(hp), hp)

    def build_config(self, config, hp):
        """Build the network for a trial configuration (``build(hp)`` of a user's model, if given)."""
        if self.user_hypermodel is not None:
            return self.user_hypermodel.build(hp)
        from ..training import build_for_config  # deferred: fine-tuning brings the data part (pydicom, scikit-image)

        return build_for_config(config, self.task_spec, self.model_shape(config))

    def fit(self, hp, model, *args, callbacks=None, fold=None, **kwargs):
        """Train ``model`` in two phases on the trial's data; return the best epoch's validation metrics.

        keras-tuner's own tuners call this; positional data are refused (the hypermodel holds its cases).
        ``epochs`` / ``initial_epoch`` (passed by ``keras_tuner.Hyperband``) and ``verbose`` are ignored: the
        schedule comes from the trial's configuration.
        """
        if args:
            raise TypeError("TransferHyperModel holds its own cases: call tuner.search() without data arguments.")
        unknown = sorted(set(kwargs) - {"epochs", "initial_epoch", "verbose"})
        if unknown:
            raise TypeError(f"TransferHyperModel.fit() got unexpected arguments {unknown}.")
        return self.fit_config(self.trial_config(hp), hp, model, fold=fold, callbacks=callbacks or ()).metrics

    # ------------------------------------------------------------------------------------------------ data
    def _make_dataset(self, cases, *, batch_size, shuffle, seed):
        from ..data import make_dataset  # deferred, as in __init__

        return make_dataset(cases, self.loader, cache=self.cache, task=self.task, classes=self.classes or None,
                            batch_size=batch_size, shuffle=shuffle, seed=seed)

    def fold_cases(self, fold=None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The (train, validation) cases of a fold (positions into :attr:`pooled_cases`), or the given split."""
        if fold is None:
            return self.train_cases, self.val_cases
        train_index, val_index = fold
        pooled = self.pooled_cases
        return pooled.iloc[np.asarray(train_index)], pooled.iloc[np.asarray(val_index)]

    def datasets(self, config, fold=None):
        """The trial's ``tf.data`` training set (shuffled with the trial's seed) and validation set."""
        train_cases, val_cases = self.fold_cases(fold)
        with _quiet(self.verbose < 2):
            train = self._make_dataset(train_cases, batch_size=config.batch_size, shuffle=True, seed=config.seed)
            val = self._make_dataset(val_cases, batch_size=config.batch_size, shuffle=False, seed=config.seed)
        shape = self.model_shape(config)
        if shape[:2] != self.data_shape()[:2]:
            train, val = _resized(train, shape[:2]), _resized(val, shape[:2])
        return train, val

    # ------------------------------------------------------------------------------------------------ training
    def fit_config(self, config, hp, model, *, fold=None, callbacks=(), strategy=None) -> TrialFit:
        """Train a built model for a trial configuration on the trial's data (one fold, one execution)."""
        train, val = self.datasets(config, fold)
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        replicas = int(getattr(getattr(model, "distribute_strategy", None), "num_replicas_in_sync", 1) or 1)
        if self.user_fit:
            with scope:
                outcome = self.user_hypermodel.fit(hp, model, train, validation_data=val, callbacks=list(callbacks))
            return TrialFit(metrics=_metrics_of(outcome, self.objective), history=None, replicas=replicas,
                            epochs={})
        from ..training import fit_two_phases  # deferred, as in build_config

        if self.verbose >= 1:  # the trial's epochs with an ETA (a live bar in a notebook)
            total = config.head_epochs + (config.finetune_epochs if config.has_finetune_phase else 0)
            callbacks = [*callbacks, TrialEpochProgress(total, self.clock)]
        with scope:
            result = fit_two_phases(model, train, val, config, task=self.task_spec, classes=self.classes or None,
                                    callbacks=list(callbacks), verbose=self.verbose >= 2)
        metrics = result.best_metrics()
        if self.objective not in metrics:
            raise InputError(
                f"The trial recorded no finite {self.objective} (recorded: {', '.join(sorted(metrics)) or 'none'}); "
                "with a tiny validation set AUC is undefined when it holds one class only."
            )
        phases = result.history["phase"].value_counts().to_dict() if len(result.history) else {}
        epochs = {"head": int(phases.get("head", 0)), "finetune": int(phases.get("finetune", 0)),
                  "best_epoch": result.best_epoch}
        return TrialFit(metrics=metrics, history=result.history, replicas=replicas, epochs=epochs)


class _FunctionHyperModel(keras_tuner.HyperModel):
    """A user's ``build(hp)`` function as a HyperModel (keras-tuner's ``get_hypermodel`` does the same)."""

    def __init__(self, function):
        super().__init__(name=getattr(function, "__name__", "build"))
        self.function = function

    def build(self, hp):
        return self.function(hp)


@contextlib.contextmanager
def _quiet(quiet: bool):
    """Silence the pipeline's progress lines while a trial builds its data sets (they would repeat each trial)."""
    if not quiet:
        yield
        return
    before = _progress.is_quiet()
    _progress.set_quiet(True)
    try:
        yield
    finally:
        _progress.set_quiet(before)


def _resized(dataset, size):
    import tensorflow as tf  # deferred: TensorFlow, only to resize a data set

    size = tuple(int(s) for s in size)

    def resize(x, *rest):
        x = tf.image.resize(x, size, method="bilinear", antialias=True)
        return (tf.clip_by_value(x, 0.0, 1.0), *rest)

    return dataset.map(resize, num_parallel_calls=tf.data.AUTOTUNE)


def _metrics_of(outcome, objective: str) -> dict:
    """A user HyperModel's ``fit`` result (History, dict or number) as ``{metric: value}``, best epoch first."""
    if isinstance(outcome, dict):
        return {k: float(v) for k, v in outcome.items()}
    if isinstance(outcome, (int, float, np.floating)):
        return {objective: float(outcome)}
    history = getattr(outcome, "history", None)
    if isinstance(history, dict) and history.get(objective):
        values = history[objective]
        finite = [i for i, v in enumerate(values) if np.isfinite(v)]
        if not finite:
            return {objective: math.nan}
        pick = max if objective_direction(objective) == "max" else min
        best = pick(finite, key=lambda i: values[i])
        return {k: float(v[best]) for k, v in history.items() if len(v) > best}
    raise InputError(
        f"The HyperModel's fit returned {type(outcome).__name__}; expected a History with {objective!r}, a dict of "
        "metrics or the objective's value."
    )
