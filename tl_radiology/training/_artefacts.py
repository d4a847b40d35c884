"""The files of a saved model: the artefact names, their sha256 checks, and writing and reading the artefacts
of each kind (``model.keras``, ``classifier.joblib`` + ``feature_extractor.weights.h5``, ``members/<i>``).

:class:`~tl_radiology.training.TrainedModel` decides what is saved; this module owns how each file is written
atomically and how it is checked against ``model.json`` before anything is loaded from it.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from .._atomic import atomic_path
from .._errors import RunDirError
from ..data import sha256_file

__all__ = ["save_keras_model", "MODEL_JSON", "FORMAT_VERSION"]

MODEL_JSON = "model.json"
KERAS_FILE = "model.keras"
CLASSIFIER_FILE = "classifier.joblib"
EXTRACTOR_FILE = "feature_extractor.weights.h5"
MEMBERS_DIR = "members"
FORMAT_VERSION = 1


def save_keras_model(model, path) -> Path:
    """Save a Keras model to ``path`` (``.keras``) atomically, without its optimizer state.

    The optimizer's moments would triple the file of a fine-tuned network and are not needed to predict; the
    saved model is an uncompiled functional model over the same layers (and weights).
    """
    import keras  # deferred: TensorFlow is loaded only when a network is read or written

    plain = keras.Model(model.inputs, model.outputs, name=model.name)
    with atomic_path(path) as tmp:
        plain.save(tmp)
    return Path(path)


def _verified(run_dir: Path, name: str, artefacts: dict) -> Path:
    """The path of an artefact inside ``run_dir``, after checking it against its recorded sha256."""
    path = run_dir / name
    recorded = (artefacts.get(name) or {}).get("sha256")
    if recorded is None:
        raise RunDirError(f"{run_dir / MODEL_JSON} records no sha256 for {name}; save the model again.")
    if not path.is_file():
        raise RunDirError(f"{path} is missing; the run directory is incomplete. Save the model again.")
    if path.is_symlink() or run_dir.resolve() not in path.resolve().parents:
        raise RunDirError(f"Refusing to load {path}: it is a link out of the run directory {run_dir}.")
    actual = sha256_file(path)
    if actual != recorded:
        raise RunDirError(
            f"Refusing to load {path}: its sha256 {actual[:12]}... differs from {recorded[:12]}... recorded in "
            f"{MODEL_JSON}; the file changed after the model was saved. Restore it or train again."
        )
    return path


def save_features_artefacts(run_dir: Path, features, classifier) -> dict:
    """Write ``classifier.joblib`` (and the extractor's weights when it started from random ones); returns
    their ``{name: {"sha256": ...}}``."""
    import joblib  # deferred: only a features model needs it

    artefacts: dict[str, dict] = {}
    with atomic_path(run_dir / CLASSIFIER_FILE) as tmp:
        joblib.dump(classifier, tmp)
    artefacts[CLASSIFIER_FILE] = {"sha256": sha256_file(run_dir / CLASSIFIER_FILE)}
    if features.weights is None:
        # Random starting weights cannot be rebuilt: keep the extractor's own.
        with atomic_path(run_dir / EXTRACTOR_FILE) as tmp:
            named = tmp.with_name(tmp.name + ".weights.h5")  # Keras insists on this suffix
            try:
                features.model_.save_weights(named)
                os.replace(named, tmp)
            finally:
                named.unlink(missing_ok=True)
        artefacts[EXTRACTOR_FILE] = {"sha256": sha256_file(run_dir / EXTRACTOR_FILE)}
    return artefacts


def load_keras_artefact(run_dir: Path, artefacts: dict):
    """The network of ``model.keras``, after its sha256 check, loaded in Keras' safe mode."""
    import keras  # deferred: TensorFlow is loaded only when a network is read or written

    from .. import models  # noqa: F401  (registers the toolkit's layers for deserialisation)
    from . import _optim  # noqa: F401  (registers the layer-wise optimizer, likewise)

    model_path = _verified(run_dir, KERAS_FILE, artefacts)
    if not zipfile.is_zipfile(model_path):
        # A .keras file is a zip archive; anything else (a pickle renamed model.keras, with its hash
        # rewritten in model.json) ended as "unexpected ValueError" (exit 1). Nothing is loaded from it.
        raise RunDirError(
            f"Refusing to load {model_path}: it is not a Keras model archive (a .keras file is a zip; this "
            "one is not, e.g. a pickle saved under that name). Use a run directory whose model you trained, "
            "or train it again with tl-radiology run."
        )
    try:
        model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    except ValueError as exc:
        if "safe_mode" not in str(exc):
            raise RunDirError(
                f"Cannot load {model_path}: {' '.join(str(exc).split())[:300]}. Expected a Keras model saved "
                "by tl_radiology's training; train it again with tl-radiology run."
            ) from None
        # Keras' own message suggests safe_mode=False, which is what must not happen to a file one did
        # not make; say which file and why, as for a changed hash.
        raise RunDirError(
            f"Refusing to load {model_path}: it holds code (a Lambda layer or another Python function) that "
            "Keras' safe mode refuses to run; tl_radiology's models hold none, so this file was not made by "
            "its training. Use a run directory whose model you trained, or rebuild the model without it."
        ) from None
    return model


def load_features_artefacts(run_dir: Path, record: dict, artefacts: dict) -> tuple:
    """``(features, classifier)`` of a ``features`` model, each file checked against its sha256 first, the
    backbone's weights file against the one the model was trained from."""
    import joblib  # deferred: only a features model needs it

    from ._features import BackboneFeatures  # deferred: it imports TensorFlow and scikit-learn

    classifier_path = _verified(run_dir, CLASSIFIER_FILE, artefacts)
    classifier = joblib.load(classifier_path)
    settings = record.get("features") or {}
    features = BackboneFeatures(**settings.get("params", {}))
    extractor = _verified(run_dir, EXTRACTOR_FILE, artefacts) if EXTRACTOR_FILE in artefacts else None
    features._build(settings["input_shape"], weights_file=extractor)
    recorded = (record.get("weights") or {}).get("sha256")
    if features.weights is not None and recorded and features.weights_identity_["sha256"] != recorded:
        raise RunDirError(
            f"The backbone weights file {features.weights_identity_['file']} changed since this model was "
            f"trained (sha256 {features.weights_identity_['sha256'][:12]}... instead of {recorded[:12]}...); "
            "the features would differ. Restore the original weights file."
        )
    return features, classifier


def member_folder(run_dir: Path, i: int, entry, path: Path) -> Path:
    """The folder of ensemble member ``i``, after checking its ``model.json`` against the recorded sha256."""
    folder = run_dir / MEMBERS_DIR / str(i)  # never a path taken from the file
    member_json = folder / MODEL_JSON
    expected = entry.get("model_json_sha256") if isinstance(entry, dict) else None
    if not member_json.is_file() or sha256_file(member_json) != expected:
        raise RunDirError(
            f"Refusing to load ensemble member {folder}: its {MODEL_JSON} is missing or differs from "
            f"the one recorded in {path}. Save the ensemble again."
        )
    return folder


def keras_precision(model) -> str:
    """The dtype policy a model's layers compute in, for a model not built by build_model in this process.

    ``"mixed_bfloat16"`` if any layer with weights has that policy (build_model's mixed models keep a few
    layers around the backbone in float32), else the first other policy found, else ``"float32"``.
    """
    names = []
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        if hasattr(layer, "layers"):
            stack.extend(layer.layers)
        elif layer.weights and getattr(layer, "dtype_policy", None) is not None:
            names.append(layer.dtype_policy.name)
    if "mixed_bfloat16" in names:
        return "mixed_bfloat16"
    return next((n for n in names if n != "float32"), "float32")


def features_params(features) -> dict:
    """The ``BackboneFeatures`` settings recorded in ``model.json`` (no local cache folder, paths as text)."""
    params = features.get_params()
    params["cache_dir"] = None  # a local folder, not part of what the model is
    weights = params.get("weights")
    if weights is not None and not isinstance(weights, str):
        params["weights"] = os.fspath(weights)
    return params


def describe_estimator(estimator) -> dict:
    """A JSON-able description of a fitted scikit-learn estimator (class and simple parameters)."""
    params = {}
    for key, value in estimator.get_params(deep=True).items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            params[key] = value
    name = type(estimator).__name__
    return {"class": f"{type(estimator).__module__}.{name}", "params": params}

