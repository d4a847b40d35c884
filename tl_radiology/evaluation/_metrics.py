"""Test-set metrics for each task type, each with a patient-level bootstrap confidence interval.

Point estimates come from scikit-learn (``roc_auc_score``, ``average_precision_score``, ``confusion_matrix``,
``brier_score_loss``, ``cohen_kappa_score``, ``mean_absolute_error``, ``root_mean_squared_error``,
``r2_score``). The bootstrap recomputes them on 2000 resamples with vectorised kernels over case weights (see
``_bootstrap``), which the tests check against the same scikit-learn functions on resampled arrays.

Every function returns a JSON-able dict: numbers are Python floats or ints, an undefined value is ``None`` (never
NaN), and no patient id appears in it (only the number of patients).
"""

from __future__ import annotations

import numbers
from typing import Mapping, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    cohen_kappa_score,
    confusion_matrix,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from .._errors import InputError
from ._bootstrap import bootstrap_info, run_bootstrap, summarize, weighted_rank_metrics
from ._calibration import expected_calibration_error, reliability_curve, weighted_ece
from ._checks import (
    as_binary_labels,
    as_class_indices,
    as_label_matrix,
    as_probabilities,
    as_values,
    check_bootstrap_options,
    check_names,
    check_same_length,
    check_threshold,
    patient_codes,
)
from ._threshold import ThresholdChoice

__all__ = ["binary_metrics", "multiclass_metrics", "multilabel_metrics", "regression_metrics"]

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


# -------------------------------------------------------------------------------------------------- multiclass

def multiclass_metrics(y_true, y_prob, *, class_names, patient_ids=None, ordinal: bool = False,
                       n_bootstrap: int = 2000, confidence: float = 0.95, seed: int | None = 0) -> dict:
    """Metrics of a single-label multiclass task (softmax outputs), with patient-level bootstrap intervals.

    Reported: accuracy of the argmax prediction; one-vs-rest ROC AUC per class and their unweighted mean (macro
    AUC, as ``roc_auc_score(multi_class="ovr", average="macro")``); per-class sensitivity and specificity of the
    argmax prediction (class k against the rest); the confusion matrix; and with ``ordinal=True`` the
    quadratic-weighted Cohen's kappa, which counts a grade 4 called grade 3 as a smaller error than grade 4
    called grade 0 (ordered grades such as diabetic-retinopathy severity; class order = grade order).

    A class absent from ``y_true`` has no AUC (``None``, with a note) and the macro AUC averages the classes
    that have one. Intervals: see :func:`binary_metrics`.

    Args:
        y_true: class of each case, as an index 0..K-1 or as a name from ``class_names``.
        y_prob: ``(n, K)`` predicted probabilities, rows summing to 1.
        class_names: one name per column of ``y_prob``, in order (for ordinal grades: lowest grade first).
        patient_ids: patient id of each case; ``None``: one patient per case.
        ordinal: also report the quadratic-weighted kappa.
        n_bootstrap, confidence, seed: the bootstrap, as in :func:`binary_metrics`.

    Returns:
        A JSON-able dict: ``task``, ``class_names``, ``n_cases``, ``n_patients``, ``class_counts``,
        ``prediction_rule``, ``metrics`` (``accuracy``, ``macro_roc_auc``, optional
        ``quadratic_weighted_kappa``), ``per_class`` (name -> ``roc_auc``, ``sensitivity``, ``specificity``,
        ``n_cases``), ``confusion_matrix``, ``bootstrap``, ``notes``.

    Raises:
        InputError: fewer than 2 classes, names not matching the columns, rows not summing to 1, labels outside
            the classes, probabilities outside [0, 1], different lengths, bad bootstrap options.

    Example:
        >>> result = multiclass_metrics([0, 1, 2, 2], [[.8, .1, .1], [.2, .7, .1], [.1, .2, .7], [.3, .3, .4]],
        ...                             class_names=["none", "mild", "severe"], ordinal=True, n_bootstrap=0)
        >>> result["metrics"]["accuracy"]["estimate"], result["metrics"]["quadratic_weighted_kappa"]["estimate"]
        (1.0, 1.0)
    """
    p = as_probabilities(y_prob, "y_prob", ndim=2)
    k = p.shape[1]
    if k < 2:
        raise InputError(f"y_prob has {k} column; a multiclass task needs one column per class (2 or more).")
    names = check_names(class_names, k, argument="class_names", axis="class (column of y_prob)")
    y = as_class_indices(y_true, names, "y_true")
    n = check_same_length(y_true=y, y_prob=p)
    sums = p.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > 1e-3)
    if off.size:
        raise InputError(
            f"y_prob rows must sum to 1 (softmax outputs); {off.size} rows do not (row {off[0]} sums to "
            f"{sums[off[0]]:.4g}). For independent labels (sigmoid outputs) use multilabel_metrics."
        )
    codes, n_groups, given = _setup(n_bootstrap, confidence, seed, patient_ids, n)

    predicted = np.argmax(p, axis=1)
    matrix = confusion_matrix(y, predicted, labels=np.arange(k))
    counts = np.bincount(y, minlength=k)
    defined = [c for c in range(k) if 0 < counts[c] < n]
    notes = [f"Class {names[c]!r} has no cases in y_true: its AUC and sensitivity are undefined."
             for c in range(k) if counts[c] == 0]
    if not defined:
        raise InputError(
            f"y_true holds only class {names[int(y[0])]!r} ({n} cases); AUC needs cases of at least two classes."
        )
    auc_point = {c: roc_auc_score(y == c, p[:, c]) for c in defined}
    point = {"accuracy": accuracy_score(y, predicted), "macro_roc_auc": float(np.mean(list(auc_point.values())))}
    if ordinal:
        point["quadratic_weighted_kappa"] = cohen_kappa_score(y, predicted, labels=np.arange(k),
                                                              weights="quadratic")
    per_class_point = _per_class_rates(matrix[None].astype(np.float64))

    rank = {c: weighted_rank_metrics((y == c).astype(np.int64), p[:, c]) for c in defined}
    confusion = _confusion_kernel(y, predicted, k)
    grade = np.arange(k)
    kappa_weights = (grade[:, None] - grade[None, :]) ** 2.0

    def kernel(weights):
        c = confusion(weights)
        aucs = np.column_stack([rank[cls](weights)["roc_auc"] for cls in defined])
        out = {"accuracy": np.trace(c, axis1=1, axis2=2) / c.sum(axis=(1, 2)), "macro_roc_auc": aucs.mean(axis=1)}
        for i, cls in enumerate(defined):
            out[("roc_auc", cls)] = aucs[:, i]
        for key, values in _per_class_rates(c).items():
            for cls in range(k):
                out[(key, cls)] = values[:, cls]
        if ordinal:
            out["quadratic_weighted_kappa"] = _quadratic_kappa(c, kappa_weights)
        return out

    values = _bootstrap(kernel, codes, n_groups, n_bootstrap, seed)
    metrics = {name: summarize(point[name], values.get(name), confidence) for name in point}
    per_class = {}
    for cls, name in enumerate(names):
        entry = {"n_cases": int(counts[cls])}
        entry["roc_auc"] = (summarize(auc_point[cls], values.get(("roc_auc", cls)), confidence)
                            if cls in auc_point else summarize(None, None, confidence))
        for key in ("sensitivity", "specificity"):
            entry[key] = summarize(per_class_point[key][0, cls], values.get((key, cls)), confidence)
        per_class[name] = entry
    if len(defined) < k:
        notes.append(f"macro_roc_auc averages the {len(defined)} classes with an AUC.")
    result = _header("multiclass", n, n_groups, given)
    result.update(
        class_names=names,
        class_counts={name: int(counts[c]) for c, name in enumerate(names)},
        prediction_rule="argmax of y_prob",
        metrics=metrics,
        per_class=per_class,
        confusion_matrix=_confusion_dict(matrix, names),
        bootstrap=bootstrap_info(n_bootstrap, confidence, seed, n_groups, given),
        notes=notes,
    )
    return result


def _per_class_rates(c: np.ndarray) -> dict:
    """One-vs-rest sensitivity and specificity per class from confusion matrices ``(resamples, K, K)``."""
    total = c.sum(axis=(1, 2))[:, None]
    hit = np.diagonal(c, axis1=1, axis2=2)
    true_count = c.sum(axis=2)
    called = c.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"sensitivity": hit / true_count,
                "specificity": (total - true_count - called + hit) / (total - true_count)}


def _quadratic_kappa(c: np.ndarray, kappa_weights: np.ndarray) -> np.ndarray:
    """Quadratic-weighted kappa of confusion matrices ``(resamples, K, K)``, as sklearn's cohen_kappa_score."""
    total = c.sum(axis=(1, 2))
    expected = c.sum(axis=2)[:, :, None] * c.sum(axis=1)[:, None, :] / total[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - (c * kappa_weights).sum(axis=(1, 2)) / (expected * kappa_weights).sum(axis=(1, 2))


# -------------------------------------------------------------------------------------------------- multilabel

def _label_thresholds(thresholds, names: list[str]) -> np.ndarray:
    if thresholds is None:
        raise InputError("multilabel_metrics needs thresholds: one number for all labels, a list with one per "
                         "label, or a dict by label name, chosen on validation (choose_threshold per label).")
    if isinstance(thresholds, (numbers.Real, ThresholdChoice)) and not isinstance(thresholds, bool):
        thresholds = [thresholds] * len(names)
    elif isinstance(thresholds, Mapping):
        missing = [n for n in names if n not in thresholds]
        extra = [str(n) for n in thresholds if n not in names]
        if missing or extra:
            raise InputError(
                f"thresholds must have one entry per label; missing {missing}, unknown {extra}. "
                f"Labels: {', '.join(names)}."
            )
        thresholds = [thresholds[n] for n in names]
    else:
        thresholds = list(thresholds)
        if len(thresholds) != len(names):
            raise InputError(f"thresholds has {len(thresholds)} values but there are {len(names)} labels; "
                             "pass one per label, in label_names order.")
    return np.array([check_threshold(t.threshold if isinstance(t, ThresholdChoice) else t,
                                     f"thresholds[{names[i]!r}]") for i, t in enumerate(thresholds)])


def multilabel_metrics(y_true, y_prob, *, label_names, thresholds, patient_ids=None, n_bootstrap: int = 2000,
                       confidence: float = 0.95, seed: int | None = 0) -> dict:
    """Metrics of a multilabel task (independent sigmoid outputs), with patient-level bootstrap intervals.

    Reported per label: ROC AUC, PR AUC (average precision), and sensitivity and specificity at that label's
    threshold (positive when ``y_prob >= threshold``; choose each on validation with :func:`choose_threshold`);
    the number of positive cases and the prevalence. Overall: the macro ROC AUC (unweighted mean over labels).

    A label with one class only in ``y_true`` has no AUC (``None``, with a note) and the macro AUC averages the
    labels that have one. Intervals: see :func:`binary_metrics`.

    Args:
        y_true: ``(n, L)`` 0/1 indicator matrix.
        y_prob: ``(n, L)`` predicted probabilities.
        label_names: one name per column.
        thresholds: one number for all labels, a sequence with one per label, or a dict by label name; numbers
            or :class:`ThresholdChoice` objects.
        patient_ids: patient id of each case; ``None``: one patient per case.
        n_bootstrap, confidence, seed: the bootstrap, as in :func:`binary_metrics`.

    Returns:
        A JSON-able dict: ``task``, ``label_names``, ``n_cases``, ``n_patients``, ``metrics``
        (``macro_roc_auc``), ``per_label`` (name -> ``threshold``, ``n_positive``, ``prevalence``, ``roc_auc``,
        ``pr_auc``, ``sensitivity``, ``specificity``), ``bootstrap``, ``notes``.

    Raises:
        InputError: shapes that differ, names not matching the columns, thresholds missing or outside [0, 1],
            labels other than 0/1, probabilities outside [0, 1], bad bootstrap options.

    Example:
        >>> result = multilabel_metrics([[1, 0], [0, 1], [1, 1], [0, 0]],
        ...                             [[.9, .2], [.3, .6], [.7, .8], [.1, .4]],
        ...                             label_names=["effusion", "nodule"], thresholds=0.5, n_bootstrap=0)
        >>> result["per_label"]["nodule"]["roc_auc"]["estimate"], result["metrics"]["macro_roc_auc"]["estimate"]
        (1.0, 1.0)
    """
    y = as_label_matrix(y_true, "y_true")
    p = as_probabilities(y_prob, "y_prob", ndim=2)
    n = check_same_length(y_true=y, y_prob=p)
    if y.shape[1] != p.shape[1]:
        raise InputError(f"y_true has {y.shape[1]} label columns but y_prob has {p.shape[1]}; pass one column "
                         "per label in both.")
    n_labels = p.shape[1]
    names = check_names(label_names, n_labels, argument="label_names", axis="label (column of y_prob)")
    cutoffs = _label_thresholds(thresholds, names)
    codes, n_groups, given = _setup(n_bootstrap, confidence, seed, patient_ids, n)

    positives = y.sum(axis=0)
    defined = [j for j in range(n_labels) if 0 < positives[j] < n]
    notes = [f"Label {names[j]!r} has only class {1 if positives[j] else 0} in y_true: its AUC is undefined."
             for j in range(n_labels) if j not in defined]
    if not defined:
        raise InputError("Every label in y_true has one class only; AUC needs positive and negative cases for at "
                         "least one label. Evaluate on a larger set.")
    predicted = (p >= cutoffs).astype(np.int64)
    auc_point = {j: (roc_auc_score(y[:, j], p[:, j]), average_precision_score(y[:, j], p[:, j]))
                 for j in defined}
    rate_point = {j: _rates(*confusion_matrix(y[:, j], predicted[:, j], labels=[0, 1]).ravel())
                  for j in range(n_labels)}

    rank = {j: weighted_rank_metrics(y[:, j], p[:, j]) for j in defined}
    # One 2 x 2 confusion matrix per label: column 4 j + 2 y + predicted.
    one_hot = np.zeros((n, 4 * n_labels))
    rows = np.repeat(np.arange(n), n_labels)
    cols = (4 * np.arange(n_labels) + 2 * y + predicted).ravel()
    one_hot[rows, cols] = 1.0

    def kernel(weights):
        c = (weights @ one_hot).reshape(len(weights), n_labels, 2, 2)
        rates = _rates(c[..., 0, 0], c[..., 0, 1], c[..., 1, 0], c[..., 1, 1])
        out = {}
        aucs = []
        for j in defined:
            ranked = rank[j](weights)
            out[("roc_auc", j)], out[("pr_auc", j)] = ranked["roc_auc"], ranked["pr_auc"]
            aucs.append(ranked["roc_auc"])
        out["macro_roc_auc"] = np.mean(aucs, axis=0)
        for j in range(n_labels):
            for key in ("sensitivity", "specificity", "prevalence"):
                out[(key, j)] = rates[key][:, j]
        return out

    values = _bootstrap(kernel, codes, n_groups, n_bootstrap, seed)
    macro = float(np.mean([auc_point[j][0] for j in defined]))
    per_label = {}
    for j, name in enumerate(names):
        entry = {"threshold": float(cutoffs[j]), "n_positive": int(positives[j])}
        entry["prevalence"] = summarize(rate_point[j]["prevalence"], values.get(("prevalence", j)), confidence)
        for i, key in enumerate(("roc_auc", "pr_auc")):
            entry[key] = (summarize(auc_point[j][i], values.get((key, j)), confidence) if j in auc_point
                          else summarize(None, None, confidence))
        for key in ("sensitivity", "specificity"):
            entry[key] = summarize(rate_point[j][key], values.get((key, j)), confidence)
        per_label[name] = entry
    if len(defined) < n_labels:
        notes.append(f"macro_roc_auc averages the {len(defined)} labels with an AUC.")
    result = _header("multilabel", n, n_groups, given)
    result.update(
        label_names=names,
        threshold_rule=_RULE,
        metrics={"macro_roc_auc": summarize(macro, values.get("macro_roc_auc"), confidence)},
        per_label=per_label,
        bootstrap=bootstrap_info(n_bootstrap, confidence, seed, n_groups, given),
        notes=notes,
    )
    return result


# -------------------------------------------------------------------------------------------------- regression

LOA_MULTIPLIER = 1.96


def regression_metrics(y_true, y_pred, *, patient_ids=None, n_bootstrap: int = 2000, confidence: float = 0.95,
                       seed: int | None = 0) -> dict:
    """Metrics of a regression task (e.g. an age, a volume, a score), with patient-level bootstrap intervals.

    Reported: MAE, RMSE and R² (``r2_score``; undefined when ``y_true`` is constant), and the Bland–Altman
    agreement statistics of the differences ``y_pred - y_true``: the bias (mean difference), the SD of the
    differences (n - 1 denominator) and the 95% limits of agreement ``bias ± 1.96 SD``, each with an interval.
    The limits treat every case as one measurement; with several cases per patient the patient bootstrap
    widens their intervals accordingly.

    Args:
        y_true: reference values, one per case.
        y_pred: predicted values, one per case (shape ``(n,)`` or ``(n, 1)``).
        patient_ids: patient id of each case; ``None``: one patient per case.
        n_bootstrap, confidence, seed: the bootstrap, as in :func:`binary_metrics`.

    Returns:
        A JSON-able dict: ``task``, ``n_cases``, ``n_patients``, ``metrics`` (``mae``, ``rmse``, ``r2``),
        ``bland_altman`` (``difference``, ``bias``, ``sd_difference``, ``loa_lower``, ``loa_upper``,
        ``loa_multiplier``), ``bootstrap``.

    Raises:
        InputError: fewer than 2 cases, NaN/inf values, different lengths, bad bootstrap options.

    Example:
        >>> result = regression_metrics([50, 60, 70, 80], [52, 59, 73, 80], n_bootstrap=0)
        >>> result["metrics"]["mae"]["estimate"], result["bland_altman"]["bias"]["estimate"]
        (1.5, 1.0)
    """
    y = as_values(y_true, "y_true")
    yhat = as_values(y_pred, "y_pred")
    n = check_same_length(y_true=y, y_pred=yhat)
    if n < 2:
        raise InputError(f"regression_metrics needs at least 2 cases; received {n}.")
    codes, n_groups, given = _setup(n_bootstrap, confidence, seed, patient_ids, n)

    diff = yhat - y
    sd = float(np.std(diff, ddof=1))
    bias = float(np.mean(diff))
    point = {"mae": mean_absolute_error(y, yhat), "rmse": root_mean_squared_error(y, yhat),
             "r2": r2_score(y, yhat, force_finite=False),
             "bias": bias, "sd_difference": sd,
             "loa_lower": bias - LOA_MULTIPLIER * sd, "loa_upper": bias + LOA_MULTIPLIER * sd}

    # Centre before squaring sums so variances of large values (e.g. volumes in mm³) keep their precision.
    y_c = y - y.mean()
    d_c = diff - bias
    columns = np.column_stack([np.abs(diff), diff ** 2, y_c, y_c ** 2, d_c, d_c ** 2])

    def kernel(weights):
        total = weights.sum(axis=1)
        s_abs, s_sq, s_y, s_y2, s_d, s_d2 = (weights @ columns).T
        with np.errstate(divide="ignore", invalid="ignore"):
            ss_tot = s_y2 - s_y ** 2 / total
            r2 = 1.0 - s_sq / ss_tot
            r2[ss_tot <= 1e-12 * np.maximum(s_y2, 1e-300)] = np.nan
            mean_d = bias + s_d / total
            sd_d = np.sqrt(np.maximum(s_d2 - s_d ** 2 / total, 0.0) / (total - 1))
        return {"mae": s_abs / total, "rmse": np.sqrt(s_sq / total), "r2": r2, "bias": mean_d,
                "sd_difference": sd_d, "loa_lower": mean_d - LOA_MULTIPLIER * sd_d,
                "loa_upper": mean_d + LOA_MULTIPLIER * sd_d}

    values = _bootstrap(kernel, codes, n_groups, n_bootstrap, seed)
    result = _header("regression", n, n_groups, given)
    result.update(
        metrics={name: summarize(point[name], values.get(name), confidence) for name in ("mae", "rmse", "r2")},
        bland_altman={
            "difference": "y_pred - y_true",
            **{name: summarize(point[name], values.get(name), confidence)
               for name in ("bias", "sd_difference", "loa_lower", "loa_upper")},
            "loa_multiplier": LOA_MULTIPLIER,
        },
        bootstrap=bootstrap_info(n_bootstrap, confidence, seed, n_groups, given),
        notes=[] if np.ptp(y) > 0 else ["y_true is constant: R² is undefined."],
    )
    return result
