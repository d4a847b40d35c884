"""Test-set metrics for each task type, each with a patient-level bootstrap confidence interval: the binary
metrics and the pieces every task shares (here), multiclass and multilabel (``_metrics_multi``), regression
(``_metrics_regression``).

Point estimates come from scikit-learn (``roc_auc_score``, ``average_precision_score``, ``confusion_matrix``,
``brier_score_loss``, ``cohen_kappa_score``, ``mean_absolute_error``, ``root_mean_squared_error``,
``r2_score``). The bootstrap recomputes them on 2000 resamples with vectorised kernels over case weights (see
``_bootstrap``), which the tests check against the same scikit-learn functions on resampled arrays.

Every function returns a JSON-able dict: numbers are Python floats or ints, an undefined value is ``None`` (never
NaN), and no patient id appears in it (only the number of patients).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, confusion_matrix, roc_auc_score

from .._errors import InputError
from ._bootstrap import bootstrap_info, run_bootstrap, summarize, weighted_rank_metrics
from ._calibration import expected_calibration_error, reliability_curve, weighted_ece
from ._checks import (
    as_binary_labels, as_probabilities, check_bootstrap_options, check_same_length, check_threshold, patient_codes,
)
from ._threshold import ThresholdChoice

__all__ = ["binary_metrics"]

_RULE = "positive if y_prob >= threshold"

DEFINITIONS = {
    "roc_auc": "area under the ROC curve (probability a random positive scores above a random negative)",
    "pr_auc": "area under the precision-recall curve as average precision (sklearn average_precision_score)",
    "accuracy": "(TP + TN) / all cases",
    "sensitivity": "TP / (TP + FN), recall, true positive rate",
    "specificity": "TN / (TN + FP), true negative rate",
    "ppv": "TP / (TP + FP), positive predictive value, precision; depends on prevalence",
    "npv": "TN / (TN + FN), negative predictive value; depends on prevalence",
    "f1": "2 TP / (2 TP + FP + FN)",
    "brier_score": "mean squared difference between probability and 0/1 outcome (0 is perfect)",
    "ece": "expected calibration error: case-weighted mean |observed fraction - mean probability| over "
           "equal-width bins",
    "prevalence": "fraction of positive cases in this set",
}


# ----------------------------------------------------------------------------------------------- shared pieces

def _rates(tn, fp, fn, tp) -> dict:
    """Threshold metrics from confusion counts (arrays broadcast); NaN where a denominator is 0."""
    tn, fp, fn, tp = (np.asarray(v, dtype=np.float64) for v in (tn, fp, fn, tp))
    total = tn + fp + fn + tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "accuracy": (tp + tn) / total,
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "ppv": tp / (tp + fp),
            "npv": tn / (tn + fn),
            "f1": 2 * tp / (2 * tp + fp + fn),
            "prevalence": (tp + fn) / total,
        }


def _confusion_kernel(true_index: np.ndarray, pred_index: np.ndarray, n_classes: int):
    """Kernel giving weighted confusion matrices ``(resamples, true, predicted)`` for many weight vectors."""
    one_hot = np.zeros((len(true_index), n_classes * n_classes))
    one_hot[np.arange(len(true_index)), true_index * n_classes + pred_index] = 1.0
    return lambda weights: (weights @ one_hot).reshape(len(weights), n_classes, n_classes)


def _setup(n_bootstrap, confidence, seed, patient_ids, n_cases):
    check_bootstrap_options(n_bootstrap, confidence, seed)
    codes, n_groups, given = patient_codes(patient_ids, n_cases)
    return codes, n_groups, given


def _bootstrap(kernel, codes, n_groups, n_bootstrap, seed) -> dict:
    return run_bootstrap(kernel, codes, n_groups, n_bootstrap, seed) if n_bootstrap else {}


def _header(task: str, n_cases: int, n_groups: int, given: bool) -> dict:
    return {"task": task, "n_cases": int(n_cases), "n_patients": int(n_groups) if given else None,
            "patient_ids_given": bool(given)}


def _float_or_none(value):
    value = float(value)
    return value if np.isfinite(value) else None


def _one_class_error(y: np.ndarray, name: str, what: str) -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise InputError(
            f"{name} holds only class {1 if n_pos else 0} ({len(y)} cases); {what} needs positive and negative "
            "cases. Evaluate on a set that contains both classes."
        )


def _confusion_dict(matrix: np.ndarray, names: Sequence[str]) -> dict:
    return {"class_order": list(names), "rows": "true class", "columns": "predicted class",
            "matrix": [[int(v) for v in row] for row in matrix]}


# ------------------------------------------------------------------------------------------------------ binary

# Over 100 lines: 47 are its docstring (the public reference of each metric); the body is one pass.
def binary_metrics(y_true, y_prob, *, threshold, patient_ids=None, n_bootstrap: int = 2000,
                   confidence: float = 0.95, seed: int | None = 0, n_bins: int = 10,
                   class_names: Sequence[str] | None = None) -> dict:
    """Radiology-grade metrics of a binary task, each with a patient-level bootstrap confidence interval.

    Reported: ROC AUC; PR AUC (average precision); at ``threshold`` (chosen on validation, see
    :func:`choose_threshold`; a case is positive when ``y_prob >= threshold``): accuracy, sensitivity,
    specificity, PPV, NPV and F1; the Brier score; the expected calibration error (``n_bins`` equal-width bins,
    see :func:`expected_calibration_error`); prevalence; the confusion matrix; the reliability-diagram data; the
    numbers of cases, positives, negatives and patients.

    Confidence intervals are percentile intervals over ``n_bootstrap`` resamples of *patients* (all cases of a
    drawn patient are taken together). Resamples where a metric is undefined (one class only for AUC; no
    positive call for PPV) are skipped for that metric; ``n_resamples_used`` says how many were used. Without
    ``patient_ids`` every case is its own patient, and the output says so.

    Args:
        y_true: 0/1 labels (1 = positive), one per case.
        y_prob: predicted probability of the positive class, one per case (shape ``(n,)`` or ``(n, 1)``).
        threshold: the decision threshold chosen on validation: a number in [0, 1] or a
            :class:`ThresholdChoice` (its method is then recorded too).
        patient_ids: patient id of each case, for the patient-level bootstrap; ``None``: one patient per case.
        n_bootstrap: number of bootstrap resamples; 0 gives point estimates only.
        confidence: coverage of the intervals (0.95 = 2.5th to 97.5th percentiles).
        seed: random seed of the bootstrap; the same seed gives the same intervals.
        n_bins: number of equal-width bins of the calibration error and reliability data.
        class_names: the names of the negative and the positive class (label 0, label 1), for people:
            ``("normal", "pneumonia")``. They name the confusion matrix's rows and the threshold rule, and are
            returned as ``negative_class`` / ``positive_class``; sensitivity is then the fraction of
            ``class_names[1]`` cases called ``class_names[1]``. Default: ``negative (0)`` / ``positive (1)``.

    Returns:
        A JSON-able dict: ``task``, ``positive_class`` and ``negative_class`` (``None`` without
        ``class_names``), ``n_cases``, ``n_patients`` (``None`` without ``patient_ids``),
        ``patient_ids_given``, ``n_positive``, ``n_negative``, ``threshold``
        (value, rule, how chosen), ``metrics`` (name -> ``{"estimate", "ci_low", "ci_high",
        "n_resamples_used"}``), ``confusion_matrix`` (class order negative, positive; rows true, columns
        predicted), ``calibration`` (reliability data), ``bootstrap`` (how intervals were made), ``definitions``
        and ``notes``.

    Raises:
        InputError: one class only in ``y_true``, labels other than 0/1, probabilities outside [0, 1], arrays of
            different lengths, a threshold outside [0, 1], bad bootstrap options.

    Example:
        >>> result = binary_metrics([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9], threshold=0.3,
        ...                         n_bootstrap=200)
        >>> result["metrics"]["sensitivity"]["estimate"], result["confusion_matrix"]["matrix"]
        (1.0, [[2, 1], [0, 3]])
    """
    y = as_binary_labels(y_true, "y_true")
    p = as_probabilities(y_prob, "y_prob")
    n = check_same_length(y_true=y, y_prob=p)
    if class_names is not None:
        if isinstance(class_names, str) or len(class_names) != 2:
            raise InputError(f"class_names must name the negative and the positive class, e.g. ('normal', "
                             f"'pneumonia'); received {class_names!r}.")
        negative, positive = (str(c) for c in class_names)
        rule = f"{positive} (positive) if y_prob >= threshold, else {negative}"
        order_names = [f"{negative} (negative)", f"{positive} (positive)"]
    else:
        negative = positive = None
        rule, order_names = _RULE, ["negative (0)", "positive (1)"]
    if isinstance(threshold, ThresholdChoice):
        threshold_info = {"value": float(threshold.threshold), "rule": rule,
                          "chosen_on_validation": threshold.to_dict()}
        t = check_threshold(threshold.threshold)
    else:
        t = check_threshold(threshold)
        threshold_info = {"value": t, "rule": rule, "chosen_on_validation": None}
    codes, n_groups, given = _setup(n_bootstrap, confidence, seed, patient_ids, n)
    _one_class_error(y, "y_true", "ROC AUC, sensitivity and specificity each")
    calibration = reliability_curve(y, p, n_bins)  # also checks n_bins

    predicted = (p >= t).astype(np.int64)
    matrix = confusion_matrix(y, predicted, labels=[0, 1])
    (tn, fp), (fn, tp) = matrix
    point = {"roc_auc": roc_auc_score(y, p), "pr_auc": average_precision_score(y, p)}
    point.update(_rates(tn, fp, fn, tp))
    point["brier_score"] = brier_score_loss(y, p)
    point["ece"] = expected_calibration_error(y, p, n_bins)

    rank = weighted_rank_metrics(y, p)
    confusion = _confusion_kernel(y, predicted, 2)
    ece = weighted_ece(y, p, n_bins)
    squared_error = (p - y) ** 2

    def kernel(weights):
        c = confusion(weights)
        out = rank(weights)
        out.update(_rates(c[:, 0, 0], c[:, 0, 1], c[:, 1, 0], c[:, 1, 1]))
        out["brier_score"] = weights @ squared_error / weights.sum(axis=1)
        out["ece"] = ece(weights)
        return out

    values = _bootstrap(kernel, codes, n_groups, n_bootstrap, seed)
    order = ["roc_auc", "pr_auc", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "brier_score",
             "ece", "prevalence"]
    notes = []
    if tp + fp == 0:
        notes.append("No case was called positive at this threshold: PPV is undefined.")
    if tn + fn == 0:
        notes.append("Every case was called positive at this threshold: NPV is undefined.")
    result = _header("binary", n, n_groups, given)
    result.update(
        positive_class=positive,
        negative_class=negative,
        n_positive=int(y.sum()),
        n_negative=int(n - y.sum()),
        threshold=threshold_info,
        metrics={name: summarize(point[name], values.get(name), confidence) for name in order},
        confusion_matrix=_confusion_dict(matrix, order_names),
        calibration=calibration,
        bootstrap=bootstrap_info(n_bootstrap, confidence, seed, n_groups, given),
        definitions={name: DEFINITIONS[name] for name in order},
        notes=notes,
    )
    return result
