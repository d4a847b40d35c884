"""Input checks shared by the metric, threshold, calibration and plot functions.

Each check returns a new array (inputs are never modified) or raises :class:`~tl_radiology._errors.InputError`
with a one-line message naming the argument, what was received and the fix.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from .._errors import InputError

__all__ = [
    "as_binary_labels",
    "as_probabilities",
    "as_label_matrix",
    "as_class_indices",
    "as_values",
    "check_same_length",
    "check_names",
    "patient_codes",
    "check_bootstrap_options",
    "check_threshold",
]


def _preview(values, limit: int = 6) -> str:
    values = list(values)
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def _as_array(values, name: str) -> np.ndarray:
    if values is None:
        raise InputError(f"{name} is None; pass an array with one value per case.")
    try:
        array = np.array(values)  # a copy: callers may change it without touching the user's data
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} could not be read as an array ({exc}); pass a list or numpy array.") from None
    return array


def as_binary_labels(values, name: str = "y_true") -> np.ndarray:
    """Return 0/1 labels (int64, 1-D); accepts booleans, integers and floats equal to 0 or 1."""
    array = _as_array(values, name)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise InputError(f"{name} must be 1-D (one label per case); received shape {array.shape}.")
    if array.size == 0:
        raise InputError(f"{name} is empty; pass at least one case.")
    if array.dtype.kind not in "biuf":
        raise InputError(
            f"{name} must hold 0/1 labels (1 = positive); received values of type {array.dtype}. "
            "Map the labels to 0 and 1 first."
        )
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise InputError(f"{name} holds NaN or infinite values; every case needs a 0/1 label.")
    bad = np.unique(array[(array != 0) & (array != 1)])
    if bad.size:
        raise InputError(
            f"{name} must hold 0/1 labels (1 = positive); received other values {_preview(bad)}. "
            "Map the labels to 0 and 1 first."
        )
    return array.astype(np.int64)


def _finite_floats(array: np.ndarray, name: str, kind: str, fix: str) -> np.ndarray:
    """``array`` (already shaped) as float64, refusing it empty, not numeric (``kind`` says what was expected) or
    holding NaN/inf (``fix`` says what to do)."""
    if array.size == 0:
        raise InputError(f"{name} is empty; pass at least one case.")
    if array.dtype.kind not in "biuf":
        raise InputError(f"{name} must be {kind}; received values of type {array.dtype}.")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} holds {int(np.sum(~np.isfinite(array)))} NaN or infinite values; {fix}")
    return array


def as_probabilities(values, name: str = "y_prob", *, ndim: int = 1) -> np.ndarray:
    """Return float64 probabilities in [0, 1] with ``ndim`` dimensions (an ``n x 1`` column counts as 1-D)."""
    array = _as_array(values, name)
    if ndim == 1 and array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != ndim:
        expected = "1-D (one probability per case)" if ndim == 1 else "2-D (cases x classes or labels)"
        raise InputError(f"{name} must be {expected}; received shape {array.shape}.")
    array = _finite_floats(array, name, "numeric probabilities", "pass a probability for every case.")
    outside = (array < 0) | (array > 1)
    if outside.any():
        count = int(outside.sum())
        raise InputError(
            f"{name} holds {count} value{'s' if count != 1 else ''} outside [0, 1] (min {array.min():.4g}, max "
            f"{array.max():.4g}); pass probabilities (after sigmoid or softmax), not logits or scores."
        )
    return array


def as_label_matrix(values, name: str = "y_true") -> np.ndarray:
    """Return a 0/1 indicator matrix (cases x labels, int64) for multilabel tasks."""
    array = _as_array(values, name)
    if array.ndim != 2:
        raise InputError(f"{name} must be 2-D (cases x labels) for a multilabel task; received shape {array.shape}.")
    flat = as_binary_labels(array.reshape(-1), name)
    return flat.reshape(array.shape)


def as_class_indices(values, class_names, name: str = "y_true") -> np.ndarray:
    """Return class indices 0..K-1 (int64); accepts indices or the names listed in ``class_names``."""
    array = _as_array(values, name)
    if array.ndim != 1:
        raise InputError(f"{name} must be 1-D (one class per case); received shape {array.shape}.")
    if array.size == 0:
        raise InputError(f"{name} is empty; pass at least one case.")
    k = len(class_names)
    if array.dtype.kind in "OUS":
        lookup = {str(c): i for i, c in enumerate(class_names)}
        unknown = sorted({str(v) for v in array} - set(lookup))
        if unknown:
            raise InputError(
                f"{name} holds class names not in class_names: {_preview(unknown)}. "
                f"Expected one of {', '.join(lookup)}."
            )
        return np.array([lookup[str(v)] for v in array], dtype=np.int64)
    if array.dtype.kind == "b" or array.dtype.kind not in "iuf":
        raise InputError(f"{name} must hold class indices 0..{k - 1} or class names; received type {array.dtype}.")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise InputError(f"{name} holds NaN or infinite values; every case needs a class.")
    bad = np.unique(array[(array < 0) | (array >= k) | (array != np.round(array))])
    if bad.size:
        raise InputError(
            f"{name} must hold class indices 0..{k - 1} (one per name in class_names); received {_preview(bad)}."
        )
    return array.astype(np.int64)


def as_values(values, name: str) -> np.ndarray:
    """Return finite float64 values, 1-D (regression targets or predictions)."""
    array = _as_array(values, name)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise InputError(
            f"{name} must be 1-D (one value per case); received shape {array.shape}. For several targets, "
            "evaluate each column separately."
        )
    return _finite_floats(array, name, "numeric", "remove those cases or fill them in.")


def check_same_length(**arrays) -> int:
    """Check every array has the same number of cases (first axis); return it."""
    items = [(name, len(a)) for name, a in arrays.items() if a is not None]
    first_name, first_len = items[0]
    for name, length in items[1:]:
        if length != first_len:
            raise InputError(
                f"{first_name} has {first_len} cases but {name} has {length}; pass one value per case, "
                "in the same order."
            )
    return first_len


def check_names(names, count: int, *, argument: str, axis: str) -> list[str]:
    """Check ``names`` gives one distinct name per column; return them as strings."""
    if names is None or isinstance(names, str):
        raise InputError(f"{argument} must be a list of {count} names, one per {axis}; received {names!r}.")
    names = [str(n) for n in names]
    if len(names) != count:
        raise InputError(
            f"{argument} has {len(names)} names but y_prob has {count} columns; pass one name per {axis}."
        )
    if len(set(names)) != len(names):
        raise InputError(f"{argument} repeats names {_preview(sorted({n for n in names if names.count(n) > 1}))}; "
                         "give each column its own name.")
    return names


def patient_codes(patient_ids, n_cases: int, *, name: str = "patient_ids",
                  reference: str = "y_true") -> tuple[np.ndarray, int, bool]:
    """Map patient ids to codes 0..G-1 (``name`` and ``reference`` are the argument names used in errors).

    Returns:
        ``(codes, n_patients, given)``; without ids every case is its own patient and ``given`` is False.
    """
    if patient_ids is None:
        return np.arange(n_cases), n_cases, False
    ids = _as_array(patient_ids, name)
    if ids.ndim != 1:
        raise InputError(f"{name} must be 1-D (one id per case); received shape {ids.shape}.")
    check_same_length(**{reference: np.empty(n_cases), name: ids})
    missing = pd.isna(pd.Series(ids, dtype=object)).to_numpy()
    if missing.any():
        raise InputError(
            f"{name} is missing for {int(missing.sum())} cases (first at position "
            f"{int(np.flatnonzero(missing)[0])}); give every case its patient's id."
        )
    codes, uniques = pd.factorize(pd.Series(ids, dtype=object), sort=False)
    return codes.astype(np.int64), len(uniques), True


def check_bootstrap_options(n_bootstrap, confidence, seed) -> None:
    """Check the bootstrap arguments shared by every metric function."""
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, numbers.Integral) or n_bootstrap < 0:
        raise InputError(
            f"n_bootstrap must be a whole number >= 0 (0 skips confidence intervals); received {n_bootstrap!r}."
        )
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise InputError(f"confidence must be a number between 0 and 1, such as 0.95; received {confidence!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise InputError(f"seed must be an integer (or None for an unrepeatable run); received {seed!r}.")


def check_threshold(threshold, name: str = "threshold") -> float:
    """Return a decision threshold as a float in [0, 1]."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not np.isfinite(threshold):
        raise InputError(
            f"{name} must be a number in [0, 1] chosen on validation data (see choose_threshold); "
            f"received {threshold!r}."
        )
    if not 0 <= threshold <= 1:
        raise InputError(f"{name} must be in [0, 1] (a probability cut-off); received {threshold!r}.")
    return float(threshold)
