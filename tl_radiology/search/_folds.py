"""Patient-grouped, stratified K-fold cross-validation over the train + validation cases (never the test set).

With few patients one validation split is a noisy judge of hyperparameters; averaging the objective over K
folds is steadier. Folds keep every case of a patient on one side (``StratifiedGroupKFold`` over the ``patient``
column), so a fold never validates on a patient it trained on.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from .._errors import InputError

__all__ = ["pool_cases", "patient_folds", "label_text", "describe_folds"]


def label_text(value) -> str:
    """A label as text (``1.0`` read from a CSV as a number -> ``"1"``), as the data part encodes it."""
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def pool_cases(train_cases: pd.DataFrame, val_cases: pd.DataFrame) -> pd.DataFrame:
    """Train and validation cases in one table (train rows first), index reset."""
    return pd.concat([train_cases, val_cases], ignore_index=True, sort=False)


def patient_folds(cases: pd.DataFrame, num_folds, *, task: str, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split ``cases`` into ``num_folds`` (train, validation) index pairs, grouped by patient.

    Binary and multiclass tasks are stratified by label (``StratifiedGroupKFold``); multilabel and regression
    tasks are grouped only (``GroupKFold``). Each class must have at least ``num_folds`` patients, so every
    fold's validation part holds every class (AUC needs both).

    Args:
        cases: the pooled train + validation case table, with ``patient`` and ``label`` columns.
        num_folds: K >= 2.
        task: the task name.
        seed: shuffling seed of the fold assignment.

    Returns:
        A list of K ``(train_positions, val_positions)`` pairs of row positions into ``cases``.

    Raises:
        InputError: K < 2, no ``patient`` column, fewer patients than folds, a class with fewer patients than
            folds (named, with the largest K that works).

    Example:
        >>> folds = patient_folds(pool_cases(train, val), 5, task="binary")  # doctest: +SKIP
    """
    if isinstance(num_folds, bool) or not isinstance(num_folds, numbers.Integral) or num_folds < 2:
        raise InputError(f"Expected cv_folds to be an integer >= 2 (or None for one validation split); received "
                         f"{num_folds!r}.")
    num_folds = int(num_folds)
    if "patient" not in cases.columns:
        raise InputError(
            "cv_folds needs the cases' 'patient' column to keep each patient in one fold; the case table has "
            f"{', '.join(map(str, cases.columns))}. Use Manifest(...).cases or RunDir(...).cases(split)."
        )
    groups = pd.factorize(cases["patient"].astype(str))[0]
    num_patients = int(groups.max()) + 1 if len(groups) else 0
    if num_patients < num_folds:
        raise InputError(
            f"cv_folds={num_folds} needs at least {num_folds} patients; the train and validation cases have "
            f"{num_patients}. Use cv_folds <= {num_patients}."
        )
    # deferred: scikit-learn, only when folds are made
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    placeholder = np.zeros((len(cases), 1))
    if task in ("binary", "multiclass"):
        labels = np.asarray([label_text(v) for v in cases["label"]])
        per_class = {str(c): len(set(groups[labels == c])) for c in sorted(set(labels))}
        rare, count = min(per_class.items(), key=lambda kv: kv[1])
        if count < num_folds:
            raise InputError(
                f"cv_folds={num_folds}: class {rare!r} has only {count} patient(s) among the train and validation "
                f"cases, so some folds would validate without it. Use cv_folds <= {max(count, 2)}"
                + (" or one validation split (cv_folds=None)." if count < 2 else ".")
            )
        splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
        splits = list(splitter.split(placeholder, labels, groups))
        for k, (_, val_index) in enumerate(splits):
            missing = sorted(str(c) for c in set(labels) - set(labels[val_index]))
            if missing:  # StratifiedGroupKFold balances greedily; with big patients a class can still miss a fold
                raise InputError(
                    f"cv_folds={num_folds}: fold {k + 1}'s validation part has no case of class "
                    f"{', '.join(map(repr, missing))}. Use fewer folds, or one validation split (cv_folds=None)."
                )
    else:
        try:
            splitter = GroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
        except TypeError:  # scikit-learn < 1.6 has no shuffling GroupKFold
            splitter = GroupKFold(n_splits=num_folds)
        splits = list(splitter.split(placeholder, groups=groups))
    return [(np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64)) for train, val in splits]


def describe_folds(cases: pd.DataFrame, folds) -> list[dict] | None:
    """Per fold: case and patient counts and the validation cases' (pseudonymous) ids, for the summary."""
    if not folds:
        return None
    out = []
    for k, (train_index, val_index) in enumerate(folds):
        val = cases.iloc[val_index]
        entry = {"fold": k + 1, "train_cases": int(len(train_index)), "val_cases": int(len(val_index)),
                 "val_patients": int(val["patient"].nunique())}
        if "label" in val.columns:
            entry["val_labels"] = {str(k): int(v) for k, v in val["label"].map(label_text).value_counts().items()}
        if "case_id" in val.columns:
            entry["val_case_ids"] = [str(c) for c in val["case_id"]]
        out.append(entry)
    return out
