"""Task-aware glue between a model's predictions and the metric functions, plots and prediction tables.

Used by the validation finalisation, the final test, external validation, ``explain`` and ``predict``, so that
each task is scored, plotted and written the same way everywhere:

==========  =============================  =================================  ===============================
task        probabilities                  threshold (chosen on validation)   predicted label
==========  =============================  =================================  ===============================
binary      ``(n,)`` of ``classes[1]``     one value                          ``classes[1]`` if p >= threshold
multiclass  ``(n, K)``                     none (argmax)                      class of the largest probability
multilabel  ``(n, L)``                     one per label                      labels with p >= their threshold,
                                                                              joined by ``|``
regression  ``(n,)`` values                none                               the value
==========  =============================  =================================  ===============================

Classes are the labels of the manifest in index order; a binary task lists the negative class first and the
positive one second (``Manifest.positive_class``, the recipe's ``positive_class``). Tables keep the labels
(``prob_<label>`` columns, ``per_class`` keys); people see the names of :func:`class_names_of` (the recipe's or
manifest's ``class_names``, else the labels): in the confusion matrix, the plots, the threshold rule and the
``class_names`` / ``positive_class`` fields of the result files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .._errors import InputError
from ..data import encode_labels
from ._metrics import binary_metrics
from ._metrics_multi import multiclass_metrics, multilabel_metrics
from ._metrics_regression import regression_metrics
from ._plots import plot_bland_altman, plot_confusion_matrix, plot_pr, plot_reliability, plot_roc
from ._threshold import ThresholdChoice, choose_threshold

__all__ = [
    "KEY_METRICS",
    "as_targets",
    "threshold_values",
    "choose_thresholds",
    "predicted_labels",
    "score",
    "write_plots",
    "prediction_table",
    "key_metric_rows",
    "format_summary",
    "class_names_of",
    "class_fields",
]

#: The metrics printed by ``evaluate`` and shown first in the report, per task (name in ``result["metrics"]``).
KEY_METRICS = {
    "binary": ("roc_auc", "pr_auc", "sensitivity", "specificity", "ppv", "npv", "accuracy", "brier_score", "ece"),
    "multiclass": ("accuracy", "macro_roc_auc", "quadratic_weighted_kappa"),
    "multilabel": ("macro_roc_auc",),
    "regression": ("mae", "rmse", "r2"),
}

PLOT_TITLES = {
    "roc": "ROC curve",
    "pr": "Precision-recall curve",
    "reliability": "Reliability diagram",
    "confusion_matrix": "Confusion matrix",
    "bland_altman": "Bland-Altman plot",
}


def class_names_of(classes, *records) -> dict[str, str]:
    """A name for people for every class: the last of ``records`` (dicts with a ``class_names`` mapping, such as
    ``split.json`` and a model's ``training_config``) that names it, else its label.

    Example:
        >>> class_names_of(["0", "1"], {"class_names": {"1": "pneumonia"}})
        {'0': '0', '1': 'pneumonia'}
    """
    names: dict = {}
    for record in records:
        names.update((record or {}).get("class_names") or {})
    return {str(c): str(names.get(str(c), c)) for c in (classes or [])}


def class_fields(task: str, classes, names: dict | None) -> dict:
    """The result files' fields on classes: ``class_names`` (label -> name) and, for a binary task,
    ``positive_class`` / ``negative_class`` (labels) with their names."""
    classes = [str(c) for c in (classes or [])]
    names = {c: (names or {}).get(c, c) for c in classes}
    out = {"class_names": names}
    if task == "binary" and len(classes) == 2:
        out.update(positive_class=classes[1], positive_class_name=names[classes[1]],
                   negative_class=classes[0], negative_class_name=names[classes[0]])
    return out


def _binary_names(classes, names) -> tuple[str, str] | None:
    if not classes or len(classes) != 2:
        return None
    names = names or {}
    return str(names.get(classes[0], classes[0])), str(names.get(classes[1], classes[1]))


def as_targets(labels, task: str, classes: Sequence[str] | None) -> np.ndarray:
    """Labels of a case table as the metric functions take them (binary 0/1 int, class index, multi-hot, value)."""
    y = encode_labels(labels, task, None if task == "regression" else list(classes))
    if task == "binary":
        return y.astype(np.int64)
    return y


def _choice_from_dict(record: dict) -> ThresholdChoice:
    fields = ThresholdChoice.__dataclass_fields__
    return ThresholdChoice(**{k: record[k] for k in fields})


def threshold_values(task: str, classes, record):
    """The threshold(s) stored with a model: a float (binary), an array per label (multilabel), else ``None``.

    Raises:
        InputError: a binary or multilabel model without a threshold chosen on validation.
    """
    if task == "binary":
        if not record or record.get("threshold") is None:
            raise InputError(
                "The model has no decision threshold chosen on validation (model.json 'threshold' is empty). "
                "Finalise the run on validation first (finalize_on_validation, run by `tl-radiology run`)."
            )
        return float(record["threshold"])
    if task == "multilabel":
        per_label = (record or {}).get("per_label") or {}
        missing = [c for c in classes if c not in per_label]
        if missing:
            raise InputError(
                f"The model has no validation threshold for label(s) {', '.join(missing)} (model.json 'threshold'). "
                "Finalise the run on validation first (finalize_on_validation)."
            )
        return np.array([float(per_label[c]["threshold"]) for c in classes])
    return None


def choose_thresholds(task: str, classes, y, probabilities, *, method: str = "youden",
                      target: float | None = None) -> dict | None:
    """Choose the threshold(s) on validation predictions; return the record stored in ``model.json``.

    Binary: ``choose_threshold(...).to_dict()``. Multilabel: one choice per label under ``per_label``; a label
    with one class only among the validation cases cannot be tuned and gets 0.5, with a note. Multiclass and
    regression: ``None`` (argmax / the value itself).
    """
    if task == "binary":
        record = choose_threshold(y, probabilities, method=method, target=target).to_dict()
        if classes and len(classes) == 2:
            record["positive_class"] = str(classes[1])  # the class whose probability the threshold cuts
        return record
    if task != "multilabel":
        return None
    per_label, notes = {}, []
    for j, name in enumerate(classes):
        column = y[:, j]
        if column.min() == column.max():
            record = {"threshold": 0.5, "method": "default", "target": None, "sensitivity": None,
                      "specificity": None, "youden_j": None, "n_cases": int(len(column)),
                      "n_positive": int(column.sum()), "rule": "positive if probability >= threshold",
                      "chosen_on": "none: validation holds one class only for this label"}
            notes.append(f"label {name!r}: validation holds one class only; threshold 0.5 used (not tuned)")
        else:
            record = choose_threshold(column, probabilities[:, j], method=method, target=target).to_dict()
        per_label[str(name)] = record
    return {"method": method, "target": target, "chosen_on": "validation", "rule": "positive if probability >= "
            "threshold, per label", "per_label": per_label, "notes": notes}


def predicted_labels(task: str, classes, probabilities, thresholds) -> list:
    """The predicted label of each case (see the module table)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if task == "binary":
        return [classes[1] if v >= thresholds else classes[0] for v in p]
    if task == "multiclass":
        return [classes[int(i)] for i in np.argmax(p, axis=1)]
    if task == "multilabel":
        return ["|".join(c for c, v, t in zip(classes, row, thresholds) if v >= t) for row in p]
    return [float(v) for v in p.reshape(len(p), -1)[:, 0]]


def score(task: str, classes, labels, probabilities, *, patients=None, threshold_record=None,
          n_bootstrap: int = 2000, seed: int | None = 0, ordinal: bool = False, class_names=None) -> dict:
    """Metrics of one set of predictions with patient-bootstrap intervals (the metric function of the task).

    ``ordinal`` (multiclass grades in class order, e.g. diabetic-retinopathy grades) adds the quadratic-weighted
    kappa; a model records it as ``training_config["ordinal"]`` (see :func:`is_ordinal`). Binary: the positive
    class is ``classes[1]`` (sensitivity = its cases called it); ``class_names`` (label -> name) names it in the
    result (``positive_class``, ``negative_class``, the confusion matrix, the threshold rule).
    """
    y = as_targets(labels, task, classes)
    p = np.asarray(probabilities, dtype=np.float64)
    common = dict(patient_ids=None if patients is None else list(patients), n_bootstrap=n_bootstrap, seed=seed)
    if task == "binary":
        threshold = _choice_from_dict(threshold_record) if _is_choice(threshold_record) else threshold_values(
            task, classes, threshold_record)
        return binary_metrics(y, p, threshold=threshold, class_names=_binary_names(classes, class_names), **common)
    if task == "multiclass":
        present = set(np.unique(y).tolist())
        if len(present) < 2:
            raise InputError(
                f"The cases hold one class only ({classes[int(next(iter(present)))]}); multiclass metrics need at "
                "least two classes."
            )
        return multiclass_metrics(y, p, class_names=list(classes), ordinal=ordinal, **common)
    if task == "multilabel":
        values = threshold_values(task, classes, threshold_record)
        return multilabel_metrics(y, p, label_names=list(classes), thresholds=values, **common)
    return regression_metrics(y, p.reshape(len(p), -1)[:, 0], **common)


def is_ordinal(trained) -> bool:
    """Whether a TrainedModel's classes are ordered grades (its training config says ``ordinal``)."""
    return bool((getattr(trained, "training_config", None) or {}).get("ordinal"))


def _is_choice(record) -> bool:
    return isinstance(record, dict) and all(k in record for k in ThresholdChoice.__dataclass_fields__)


def write_plots(folder, task: str, classes, labels, probabilities, *, patients=None, threshold_record=None,
                n_bootstrap: int = 2000, seed: int | None = 0, what: str = "", class_names=None) -> dict:
    """Write the task's plots into ``folder``; return ``{name: file name}``.

    Binary: ROC (operating point marked), PR, reliability diagram, confusion matrix. Multiclass: ROC and PR per
    class, confusion matrix. Multilabel: ROC and PR per label (each operating point marked). Regression:
    Bland-Altman. Classes are shown by their names (``class_names``: label -> name; default the labels); a
    binary plot's title names the positive class.
    """
    folder = Path(folder)
    shown = [str((class_names or {}).get(c, c)) for c in (classes or [])]
    y = as_targets(labels, task, classes)
    p = np.asarray(probabilities, dtype=np.float64)
    ids = None if patients is None else list(patients)
    suffix = f" ({what}, n = {len(y)})" if what else ""
    written = {}
    curves = dict(patient_ids=ids, n_bootstrap=n_bootstrap, seed=seed)
    if task == "binary":
        t = threshold_values(task, classes, threshold_record)
        positive = f"positive class {shown[1]}" if len(shown) == 2 else ""
        if positive:
            suffix = f" ({positive}; {what}, n = {len(y)})" if what else f" ({positive})"
        plot_roc(y, p, folder / "roc.png", threshold=t, title=f"ROC curve{suffix}", **curves)
        plot_pr(y, p, folder / "pr.png", threshold=t, title=f"Precision-recall curve{suffix}", **curves)
        plot_reliability(y, p, folder / "reliability.png", title=f"Reliability diagram{suffix}")
        plot_confusion_matrix(y, (p >= t).astype(int), folder / "confusion_matrix.png", class_names=shown,
                              title=f"Confusion matrix at threshold {t:.3f}{suffix}")
        written = {name: f"{name}.png" for name in ("roc", "pr", "reliability", "confusion_matrix")}
    elif task == "multiclass":
        plot_roc(y, p, folder / "roc.png", class_names=shown, title=f"ROC curves, one vs rest{suffix}",
                 **curves)
        plot_pr(y, p, folder / "pr.png", class_names=shown, title=f"Precision-recall curves{suffix}",
                **curves)
        plot_confusion_matrix(y, np.argmax(p, axis=1), folder / "confusion_matrix.png", class_names=shown,
                              title=f"Confusion matrix (argmax){suffix}")
        written = {name: f"{name}.png" for name in ("roc", "pr", "confusion_matrix")}
    elif task == "multilabel":
        t = threshold_values(task, classes, threshold_record)
        plot_roc(y, p, folder / "roc.png", threshold=list(t), class_names=shown,
                 title=f"ROC curves per label{suffix}", **curves)
        plot_pr(y, p, folder / "pr.png", threshold=list(t), class_names=shown,
                title=f"Precision-recall curves per label{suffix}", **curves)
        written = {name: f"{name}.png" for name in ("roc", "pr")}
    else:
        plot_bland_altman(y, p.reshape(len(p), -1)[:, 0], folder / "bland_altman.png",
                          title=f"Bland-Altman plot{suffix}")
        written = {"bland_altman": "bland_altman.png"}
    return written


def prediction_table(cases: pd.DataFrame, task: str, classes, probabilities, threshold_record, *,
                     keep=("case_id", "patient", "label")) -> pd.DataFrame:
    """One row per case: the ``keep`` columns present in ``cases``, probabilities, predicted label, threshold.

    Columns: ``prob_<class>`` for every class (binary: both, ``prob_<negative> = 1 - p``) or ``prediction``
    for regression; ``predicted``; ``threshold`` (binary) or ``threshold_<label>`` (multilabel).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    table = pd.DataFrame({c: cases[c].to_numpy() for c in keep if c in cases.columns})
    thresholds = threshold_values(task, classes, threshold_record)
    if task == "binary":
        table[f"prob_{classes[0]}"] = 1.0 - p
        table[f"prob_{classes[1]}"] = p
    elif task in ("multiclass", "multilabel"):
        for j, name in enumerate(classes):
            table[f"prob_{name}"] = p[:, j]
    else:
        table["prediction"] = p.reshape(len(p), -1)[:, 0]
    table["predicted"] = predicted_labels(task, classes, p, thresholds)
    if task == "binary":
        table["threshold"] = thresholds
    elif task == "multilabel":
        for name, value in zip(classes, thresholds):
            table[f"threshold_{name}"] = value
    return table


def key_metric_rows(result: dict) -> list[tuple[str, dict]]:
    """``(name, {"estimate", "ci_low", "ci_high"})`` for the task's key metrics, then per class / label AUCs."""
    task = result.get("task")
    metrics = result.get("metrics") or {}
    rows = [(name, metrics[name]) for name in KEY_METRICS.get(task, ()) if name in metrics]
    for group in ("per_class", "per_label"):
        for name, values in (result.get(group) or {}).items():
            if isinstance(values, dict) and isinstance(values.get("roc_auc"), dict):
                rows.append((f"roc_auc[{name}]", values["roc_auc"]))
    if task == "regression":
        for name in ("bias", "loa_lower", "loa_upper"):
            value = (result.get("bland_altman") or {}).get(name)
            if isinstance(value, dict):
                rows.append((name, value))
    return rows


def _number(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3f}"


def format_summary(summary: dict, confidence: float = 0.95) -> str:
    """``0.912 (95% CI 0.850-0.960)``, or the estimate alone when there is no interval."""
    text = _number(summary.get("estimate"))
    low, high = summary.get("ci_low"), summary.get("ci_high")
    if low is None or high is None:
        return text
    return f"{text} ({confidence:.0%} CI {_number(low)}-{_number(high)})"
