"""Is the model better than knowing nothing? The prevalence-only baseline, on validation and on the test set.

A model that always answers the commonest class reaches an accuracy equal to that class's share of the cases, and
one that ranks cases at random an AUC of 0.5. A fine-tuned network can land below either (a small data set, random
weights, a bad learning rate) and still print plausible-looking numbers; a reader must be told. This module
compares a scored result (see :func:`~tl_radiology.evaluation.score`) with those two baselines and words the
warning that run summaries, ``final_test.json`` and the report show.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["compare_with_baseline"]


def _estimate(metrics: dict, name: str):
    value = metrics.get(name)
    return value if isinstance(value, dict) and value.get("estimate") is not None else None


def compare_with_baseline(task: str, classes, labels, result: dict, *, what: str = "test set") -> dict | None:
    """Compare a scored result with the prevalence-only (majority-class) baseline and with chance.

    Rules: *no better than the majority class* when the model's accuracy is at most the share of the commonest
    class in these cases (binary and multiclass); *not distinguishable from chance* when the 95% interval of the AUC
    (``roc_auc``, or ``macro_roc_auc``) reaches down to 0.5 or below.

    Args:
        task: ``"binary"``, ``"multiclass"``, ``"multilabel"`` or ``"regression"``.
        classes: the class names.
        labels: the cases' labels (as in the manifest).
        result: what :func:`~tl_radiology.evaluation.score` returned for these cases.
        what: how to name the cases in the warning (``"test set"``, ``"validation"``).

    Returns:
        ``None`` for regression; else ``{"majority_class", "majority_accuracy", "accuracy", "auc", "auc_ci_low",
        "no_better_than_majority", "no_better_than_chance", "warning"}`` (``warning`` is ``None`` when the
        model beats both).

    Example:
        >>> compare_with_baseline("binary", ["0", "1"], ["1", "1", "1", "0"],
        ...     {"metrics": {"accuracy": {"estimate": 0.5}, "roc_auc": {"estimate": 0.6, "ci_low": 0.4}}})["warning"]
        'On the test set the model is no better than always answering the majority class (accuracy 0.500 vs 0.750 for always "1") and not distinguishable from chance (AUC 0.600, 95% CI from 0.400 includes 0.5).'
    """
    if task == "regression":
        return None
    metrics = result.get("metrics") or {}
    record = {"majority_class": None, "majority_accuracy": None, "accuracy": None, "auc": None, "auc_ci_low": None,
              "no_better_than_majority": False, "no_better_than_chance": False, "warning": None}
    problems = []
    if task in ("binary", "multiclass"):
        counts = pd.Series([str(v) for v in labels]).value_counts()
        if len(counts):
            record["majority_class"] = str(counts.index[0])
            record["majority_accuracy"] = float(counts.iloc[0] / counts.sum())
        accuracy = _estimate(metrics, "accuracy")
        if accuracy is not None and record["majority_accuracy"] is not None:
            record["accuracy"] = float(accuracy["estimate"])
            if record["accuracy"] <= record["majority_accuracy"] + 1e-12:
                record["no_better_than_majority"] = True
                problems.append(
                    f"no better than always answering the majority class (accuracy {record['accuracy']:.3f} vs "
                    f"{record['majority_accuracy']:.3f} for always \"{record['majority_class']}\")"
                )
    auc = _estimate(metrics, "roc_auc" if task == "binary" else "macro_roc_auc")
    if auc is not None:
        record["auc"] = float(auc["estimate"])
        low = auc.get("ci_low")
        record["auc_ci_low"] = None if low is None else float(low)
        reference = record["auc_ci_low"] if record["auc_ci_low"] is not None else record["auc"]
        if reference <= 0.5:
            record["no_better_than_chance"] = True
            interval = f", 95% CI from {record['auc_ci_low']:.3f} includes 0.5" if record["auc_ci_low"] is not None \
                else ""
            problems.append(f"not distinguishable from chance (AUC {record['auc']:.3f}{interval})")
    if problems:
        place = "On the test set" if what == "test set" else f"On {what}"
        record["warning"] = f"{place} the model is " + " and ".join(problems) + "."
    return record
