"""Multiclass and multilabel metrics (per-class rates, macro AUCs, kappa, per-label thresholds), each with a
patient-level bootstrap confidence interval; the pieces all tasks share are in ``_metrics``.
"""

from __future__ import annotations

import numbers
from typing import Mapping

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, cohen_kappa_score, confusion_matrix, roc_auc_score

from .._errors import InputError
from ._bootstrap import bootstrap_info, summarize, weighted_rank_metrics
from ._checks import (
    as_class_indices, as_label_matrix, as_probabilities, check_names, check_same_length, check_threshold,
)
from ._metrics import _RULE, _bootstrap, _confusion_dict, _confusion_kernel, _header, _rates, _setup
from ._threshold import ThresholdChoice

__all__ = ["multiclass_metrics", "multilabel_metrics"]


# -------------------------------------------------------------------------------------------------- multiclass

# Over 100 lines: 35 are its docstring (the public reference of each metric); the body is one pass.
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
    per_class = {
        name: {"n_cases": int(counts[cls]),
               **_summaries(cls, values, confidence, roc_auc=auc_point.get(cls),
                            sensitivity=per_class_point["sensitivity"][0, cls],
                            specificity=per_class_point["specificity"][0, cls])}
        for cls, name in enumerate(names)
    }
    return _result(
        "multiclass", (n, n_groups, given), bootstrap_info(n_bootstrap, confidence, seed, n_groups, given), notes,
        (len(defined), k, "classes"),
        class_names=names,
        class_counts={name: int(counts[c]) for c, name in enumerate(names)},
        prediction_rule="argmax of y_prob",
        metrics=metrics,
        per_class=per_class,
        confusion_matrix=_confusion_dict(matrix, names),
    )


def _summaries(index: int, values: dict, confidence: float, **estimates) -> dict:
    """Each metric of one class or label, in the order given: its estimate (``None`` where it is undefined) and
    its interval from the bootstrap values, which are keyed ``(metric, index)``."""
    return {key: summarize(estimate, values.get((key, index)), confidence) for key, estimate in estimates.items()}


def _result(task: str, header: tuple, bootstrap: dict, notes: list, macro: tuple, **fields) -> dict:
    """What a multiclass or multilabel task returns: the header, then ``fields`` in order, the bootstrap and the
    notes; ``macro`` (how many have an AUC, of how many, "classes" or "labels") adds a note when the macro AUC
    averages fewer than all."""
    with_auc, total, what = macro
    if with_auc < total:
        notes.append(f"macro_roc_auc averages the {with_auc} {what} with an AUC.")
    result = _header(task, *header)
    result.update(fields, bootstrap=bootstrap, notes=notes)
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


# Over 100 lines: 34 are its docstring (the public reference of each metric); the body is one pass.
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
        roc_auc, pr_auc = auc_point.get(j, (None, None))
        rates = rate_point[j]
        per_label[name] = {
            "threshold": float(cutoffs[j]), "n_positive": int(positives[j]),
            **_summaries(j, values, confidence, prevalence=rates["prevalence"], roc_auc=roc_auc, pr_auc=pr_auc,
                         sensitivity=rates["sensitivity"], specificity=rates["specificity"]),
        }
    return _result(
        "multilabel", (n, n_groups, given), bootstrap_info(n_bootstrap, confidence, seed, n_groups, given), notes,
        (len(defined), n_labels, "labels"),
        label_names=names,
        threshold_rule=_RULE,
        metrics={"macro_roc_auc": summarize(macro, values.get("macro_roc_auc"), confidence)},
        per_label=per_label,
    )
