"""``feature_search``: search backbones and scikit-learn classifiers on fixed CNN features (mode 1).

Features are computed once per backbone and reused by every trial, in memory within a process and on disk
through ``BackboneFeatures``' feature cache (``<case cache>/features/``) across processes and resumed searches,
so K trials over B backbones cost about B extractions plus K classifier fits. Trials are run by keras-tuner's
oracles exactly like the fine-tuning search (same trial records, summary, resumption and chief / worker mode).
"""

from __future__ import annotations

import gc
import math
import numbers
from pathlib import Path

import numpy as np

import keras_tuner
from keras_tuner.engine.base_tuner import BaseTuner

from .._errors import InputError
from .._options import look_up_option
from .._progress import status
from ..backbones import get_backbone
from ..config import PRECISIONS
from ..data import encode_labels, load_arrays
from ..training import CLASSIFIERS, BackboneFeatures, make_classifier
from ._distributed import resolve_distributed
from ._folds import describe_folds, patient_folds, pool_cases
from ._hypermodel import infer_classes
from ._project import check_count, conduct_search, data_fingerprint
from ._space import SearchSpace
from ._tuner import RecordingMixin, mean_metrics

__all__ = ["feature_search", "CLASSIFIER_SPACES", "FEATURE_OBJECTIVES"]

#: The parameters each classifier of ``make_classifier`` searches by default (same grammar as SearchSpace).
CLASSIFIER_SPACES = {
    "logistic_regression": {"C": {"min": 1e-4, "max": 1e2, "log": True}},
    "svm": {"C": {"min": 1e-2, "max": 1e2, "log": True}, "gamma": {"min": 1e-5, "max": 1e-1, "log": True}},
    "random_forest": {"n_estimators": {"min": 100, "max": 500, "step": 100}, "max_depth": {"min": 2, "max": 16}},
    "gradient_boosting": {"learning_rate": {"min": 0.01, "max": 0.3, "log": True},
                          "max_iter": {"min": 50, "max": 400, "step": 50}},
    "knn": {"n_neighbors": {"min": 3, "max": 31, "step": 2}},
}
#: Objectives of the feature search and their directions (AUC is macro one-vs-rest for several classes).
FEATURE_OBJECTIVES = {"val_auc": "max", "val_accuracy": "max", "val_loss": "min"}


def _allowed_types(value) -> tuple[type, ...]:
    """The plain types a classifier parameter's written values have (no dataclass field to ask)."""
    if isinstance(value, dict):
        ends = [value.get(k) for k in ("min", "max", "step") if value.get(k) is not None]
        return (int,) if ends and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in ends) \
            else (float,)
    items = value if isinstance(value, (list, tuple)) else [value]
    kinds = set()
    for item in items:
        if isinstance(item, bool):
            kinds.add(bool)
        elif item is None:
            kinds.add(type(None))
        elif isinstance(item, numbers.Integral):
            kinds.add(int)
        elif isinstance(item, numbers.Real):
            kinds.add(float)
        elif isinstance(item, str):
            kinds.add(str)
        else:
            kinds.add(object)
    if int in kinds and float in kinds:
        kinds.discard(int)
    return tuple(k for k in (str, int, float, bool, type(None)) if k in kinds) or (str,)


def _classifier_entries(classifiers) -> dict:
    """``{classifier: {param: _Entry}}`` from the ``classifiers`` argument, each parameter checked."""
    names = list(CLASSIFIERS)
    if classifiers is None:
        wanted = {name: None for name in names}
    elif isinstance(classifiers, str):
        wanted = {classifiers: None}
    elif isinstance(classifiers, dict):
        wanted = dict(classifiers)
    elif isinstance(classifiers, (list, tuple)):
        wanted = {name: None for name in classifiers}
    else:
        raise InputError(f"Expected classifiers to be a list of names or a dict name -> parameter space; received "
                         f"{type(classifiers).__name__}.")
    if not wanted:
        raise InputError("classifiers is empty; give at least one of " + ", ".join(names) + ".")
    out = {}
    for key, spec in wanted.items():
        name = look_up_option(key, names, what="classifier")
        spec = CLASSIFIER_SPACES.get(name, {}) if spec is None else spec
        if not isinstance(spec, dict):
            raise InputError(f"classifiers[{name!r}]: expected a dict of parameter -> list | range | value (or None "
                             f"for the default space); received {type(spec).__name__}.")
        entries = {}
        for param, value in spec.items():
            entry = SearchSpace._entry(f"{name}/{param}", value, _allowed_types(value))
            for candidate in entry.candidates():
                try:
                    make_classifier(name, **{param: candidate})
                except InputError as exc:
                    raise type(exc)(f"classifiers[{name!r}][{param!r}]: {exc}") from None
            entries[param] = entry
        out[name] = entries
    return out


class _FeatureHyperModel(keras_tuner.HyperModel):
    """Declares backbone, classifier and each classifier's parameters (conditional on the classifier)."""

    def __init__(self, backbones, classifiers: dict):
        super().__init__(name="features")
        self.backbones = list(backbones)
        self.classifiers = classifiers

    def build(self, hp):
        backbone = hp.Choice("backbone", self.backbones)
        classifier = hp.Choice("classifier", list(self.classifiers))
        params = {}
        for name, entries in self.classifiers.items():
            with hp.conditional_scope("classifier", [name]):
                for param, entry in entries.items():
                    value = entry.declare(hp)
                    if name == classifier:
                        params[param] = value
        return {"backbone": backbone, "classifier": classifier, "params": params}


class _FeatureBank:
    """Pooled features of the train + validation images, computed once per backbone (and cached on disk)."""

    def __init__(self, images, *, weights, input_size, adapter, pooling, cache_dir, seed, verbose,
                 precision="float32"):
        self.images = images
        self.options = {"weights": weights, "input_size": input_size, "adapter": adapter, "pooling": pooling,
                        "precision": precision}
        self.cache_dir = cache_dir
        self.seed = seed
        self.verbose = verbose
        self._features: dict[str, np.ndarray] = {}
        self.stats: dict[str, dict] = {}

    def features(self, backbone: str) -> np.ndarray:
        if backbone not in self._features:
            import keras  # deferred: Keras, only when features are computed

            keras.backend.clear_session()
            # Random weights (weights=None, for tests) are then the same in every process and run, so their
            # features are found in the disk cache again.
            keras.utils.set_random_seed(self.seed)
            # With weights from a file or "imagenet" fit builds nothing: the backbone is built at the first image
            # not in the cache, so a resumed search whose features are all cached skips the build (measured: ~4 s
            # of the 9.9 s a fully cached ResNet50 "extraction" cost, 0.94 of a real one).
            extractor = BackboneFeatures(backbone, cache_dir=self.cache_dir, **self.options).fit(self.images[:1])
            self._features[backbone] = extractor.transform(self.images)
            stats = extractor.cache_stats_
            self.stats[backbone] = {"computed": stats.misses, "from_cache": stats.hits,
                                    "backbone_calls": stats.model_calls}
            if self.verbose:
                status(f"feature search: {backbone} features of {len(self.images)} images: {stats.misses} computed, "
                       f"{stats.hits} from the cache")
            del extractor
            keras.backend.clear_session()
            gc.collect()
        return self._features[backbone]


def _probabilities(estimator, features, num_classes: int) -> np.ndarray:
    proba = np.asarray(estimator.predict_proba(features), dtype=np.float64)
    full = np.zeros((len(features), num_classes))
    full[:, np.asarray(estimator.classes_, dtype=int)] = proba  # a class missing from a training fold stays 0
    return full


def _scores(y, proba, num_classes: int) -> dict:
    from sklearn.metrics import log_loss, roc_auc_score  # deferred: scikit-learn, only to score a trial

    if num_classes == 2:
        auc = roc_auc_score(y, proba[:, 1])
    else:
        auc = roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=list(range(num_classes)))
    clipped = np.clip(proba, 1e-7, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    return {"val_auc": float(auc), "val_accuracy": float(np.mean(proba.argmax(axis=1) == y)),
            "val_loss": float(log_loss(y, clipped, labels=list(range(num_classes))))}


class _FeatureTuner(RecordingMixin, BaseTuner):
    """Runs a trial: the backbone's cached features, the classifier fitted per fold, validation scores."""

    label = "feature search"

    def __init__(self, oracle, hypermodel, *, bank, labels, splits, cross_validated, num_classes, objective,
                 distributed, verbose, **kwargs):
        self._bank = bank
        self._labels = labels
        self._splits = splits
        self._cross_validated = cross_validated
        self._num_classes = num_classes
        self._init_recording(distributed=distributed, verbose=verbose, objective=objective)
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        choice = self.hypermodel.build(trial.hyperparameters)
        features = self._bank.features(choice["backbone"])
        objective = self.oracle.objective.name
        fold_metrics = []
        for train_index, val_index in self._splits:
            estimator = make_classifier(choice["classifier"], **choice["params"])
            estimator.fit(features[train_index], self._labels[train_index])
            proba = _probabilities(estimator, features[val_index], self._num_classes)
            fold_metrics.append(_scores(self._labels[val_index], proba, self._num_classes))
        result = mean_metrics(fold_metrics)
        extras = self._extras.setdefault(trial.trial_id, {})
        extras["config"] = {"backbone": choice["backbone"], "classifier": choice["classifier"],
                            "classifier_params": choice["params"]}
        if self._cross_validated:
            values = [m[objective] for m in fold_metrics]
            result.update({f"{objective}_fold{k + 1}": v for k, v in enumerate(values)})
            extras["fold_values"] = values
        if not math.isfinite(result[objective]):
            raise InputError(f"The trial's {objective} is not a finite number.")
        return result


def _checked_arguments(tuner, task, max_trials, seed, verbose, backbones) -> tuple:
    """``feature_search``'s tuner, task, counts and backbones, checked (errors name the argument)."""
    tuner_name = look_up_option(tuner, ["random", "bayesian", "hyperband"], what="tuner")
    if tuner_name == "hyperband":
        raise InputError("tuner='hyperband' schedules epochs, and a feature search has none; use tuner='random' or "
                         "'bayesian'.")
    task = look_up_option(task, ("binary", "multiclass"), what="task of a feature search",
                          fix="Fixed features feed classifiers: multilabel and regression tasks need fine-tuning.")
    max_trials = check_count("max_trials", max_trials)
    seed = check_count("seed", seed, minimum=0)
    verbose = int(verbose)
    if isinstance(backbones, str):
        backbones = [backbones]
    if not backbones:
        raise InputError("backbones is empty; give at least one backbone name, e.g. ['resnet50'].")
    backbones = list(dict.fromkeys(get_backbone(b).name for b in backbones))
    return tuner_name, task, max_trials, seed, verbose, backbones


def _checked_objective(objective) -> tuple[str, str]:
    """The objective's name and direction (``"max"`` / ``"min"``)."""
    objective = look_up_option(objective or "val_auc", list(FEATURE_OBJECTIVES), what="objective",
                               fix="The search judges trials on validation metrics only.")
    return objective, FEATURE_OBJECTIVES[objective]


def _labels_and_splits(train_cases, val_cases, *, task, classes, objective, cv_folds, seed) -> tuple:
    """The pooled train + validation cases, their classes, encoded labels and the (train, validation) index
    splits: K patient-grouped folds, or the one validation split (which must hold every class)."""
    for what, cases in (("train_cases", train_cases), ("val_cases", val_cases)):
        if not hasattr(cases, "columns") or len(cases) == 0:
            raise InputError(f"Expected {what} to be a non-empty case table (RunDir(...).cases(split)).")
    pooled = pool_cases(train_cases, val_cases)
    classes = tuple(classes) if classes is not None else infer_classes(pooled["label"], task)
    if task == "binary" and len(classes) != 2:
        raise InputError(f"task='binary' needs 2 classes; the labels give {len(classes)}. Pass classes= or "
                         "task='multiclass'.")
    labels = np.asarray(encode_labels(pooled["label"], task, classes)).astype(np.int64)
    num_train = len(train_cases)
    if cv_folds is not None:
        splits = patient_folds(pooled, cv_folds, task=task, seed=seed)
    else:
        missing = sorted(set(range(len(classes))) - set(labels[num_train:].tolist()))
        if missing:
            names = ", ".join(repr(classes[i]) for i in missing)
            raise InputError(f"The validation cases hold no case of class {names}, so {objective} cannot be "
                             "measured. Make a split with every class in validation, or use cv_folds.")
        splits = [(np.arange(num_train), np.arange(num_train, len(pooled)))]
    return pooled, classes, labels, splits


def _best_config_of(values, classifier_entries: dict, options: dict, weights) -> dict:
    """The feature search's best configuration from a trial's hyperparameter values."""
    name = values["classifier"]
    params = {p: entry.decode(values[f"{name}/{p}"]) for p, entry in classifier_entries[name].items()
              if f"{name}/{p}" in values}
    return {"backbone": values["backbone"], "classifier": name, "classifier_params": params, **options,
            "weights": None if weights is None else str(weights)}


# Over 100 lines for its docstring only (the public reference of the feature search); the body is about 50.
def feature_search(
    train_cases,
    val_cases,
    *,
    loader,
    cache,
    backbones,
    classifiers=None,
    task="binary",
    classes=None,
    weights="imagenet",
    input_size=None,
    adapter="replicate",
    pooling="avg",
    precision="float32",
    tuner="random",
    max_trials=10,
    objective=None,
    directory,
    project_name="search",
    seed=0,
    cv_folds=None,
    distributed=None,
    tuner_options=None,
    max_consecutive_failed_trials=3,
    overwrite=False,
    verbose=1,
):
    """Search backbones and scikit-learn classifiers (with their parameters) on fixed CNN features.

    Every trial picks a backbone, a classifier of ``make_classifier`` and that classifier's parameters, fits it
    on the training cases' pooled features and scores it on the validation cases: ``val_auc`` (macro one-vs-rest
    for several classes, the default objective), ``val_accuracy`` or ``val_loss`` (log loss). Features are
    extracted once per backbone and reused (see the module docstring); ``result.summary["features"]`` counts, per
    backbone, the images whose features were computed and those read from the cache.

    Default parameter spaces (:data:`CLASSIFIER_SPACES`): logistic regression ``C`` (log 1e-4..1e2); SVM ``C``
    (log 1e-2..1e2) and ``gamma`` (log 1e-5..1e-1); random forest ``n_estimators`` (100..500 by 100) and
    ``max_depth`` (2..16); gradient boosting ``learning_rate`` (log 0.01..0.3) and ``max_iter`` (50..400 by 50);
    k-NN ``n_neighbors`` (3..31 by 2). Give ``classifiers={"svm": {"C": [0.1, 1, 10]}, "knn": None}`` to choose
    others (``None`` = the default space, ``{}`` = the classifier's defaults only).

    Like :func:`run_search` it takes no test data, is resumable (``directory/project_name``), records every
    trial and writes ``<project_name>_summary.json``, supports ``cv_folds`` (patient-grouped, stratified) and
    keras-tuner's chief / worker mode. Tuners: ``"random"`` and ``"bayesian"`` (Hyperband needs epochs, which
    fixed features do not have).

    Args:
        train_cases, val_cases: the training and validation case tables.
        loader: the ``CaseLoader``; cache: a ``CaseCache`` (features are cached in ``<cache>/features/``) or
            ``None`` (features are then kept in memory only).
        backbones: registry names to search, e.g. ``["resnet50", "densenet121"]``.
        classifiers: names (default: all five) or a dict name -> parameter space.
        task: ``"binary"`` or ``"multiclass"``.
        classes: class names in index order (default: from the labels).
        weights, input_size, adapter, pooling, precision: the feature extractor's settings
            (``BackboneFeatures``); ``precision="mixed_bfloat16"`` extracts in bfloat16 (faster on CPUs with
            native bfloat16; its features are cached apart from float32 ones).
        tuner, max_trials, objective, directory, project_name, seed, cv_folds, distributed: as for
            :func:`run_search`; so are tuner_options, max_consecutive_failed_trials, overwrite and verbose.

    Returns:
        A :class:`SearchResult` whose ``best_config`` is ``{"backbone", "classifier", "classifier_params",
        "weights", "input_size", "adapter", "pooling", "precision"}``.

    Raises:
        SearchFailedError: no trial completed.
        InputError, OptionError: bad arguments, a classifier parameter that does not exist, a validation set
            without every class.

    Example:
        >>> result = feature_search(run.cases("train"), run.cases("val"), loader=loader, cache=cache,
        ...                         backbones=["resnet50", "densenet121"], classifiers=["svm",
        ...                         "logistic_regression"], max_trials=20, directory=run.path)  # doctest: +SKIP
        >>> result.best_config["classifier"], result.best_objective  # doctest: +SKIP
        ('svm', 0.93)
    """
    tuner_name, task, max_trials, seed, verbose, backbones = _checked_arguments(tuner, task, max_trials, seed,
                                                                                 verbose, backbones)
    classifier_entries = _classifier_entries(classifiers)
    objective, direction = _checked_objective(objective)
    pooled, classes, labels, splits = _labels_and_splits(train_cases, val_cases, task=task, classes=classes,
                                                         objective=objective, cv_folds=cv_folds, seed=seed)
    distributed = resolve_distributed(distributed)
    precision = look_up_option(precision, PRECISIONS, what="precision")
    options = {"weights": weights, "input_size": input_size, "adapter": adapter, "pooling": pooling,
               "precision": precision}
    images = None
    if distributed is None or not distributed.is_chief:
        images, _ = load_arrays(pooled, loader, cache)
    bank = _FeatureBank(images, cache_dir=None if cache is None else Path(cache.folder), seed=seed, verbose=verbose,
                        **options)
    hypermodel = _FeatureHyperModel(backbones, classifier_entries)

    spaces = {name: {p: e.spec for p, e in entries.items()} for name, entries in classifier_entries.items()}
    settings = {
        "mode": "features", "tuner": tuner_name, "tuner_options": dict(tuner_options or {}), "objective": objective,
        "task": task, "classes": list(classes), "backbones": backbones, "classifiers": spaces,
        # precision only when not float32, so a project started before the option existed resumes as it was.
        "extractor": {k: (str(v) if v is not None and k == "weights" else v) for k, v in options.items()
                      if k != "precision" or v != "float32"},
        "cv_folds": cv_folds, "seed": seed,
        "data": {"train": data_fingerprint(train_cases), "val": data_fingerprint(val_cases)},
    }

    def make_tuner(oracle, **kwargs):
        return _FeatureTuner(oracle, hypermodel, bank=bank, labels=labels, splits=splits,
                             cross_validated=cv_folds is not None, num_classes=len(classes), objective=objective,
                             distributed=distributed, verbose=verbose, **kwargs)

    def base_summary():
        return {"mode": "features", "tuner": tuner_name, "max_trials": max_trials, "cv_folds": cv_folds,
                "folds": describe_folds(pooled, splits if cv_folds is not None else None),
                "task": task, "classes": list(classes), "backbones": backbones, "classifiers": spaces,
                "extractor": {**settings["extractor"], "precision": precision}, "features": bank.stats}

    return conduct_search(
        make_tuner, mode="features", label="feature search", settings=settings, tuner_name=tuner_name,
        tuner_options=tuner_options, objective=objective, direction=direction, max_trials=max_trials, seed=seed,
        max_consecutive_failed_trials=max_consecutive_failed_trials, directory=directory,
        project_name=project_name, overwrite=overwrite, distributed=distributed, verbose=verbose,
        resume_note=lambda t: f"{len(t.oracle.trials)} trials recorded",
        base_summary=base_summary,
        best_config_of=lambda values: _best_config_of(values, classifier_entries, options, weights))
