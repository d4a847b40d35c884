"""``TrainedModel``: the model a run saves and ``evaluate`` / ``predict`` load later.

The contract between training and evaluation. A run directory holds ``model.json`` (what the model is: task,
classes, the loader's preprocessing, input shape, the weights it started from, its training configuration, the
threshold chosen on validation, when and by which version it was made, and the sha256 of every artefact) and the
artefacts of its kind:

=========  ==============================================================================================
kind       artefacts
=========  ==============================================================================================
keras      ``model.keras`` (a fine-tuned network; loaded with ``keras.saving.load_model(safe_mode=True)``)
features   ``classifier.joblib`` (the fitted scikit-learn classifier) + the ``BackboneFeatures`` settings in
           ``model.json``; ``feature_extractor.weights.h5`` when the backbone started from random weights
ensemble   ``members/0``, ``members/1``, ... each a saved ``TrainedModel``; probabilities are averaged
=========  ==============================================================================================

A joblib file can run code when it is loaded, so ``classifier.joblib`` is read only from the run directory
itself and only if its sha256 is the one recorded in ``model.json``; every other artefact is checked the same way.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._version import __version__
from .._atomic import atomic_write_json
from .._errors import InputError, RunDirError
from .._options import look_up_option
from ..config import FLIPS
from ..data import load_arrays, loader_from_config, sha256_file
from ._artefacts import (FORMAT_VERSION, KERAS_FILE, MEMBERS_DIR, MODEL_JSON, describe_estimator, features_params,
                         keras_precision, load_features_artefacts, load_keras_artefact, member_folder,
                         save_features_artefacts, save_keras_model)

__all__ = ["TrainedModel", "MODEL_JSON", "KINDS"]

KINDS = ("keras", "features", "ensemble")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _task_spec(task):
    from ..models import TaskSpec  # deferred: the models part imports TensorFlow

    if isinstance(task, TaskSpec):
        return task
    if isinstance(task, dict):
        return TaskSpec(**task)
    raise InputError(f"Expected task to be a TaskSpec or its dict; received {task!r}.")


def _loader_config(loader) -> dict | None:
    if loader is None or isinstance(loader, dict):
        return None if loader is None else dict(loader)
    if hasattr(loader, "get_config"):
        return loader.get_config()
    raise InputError(
        f"Expected loader to be a CaseLoader, its get_config() dict or None; received {type(loader).__name__}."
    )


class TrainedModel:
    """A trained model with everything needed to use it later on new cases.

    Build one with :meth:`from_keras`, :meth:`from_features` or :meth:`ensemble`; save it with :meth:`save`
    and read it back with :meth:`load`.

    Attributes:
        kind: ``"keras"``, ``"features"`` or ``"ensemble"``.
        task: the ``TaskSpec`` (task type and number of outputs).
        classes: class (or label) names in output order, or ``None``.
        positive_class: for binary tasks, ``classes[1]`` (the class whose probability is predicted).
        loader_config: ``CaseLoader.get_config()`` of the loader the training cases went through (``predict``
            rebuilds it with ``loader_from_config``), or ``None``.
        input_shape: ``(H, W, C)`` the model takes.
        weights: ``weights_identity`` of the backbone's starting weights (for an ensemble: one per member).
        precision: the dtype policy the backbone computes in, ``"float32"`` or ``"mixed_bfloat16"`` (for an
            ensemble: one per member); records saved before it existed read as ``"float32"``.
        training_config: how it was trained (``FineTuneConfig.to_dict()`` or the feature settings and classifier).
        threshold: the decision threshold chosen on validation (``choose_threshold(...).to_dict()``), or ``None``.
        tta: test-time augmentation, one of ``FLIPS``: ``"none"`` (default), or the flips whose views are
            averaged with the image itself in every prediction (``"horizontal"``: 2 views, ``"vertical"``: 2,
            ``"horizontal_and_vertical"``: 4); set with :meth:`set_tta`, saved in ``model.json``.
        created: creation time (UTC, ISO 8601).
        toolkit_version: the tl_radiology version that trained it.

    Example:
        >>> trained = result.to_trained_model(loader=loader)  # doctest: +SKIP
        >>> trained.set_threshold(choose_threshold(y_val, trained.predict_proba(x_val)))  # doctest: +SKIP
        >>> trained.save("runs/a")  # doctest: +SKIP
        >>> TrainedModel.load("runs/a").predict_proba(x_new)  # doctest: +SKIP
    """

    def __init__(self, kind: str, *, task, classes=None, loader_config=None, input_shape=None, weights=None,
                 training_config=None, threshold=None, created=None, toolkit_version=None, model=None,
                 features=None, classifier=None, members=None, precision=None, tta="none"):
        self.kind = look_up_option(kind, KINDS, what="trained-model kind")
        self.task = _task_spec(task)
        self.classes = None if classes is None else [str(c) for c in classes]
        if self.classes is not None:
            if self.task.task == "binary" and len(self.classes) != 2:
                raise InputError(f"A binary model needs 2 classes (negative, positive); received {self.classes}.")
            if self.task.task in ("multiclass", "multilabel") and len(self.classes) != self.task.num_classes:
                raise InputError(
                    f"The model has {self.task.num_classes} outputs but {len(self.classes)} classes were given "
                    f"({self.classes}); give one name per output."
                )
        self.loader_config = loader_config
        self.input_shape = None if input_shape is None else [int(v) for v in input_shape]
        self.weights = weights
        if precision is None:
            precision = [m.precision for m in members or []] if self.kind == "ensemble" else "float32"
        self.precision = precision
        self.training_config = dict(training_config or {})
        self.threshold = None
        if threshold is not None:
            self.set_threshold(threshold)
        self.created = created or _now()
        self.toolkit_version = toolkit_version or __version__
        self.model = model
        self.features = features
        self.classifier = classifier
        self.members = list(members or [])
        self.tta = _flips(tta)  # an ensemble's members keep their own; set_tta changes them all

    @property
    def positive_class(self) -> str | None:
        """The class whose probability a binary model predicts (``classes[1]``)."""
        return self.classes[1] if self.task.task == "binary" and self.classes else None

    def __repr__(self) -> str:
        extra = f", members={len(self.members)}" if self.kind == "ensemble" else ""
        return f"TrainedModel(kind={self.kind!r}, task={self.task.task!r}, classes={self.classes}{extra})"

    # ------------------------------------------------------------------------------------------------ building
    @classmethod
    def from_keras(cls, model, *, task=None, classes=None, loader=None, training_config=None, weights=None):
        """A trained model of kind ``"keras"`` from a fine-tuned network.

        Args:
            model: the Keras model (its input is the loader's output, float32 in [0, 1]).
            task: its ``TaskSpec``; default: the one ``build_model`` recorded.
            classes: class names in output order.
            loader: the ``CaseLoader`` (or its config) the cases were loaded with.
            training_config: a JSON-able record of the training (``FineTuneConfig.to_dict()``).
            weights: ``weights_identity`` of the starting weights; default: the one ``build_model`` recorded.
                Required for a model not built in this process.

        Raises:
            InputError: the starting weights are unknown.
        """
        from ..models import model_info  # deferred: the models part imports TensorFlow

        try:
            info = model_info(model)
        except InputError:
            info = None
        if weights is None:
            if info is None:
                raise InputError(
                    "Every trained model records which weights it started from: pass weights=weights_identity(...) "
                    "for a model not built by build_model in this process."
                )
            weights = info["weights"]
        if task is None:
            if info is None:
                raise InputError("Pass task=TaskSpec(...) for a model not built by build_model in this process.")
            task = info["task"]
        precision = info["precision"] if info is not None and "precision" in info else keras_precision(model)
        return cls("keras", task=task, classes=classes, loader_config=_loader_config(loader),
                   input_shape=tuple(model.input_shape[1:]), weights=weights, training_config=training_config,
                   model=model, precision=precision)

    @classmethod
    def from_features(cls, features, classifier=None, *, task="binary", classes=None, loader=None,
                      training_config=None):
        """A trained model of kind ``"features"``: a fitted ``BackboneFeatures`` and a fitted classifier.

        Args:
            features: a fitted :class:`~tl_radiology.training.BackboneFeatures`, or a fitted ``Pipeline`` whose
                first step is one (the remaining steps are then the classifier).
            classifier: the fitted scikit-learn estimator on the features (``None`` with a pipeline).
            task: ``"binary"``, ``"multiclass"``, ``"multilabel"`` or ``"regression"`` (or a ``TaskSpec``).
            classes: class names in output order; for binary, the second is the positive class. The
                classifier's ``classes_`` may be indices (0, 1, ...) or these names.
            loader: the ``CaseLoader`` (or its config).
            training_config: a JSON-able record of how it was trained.
        """
        from sklearn.pipeline import Pipeline  # deferred: scikit-learn, only for a features model
        from sklearn.utils.validation import check_is_fitted

        from ..models import TaskSpec  # deferred: the models part imports TensorFlow, the features scikit-learn
        from ._features import BackboneFeatures

        if isinstance(features, Pipeline):
            if classifier is not None:
                raise InputError("Give either a fitted Pipeline (features + classifier) or features and a classifier.")
            first = features.steps[0][1]
            rest = features.steps[1:]
            if not isinstance(first, BackboneFeatures) or not rest:
                raise InputError(
                    "Expected a Pipeline whose first step is BackboneFeatures followed by a classifier."
                )
            classifier = rest[0][1] if len(rest) == 1 else Pipeline(rest)
            features = first
        if not isinstance(features, BackboneFeatures):
            raise InputError(f"Expected a fitted BackboneFeatures; received {type(features).__name__}.")
        check_is_fitted(features, "extractor_key_")  # not "model_": reading it would build the backbone
        if classifier is None:
            raise InputError("from_features needs the fitted classifier (or a fitted Pipeline).")
        check_is_fitted(classifier)
        if not isinstance(task, TaskSpec):
            num = None if task == "binary" else (len(classes) if classes is not None else None)
            if num is None and task in ("multiclass", "multilabel"):
                classes_ = getattr(classifier, "classes_", None)
                num = len(classes_) if classes_ is not None and task == "multiclass" else None
            task = TaskSpec(task, num)
        config = {"mode": "features", "backbone": features.backbone, "features": features_params(features),
                  "classifier": describe_estimator(classifier)}
        config.update(training_config or {})
        return cls("features", task=task, classes=classes, loader_config=_loader_config(loader),
                   input_shape=features.input_shape_, weights=features.weights_identity_, training_config=config,
                   features=features, classifier=classifier, precision=features.precision_)

    @classmethod
    def ensemble(cls, members: Sequence["TrainedModel"], *, training_config=None):
        """A trained model averaging the probabilities (or values) of several trained models of one task.

        Members must share the task and the classes; they may differ in kind, backbone and preprocessing. When
        their loaders (and so their input shapes) differ, predict with :meth:`predict_cases`, which loads the
        cases once per member loader; :meth:`predict_proba` needs members that take the same images.

        Raises:
            InputError: fewer than two members, or members of different tasks or classes.
        """
        members = list(members)
        if len(members) < 2 or not all(isinstance(m, TrainedModel) for m in members):
            raise InputError("An ensemble needs at least two TrainedModel members.")
        first = members[0]
        for i, member in enumerate(members[1:], start=1):
            for what, a, b in (("task", first.task.to_dict(), member.task.to_dict()),
                               ("classes", first.classes, member.classes)):
                if a != b:
                    raise InputError(f"Ensemble member {i} has {what} {b} but member 0 has {a}; members must agree.")
        loaders = [m.loader_config for m in members]
        shapes = [m.input_shape for m in members]
        return cls("ensemble", task=first.task, classes=first.classes,
                   loader_config=loaders[0] if all(c == loaders[0] for c in loaders) else None,
                   input_shape=shapes[0] if all(s == shapes[0] for s in shapes) else None,
                   weights=[m.weights for m in members],
                   training_config={"mode": "ensemble", **(training_config or {})}, members=members)

    def set_threshold(self, choice) -> "TrainedModel":
        """Record the decision threshold chosen on validation (``ThresholdChoice`` or its ``to_dict()``)."""
        if hasattr(choice, "to_dict"):
            choice = choice.to_dict()
        if not isinstance(choice, dict):
            raise InputError(
                f"Expected the threshold as choose_threshold(...) or its to_dict(); received {type(choice).__name__}."
            )
        if self.task.task == "binary":
            value = choice.get("threshold")
            if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise InputError(f"Expected a threshold in [0, 1] in the choice; received {value!r}.")
        self.threshold = dict(choice)
        return self

    def set_tta(self, flips: str | None) -> "TrainedModel":
        """Average every prediction over the image and its ``flips`` (one of ``FLIPS``; ``None`` = ``"none"``).

        Use only flips the training augmentation used (a recipe's ``flip``): where laterality matters (a chest
        film) a mirrored image is another anatomy, not another view. An ensemble passes it to its members.
        """
        self.tta = _flips(flips)
        for member in self.members:
            member.set_tta(self.tta)
        return self

    # ------------------------------------------------------------------------------------------------ predicting
    def predict_proba(self, x, *, batch_size: int = 32) -> np.ndarray:
        """Predict for images ``N x H x W x C`` in [0, 1] (as the saved loader gives them).

        With :attr:`tta`, the result is the mean over the image and its flipped views.

        Returns:
            binary: ``(n,)`` probability of :attr:`positive_class`; multiclass: ``(n, K)``; multilabel:
            ``(n, L)``; regression: ``(n,)`` values (``(n, K)`` for K targets).
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise InputError(f"predict_proba expects images N x H x W x C; received shape {x.shape}.")
        if self.input_shape is not None and list(x.shape[1:]) != self.input_shape:
            raise InputError(
                f"The model takes {'x'.join(map(str, self.input_shape))} images; received "
                f"{'x'.join(map(str, x.shape[1:]))}. Load the cases with the saved loader (loader_config)."
            )
        if self.kind == "ensemble":  # each member averages its own views
            out = np.mean([m.predict_proba(x, batch_size=batch_size) for m in self.members], axis=0)
        else:
            out = np.mean([self._predict_view(view, batch_size) for view in _flipped_views(x, self.tta)], axis=0)
        return self._shape_output(out)

    def _predict_view(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        if self.kind == "keras":
            return np.asarray(self.model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
        return self._classifier_output(self.features.transform(x))

    def _shape_output(self, out: np.ndarray) -> np.ndarray:
        if self.task.task in ("binary", "regression") and out.ndim == 2 and out.shape[1] == 1:
            return out[:, 0]
        return out

    def _classifier_output(self, features: np.ndarray) -> np.ndarray:
        clf = self.classifier
        task = self.task.task
        if task == "regression":
            return np.asarray(clf.predict(features), dtype=np.float64)
        proba = clf.predict_proba(features)
        if task == "multilabel":
            if isinstance(proba, list):  # MultiOutputClassifier: one (n, 2) array per label
                proba = np.stack([p[:, 1] for p in proba], axis=1)
            return np.asarray(proba, dtype=np.float64)
        proba = np.asarray(proba, dtype=np.float64)
        order = self._class_columns(list(clf.classes_))
        return proba[:, order[1]] if task == "binary" else proba[:, order]

    def _class_columns(self, fitted) -> list[int]:
        """Columns of ``predict_proba`` in this model's class order (the classifier may use indices or names)."""
        n = 2 if self.task.task == "binary" else self.task.num_classes
        names = [str(c) for c in fitted]
        if self.classes is not None and set(self.classes) <= set(names):
            return [names.index(c) for c in self.classes]
        try:
            as_int = [int(c) for c in fitted]
        except (TypeError, ValueError):
            as_int = None
        if as_int is not None and set(range(n)) <= set(as_int):
            return [as_int.index(i) for i in range(n)]
        if len(fitted) == n:
            return list(range(n))
        raise InputError(
            f"The classifier's classes {names} do not match the model's classes {self.classes}; fit it on the "
            "class indices or on these names."
        )

    def predict_cases(self, cases, *, batch_size: int = 32) -> np.ndarray:
        """Load cases with the saved loader and predict (as :meth:`predict_proba`), in row order.

        Nothing is written to a cache (safe for a sealed test set). Ensemble members whose loaders differ
        each load the cases with their own.
        """
        if self.kind == "ensemble" and self.loader_config is None:
            return self._shape_output(np.mean([m.predict_cases(cases, batch_size=batch_size) for m in self.members],
                                              axis=0))
        if self.loader_config is None:
            raise InputError(
                "This model was saved without its loader, so cases cannot be loaded the way it was trained. Load "
                "the images yourself and call predict_proba."
            )
        x, _ = load_arrays(cases, loader_from_config(self.loader_config), cache=None)
        return self.predict_proba(x, batch_size=batch_size)

    # ------------------------------------------------------------------------------------------------ saving
    def to_dict(self) -> dict[str, Any]:
        """The ``model.json`` record without the artefact checksums."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "task": self.task.to_dict(),
            "classes": self.classes,
            "positive_class": self.positive_class,
            "loader": self.loader_config,
            "input_shape": self.input_shape,
            "weights": self.weights,
            "precision": self.precision,
            "training_config": self.training_config,
            "threshold": self.threshold,
            "tta": self.tta,
            "created": self.created,
            "toolkit_version": self.toolkit_version,
        }

    def save(self, run_dir) -> Path:
        """Write ``model.json`` and the artefacts into ``run_dir`` (each file atomically; ``model.json`` last).

        Returns:
            The path of ``model.json``.
        """
        import keras  # deferred: Keras, only when a network is saved

        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        artefacts: dict[str, dict] = {}
        record = self.to_dict()
        record["keras_version"] = keras.__version__
        if self.kind == "keras":
            save_keras_model(self.model, run_dir / KERAS_FILE)
            artefacts[KERAS_FILE] = {"sha256": sha256_file(run_dir / KERAS_FILE)}
        elif self.kind == "features":
            artefacts.update(save_features_artefacts(run_dir, self.features, self.classifier))
            record["features"] = {"params": features_params(self.features),
                                  "input_shape": list(self.features.input_shape_)}
        else:
            members = []
            for i, member in enumerate(self.members):
                member_json = member.save(run_dir / MEMBERS_DIR / str(i))
                members.append({"folder": f"{MEMBERS_DIR}/{i}", "model_json_sha256": sha256_file(member_json)})
            record["members"] = members
        record["artefacts"] = artefacts
        return atomic_write_json(run_dir / MODEL_JSON, record)

    @classmethod
    def load(cls, run_dir) -> "TrainedModel":
        """Read a trained model from a run directory, checking every artefact against ``model.json``.

        Raises:
            RunDirError: no ``model.json``, a model of an unknown format, or an artefact that is missing or
                whose sha256 differs from the recorded one (the file is named; nothing is loaded from it).
        """
        run_dir = Path(run_dir)
        path = run_dir / MODEL_JSON
        if not path.is_file():
            raise RunDirError(f"No {MODEL_JSON} in {run_dir}; expected a run directory with a saved model.")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{path} is not a readable model record ({exc}); save the model again.") from None
        if record.get("format_version") != FORMAT_VERSION:
            raise RunDirError(
                f"{path} has format_version {record.get('format_version')!r}; this tl_radiology "
                f"({__version__}) reads version {FORMAT_VERSION}. Use the version that saved it."
            )
        kind = record.get("kind")
        common = dict(task=record["task"], classes=record.get("classes"), loader_config=record.get("loader"),
                      input_shape=record.get("input_shape"), weights=record.get("weights"),
                      precision=record.get("precision"), training_config=record.get("training_config"),
                      threshold=record.get("threshold"), tta=record.get("tta"), created=record.get("created"),
                      toolkit_version=record.get("toolkit_version"))
        artefacts = record.get("artefacts") or {}
        if kind == "keras":
            return cls("keras", model=load_keras_artefact(run_dir, artefacts), **common)
        if kind == "features":
            features, classifier = load_features_artefacts(run_dir, record, artefacts)
            return cls("features", features=features, classifier=classifier, **common)
        if kind == "ensemble":
            members = []
            for i, entry in enumerate(record.get("members") or []):
                folder = member_folder(run_dir, i, entry, path)
                members.append(cls.load(folder))
            if len(members) < 2:
                raise RunDirError(f"{path} describes an ensemble with fewer than two members; save it again.")
            return cls("ensemble", members=members, **common)
        raise RunDirError(f"{path} has an unknown model kind {kind!r}; expected one of {', '.join(KINDS)}.")


def _flips(name: str | None) -> str:
    return look_up_option("none" if name is None else name, FLIPS, what="tta (test-time flips)")


def _flipped_views(x: np.ndarray, flips: str) -> list[np.ndarray]:
    """The image batch ``N x H x W x C`` and its views under ``flips`` (``horizontal`` mirrors the width)."""
    views = [x]
    if flips in ("horizontal", "horizontal_and_vertical"):
        views.append(x[:, :, ::-1, :])
    if flips in ("vertical", "horizontal_and_vertical"):
        views.append(x[:, ::-1, :, :])
    if flips == "horizontal_and_vertical":
        views.append(x[:, ::-1, ::-1, :])
    return [np.ascontiguousarray(v) for v in views]
